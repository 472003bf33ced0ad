"""Exact resume inside Keras ``model.fit``: killed right after a mid-epoch backup, ``fit`` started
again in a new process with the same callback, the final weights equal the run that never
stopped.

    python examples/trainer_keras.py            # runs all three processes, prints the verdict

rngstate adds (marked ``# rngstate``): ``seed_everything``, the batch order and augmentation
seeds in the PyDataset, and ``rngstate.keras.RNGStateCallback``.  One run at a time:

    python examples/trainer_keras.py --run                                  # uninterrupted
    python examples/trainer_keras.py --run --stop-at 8 --checkpoint backup  # dies after saving
    python examples/trainer_keras.py --run --checkpoint backup              # resumes

``--plain`` is Keras alone: ``keras.utils.set_random_seed``, a PyDataset shuffled by ``fit``
with NumPy augmentation, ``keras.callbacks.BackupAndRestore(save_freq=<steps>)``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import rngstate
import rngstate.keras

EPOCHS = 3
BATCH_SIZE = 8  # 48 samples: 6 steps per epoch
SOURCE = np.random.RandomState(1234)  # the data itself is fixed
LABELS = SOURCE.randint(0, 4, size=48)
POINTS = (SOURCE.normal(size=(48, 16)) + LABELS[:, None]).astype("float32")


class Points(keras.utils.PyDataset):
    """Batch ``i`` of epoch ``e``: an order from rngstate, NumPy noise and a Python coin flip
    seeded from (e, i) -- the same whichever thread loads it, and when."""

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers=workers)  # Keras loads batches in this many threads
        self.sampler = rngstate.ResumableSampler(len(LABELS), name="train")  # rngstate
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # rngstate: called by the callback
        self.epoch = epoch

    def __len__(self) -> int:
        return len(LABELS) // BATCH_SIZE

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        indices = self.sampler.order(self.epoch)[i * BATCH_SIZE : (i + 1) * BATCH_SIZE]
        seed = rngstate.derive_seed(f"augment/{self.epoch}/{i}")  # rngstate
        noise, coin = np.random.default_rng(seed), random.Random(seed)
        x = POINTS[indices] + noise.normal(0.0, 0.3, size=(len(indices), 16)).astype("float32")
        if coin.random() < 0.5:
            x = x[:, ::-1].copy()
        return x, LABELS[indices]


class PlainPoints(keras.utils.PyDataset):
    """The usual PyDataset: global NumPy and Python randomness, shuffled by fit."""

    def __len__(self) -> int:
        return len(LABELS) // BATCH_SIZE

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        indices = np.arange(i * BATCH_SIZE, (i + 1) * BATCH_SIZE)
        x = POINTS[indices] + np.random.normal(0.0, 0.3, size=(len(indices), 16)).astype("float32")
        if random.random() < 0.5:
            x = x[:, ::-1].copy()
        return x, LABELS[indices]


class DieAfterSaving(keras.callbacks.Callback):
    def __init__(self, stop_at: int) -> None:
        super().__init__()
        self.stop_at, self.steps = stop_at, 0

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.steps += 1
        if self.steps == self.stop_at:
            print(f"checkpoint saved at step {self.stop_at}", flush=True)
            os._exit(0)  # as if killed


def build_model() -> Any:
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


def train(args: argparse.Namespace) -> None:
    if args.plain:
        keras.utils.set_random_seed(args.seed)
        data: Any = PlainPoints()
        backup: Any = keras.callbacks.BackupAndRestore(args.checkpoint, save_freq=args.stop_at or "epoch")
    else:
        rngstate.seed_everything(args.seed)  # rngstate
        data = Points(args.workers)
        backup = rngstate.keras.RNGStateCallback(  # rngstate
            args.checkpoint, save_freq=args.stop_at or "epoch", data=data
        )
    model = build_model()
    callbacks = [backup] + ([DieAfterSaving(args.stop_at)] if args.stop_at else [])
    model.fit(data, epochs=EPOCHS, shuffle=args.plain, callbacks=callbacks, verbose=0)
    kind = "Keras alone" if args.plain else "Keras + rngstate"
    print(f"final weights {weights_hash(model)}  ({kind})")


def run(*options: str) -> str:
    """One training in its own process; returns what it printed."""
    command = [sys.executable, __file__, "--run", *options]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def final_hash(output: str) -> str:
    return output.split("final weights ")[1].split()[0]


def demo(plain: bool) -> None:
    extra = ["--plain"] if plain else []
    with tempfile.TemporaryDirectory() as folder:
        reference = final_hash(run("--checkpoint", str(Path(folder, "unused")), *extra))
        backup = str(Path(folder, "backup"))
        run("--stop-at", "8", "--checkpoint", backup, *extra)
        resumed = final_hash(run("--checkpoint", backup, *extra))
    kind = "Keras alone" if plain else "Keras + rngstate"
    print(f"{kind}: uninterrupted {reference}, killed at step 8 and resumed {resumed}: "
          f"bit-identical: {reference == resumed}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", action="store_true", help="one training run (else: the whole demo)")
    parser.add_argument("--stop-at", type=int, default=0, help="back up at this step and die")
    parser.add_argument("--checkpoint", default="keras_backup", help="backup folder (resumed if present)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="PyDataset worker threads")
    parser.add_argument("--plain", action="store_true", help="Keras alone, without rngstate")
    args = parser.parse_args()
    if args.run:
        train(args)
    else:
        demo(plain=False)
        demo(plain=True)


if __name__ == "__main__":
    main()
