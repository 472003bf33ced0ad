"""Exact resume with Keras 3 (TensorFlow): stop mid-epoch, resume in a new process, same weights.

A model with ``Dropout`` trained with ``train_on_batch``; every batch gets ``tf.random.normal``
noise, and the sample order comes from ``rngstate.ResumableSampler`` (a custom pipeline, no
DataLoader).  The checkpoint is a folder: weights and optimizer variables in ``.npz`` files, the
sampler position in JSON, and every random generator in an ``rngstate.save`` side file.

    python examples/resume_keras.py                         # uninterrupted
    python examples/resume_keras.py --stop-at 8             # saves a checkpoint, exits
    python examples/resume_keras.py --resume                # continues: same hash

``--plain`` does what Keras code usually does: ``keras.utils.set_random_seed``, a NumPy shuffle,
weights and optimizer saved, consumed batches skipped.  Its resumed run ends with different
weights.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

import rngstate

EPOCHS = 3
BATCH_SIZE = 8
SOURCE = np.random.RandomState(1234)  # the data itself is fixed
LABELS = SOURCE.randint(0, 4, size=48)
POINTS = (SOURCE.normal(size=(48, 16)) + LABELS[:, None]).astype("float32")


def build_model(plain: bool) -> Any:
    scope = contextlib.nullcontext() if plain else rngstate.rng_scope("model")
    with scope:  # initializers and Dropout take their seeds here
        model = keras.Sequential(
            [
                keras.Input((16,)),
                keras.layers.Dense(32, activation="relu"),
                keras.layers.Dropout(0.3),
                keras.layers.Dense(4),
            ]
        )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def weights_hash(model: Any) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()


def save_checkpoint(folder: Path, model: Any, progress: dict[str, Any], plain: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "weights.npz", *model.get_weights())
    np.savez(folder / "optimizer.npz", *[v.numpy() for v in model.optimizer.variables])
    (folder / "progress.json").write_text(json.dumps(progress))
    if not plain:
        rngstate.save(folder / "rng.state")  # every generator: Python, NumPy, TF ops, Keras seeds


def load_checkpoint(folder: Path, model: Any, plain: bool) -> dict[str, Any]:
    with np.load(folder / "weights.npz") as weights:
        model.set_weights([weights[f"arr_{i}"] for i in range(len(weights.files))])
    model.optimizer.build(model.trainable_variables)
    with np.load(folder / "optimizer.npz") as saved:
        for i, variable in enumerate(model.optimizer.variables):
            variable.assign(saved[f"arr_{i}"])
    if not plain:
        rngstate.restore(rngstate.load(folder / "rng.state"))  # after building: Keras seeds too
    progress: dict[str, Any] = json.loads((folder / "progress.json").read_text())
    return progress


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stop-at", type=int, help="save a checkpoint after this many steps and exit")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument("--checkpoint", default="resume_keras.ckpt", help="checkpoint folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plain", action="store_true", help="no rngstate, for comparison")
    args = parser.parse_args(argv)
    folder = Path(args.checkpoint)

    if args.plain:
        keras.utils.set_random_seed(args.seed)
    else:
        rngstate.seed_everything(args.seed)
    model = build_model(args.plain)
    sampler = None if args.plain else rngstate.ResumableSampler(len(LABELS), name="train")

    step, start_epoch, skip = 0, 0, 0
    if args.resume:
        progress = load_checkpoint(folder, model, args.plain)
        step, start_epoch = progress["step"], progress["epoch"]
        if sampler is not None:
            sampler.load_state_dict(progress["sampler"])
        else:
            skip = progress["samples_done"]

    for epoch in range(start_epoch, EPOCHS):
        if sampler is not None:
            sampler.set_epoch(epoch)  # right after load_state_dict: continues mid-epoch
            order = iter(sampler)
        else:
            order = iter(np.random.permutation(len(LABELS))[skip:].tolist())
        done = skip  # samples of this epoch taken so far
        while batch := [index for _, index in zip(range(BATCH_SIZE), order, strict=False)]:
            noise = tf.random.normal((len(batch), 16), stddev=0.3)  # TF's global op seeds
            model.train_on_batch(POINTS[batch] + noise, LABELS[batch])
            step, done = step + 1, done + len(batch)
            if step == args.stop_at:
                progress = {"step": step, "epoch": epoch, "samples_done": done}
                if sampler is not None:
                    progress["sampler"] = sampler.state_dict()
                save_checkpoint(folder, model, progress, args.plain)
                print(f"checkpoint saved at step {step} (epoch {epoch}, sample {done}) -> {folder.name}")
                return
        skip = 0
    kind = "plain Keras" if args.plain else "rngstate"
    print(f"final weights {weights_hash(model)}  ({kind}, {step} steps{', resumed' if args.resume else ''})")


if __name__ == "__main__":
    main(sys.argv[1:])
