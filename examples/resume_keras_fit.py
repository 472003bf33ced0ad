"""Keras ``model.fit`` on NumPy arrays and on ``tf.data``, and a custom ``tf.GradientTape`` loop
with ``tf.train.CheckpointManager``: stopped right after a mid-epoch backup and resumed in a new
process, do they end with the weights of the run that never stopped?

    python examples/resume_keras_fit.py                  # Keras/TF alone vs with rngstate
    KERAS_BACKEND=torch python examples/resume_keras_fit.py --cases arrays,accumulate

Each case runs in two processes: uninterrupted, backing up every step and keeping a copy of the
backup folder as it is right after the backup of step k (for every k listed: a run killed there
leaves exactly that folder); then resumed from each copy with the same call (nothing the first
run did after step k reaches it: it only reads the copy).

Cases (48 training samples, batches of 8: 6 steps an epoch, 3 epochs):

* ``arrays``: ``fit(x, y, shuffle=True, validation_split=0.2)``, a model with ``RandomFlip``,
  ``RandomTranslation`` and ``Dropout``;
* ``dict``: a two-input model fed a dict of arrays, ``shuffle="batch"``, ``validation_data``;
* ``steps``: ``steps_per_epoch=4`` (an epoch is not a pass over the data);
* ``accumulate``: ``SGD(gradient_accumulation_steps=3)``, stopped at every accumulation phase;
* ``execution``: ``compile(steps_per_execution=2)``, stopped after 2 executions (4 batches);
* ``tfdata``: ``fit`` on a ``tf.data`` pipeline written as TensorFlow's determinism guidance
  says (seeded ``shuffle`` reshuffling each epoch, per-element seeds from ``Dataset.random``,
  stateless random ops in a parallel ``map``, ``batch``, ``prefetch``);
* ``loop``: that pipeline in a custom ``tf.GradientTape`` loop, the iterator, model and
  optimizer in a ``tf.train.CheckpointManager``.

With rngstate (``rngstate.seed_everything``, seeds from ``rngstate.derive_seed``,
``rngstate.keras.RNGStateCallback(folder, save_freq=k)``, ``RNGStateCheckpoint()`` in the
checkpoint); alone (``--plain``): ``keras.utils.set_random_seed``, fixed seeds,
``keras.callbacks.BackupAndRestore(folder, save_freq=k)``, the checkpoint without it.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
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

EPOCHS, BATCH = 3, 8
SOURCE = np.random.RandomState(1234)  # the data itself is fixed
LABELS = SOURCE.randint(0, 3, size=60)
IMAGES = (SOURCE.normal(size=(60, 6, 6, 1)) + LABELS[:, None, None, None]).astype("float32")
EXTRA = SOURCE.normal(size=(60, 4)).astype("float32")
STOPS = {"arrays": [4, 9, 12], "dict": [5], "steps": [5], "accumulate": [7, 8, 9],
         "execution": [2], "tfdata": [4, 9], "loop": [4, 9]}
TF_ONLY = {"tfdata", "loop", "execution"}  # torch: steps_per_execution must be 1


class KeepBackups(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
    """After the backup callback: copies its folder as it is right after the backup of each
    listed step into ``<case>-<step>`` -- what a run killed right there leaves behind."""

    def __init__(self, folder: Path, case: str, stops: list[int]) -> None:
        super().__init__()
        self.folder, self.case, self.stops, self.seen = folder, case, stops, 0

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.seen += 1
        if self.seen in self.stops:
            shutil.copytree(self.folder / f"{self.case}-live", self.folder / f"{self.case}-{self.seen}")


def weights_hash(model: Any) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()


def seeds(plain: bool, name: str, fixed: int) -> int:
    return fixed if plain else rngstate.derive_seed(name)


def build(case: str, accumulate: bool = False, per_call: int = 1) -> Any:
    image = keras.Input((6, 6, 1), name="image")
    h = keras.layers.RandomFlip("horizontal")(image)
    h = keras.layers.RandomTranslation(0.2, 0.2)(h)
    h = keras.layers.Flatten()(h)
    inputs: Any = image
    if case == "dict":
        extra = keras.Input((4,), name="extra")
        h = keras.layers.Concatenate()([h, extra])
        inputs = {"image": image, "extra": extra}
    h = keras.layers.Dense(16, activation="relu")(h)
    h = keras.layers.Dropout(0.3)(h)
    model = keras.Model(inputs, keras.layers.Dense(3)(h))
    optimizer = keras.optimizers.SGD(
        0.05, momentum=0.9, gradient_accumulation_steps=3 if accumulate else None
    )
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=per_call)
    return model


def pipeline(plain: bool) -> Any:
    """TensorFlow's determinism guidance: seeded shuffle, per-element seeds, stateless ops."""
    import tensorflow as tf

    def augment(sample: Any, seed: Any) -> Any:
        (image, label) = sample
        seed = tf.stack([seed, seed + 1])
        image = tf.image.stateless_random_flip_left_right(image, seed)
        image = image + tf.random.stateless_normal(tf.shape(image), seed, stddev=0.3)
        return image, label

    data = tf.data.Dataset.from_tensor_slices((IMAGES[:48], LABELS[:48]))
    data = data.shuffle(48, seed=seeds(plain, "data/shuffle", 1), reshuffle_each_iteration=True)
    per_element = tf.data.Dataset.random(
        seed=seeds(plain, "data/augment", 2), rerandomize_each_iteration=True
    )
    data = tf.data.Dataset.zip((data, per_element)).map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return data.batch(BATCH).prefetch(tf.data.AUTOTUNE)


def fit_case(case: str, folder: Path, stops: list[int], plain: bool) -> str:
    """Uninterrupted (``stops``: back up every step, keep a copy at each), or resumed from
    ``folder`` (no ``stops``: back up at epoch ends)."""
    if plain:
        keras.utils.set_random_seed(0)
    else:
        rngstate.seed_everything(0)
    model = build(case, accumulate=case == "accumulate", per_call=2 if case == "execution" else 1)
    save_freq: Any = 1 if stops else "epoch"
    backups = folder / f"{case}-live" if stops else folder
    backup = (keras.callbacks.BackupAndRestore(str(backups), save_freq=save_freq) if plain
              else rngstate.keras.RNGStateCallback(backups, save_freq=save_freq))
    callbacks = [backup] + ([KeepBackups(folder, case, stops)] if stops else [])
    kwargs: dict[str, Any] = {"epochs": EPOCHS, "callbacks": callbacks, "verbose": 0}
    if case == "tfdata":
        model.fit(pipeline(plain), **kwargs)
    elif case == "dict":
        x = {"image": IMAGES[:48], "extra": EXTRA[:48]}
        valid = ({"image": IMAGES[48:], "extra": EXTRA[48:]}, LABELS[48:])
        model.fit(x, LABELS[:48], batch_size=BATCH, shuffle="batch", validation_data=valid, **kwargs)
    elif case == "steps":
        model.fit(IMAGES[:48], LABELS[:48], batch_size=BATCH, steps_per_epoch=4, **kwargs)
    else:  # arrays, accumulate, execution: 60 samples, the last 12 for validation
        model.fit(IMAGES, LABELS, batch_size=BATCH, shuffle=True, validation_split=0.2, **kwargs)
    return weights_hash(model)


def loop_case(folder: Path, stops: list[int], plain: bool) -> str:
    """A custom training loop; model, optimizer and step in a CheckpointManager.  Alone: the
    iterator of the repeated pipeline in the checkpoint too (TensorFlow's way).  With rngstate:
    RNGStateCheckpoint() in the checkpoint, one iterator per epoch, rebuilt on resume."""
    import tensorflow as tf

    if plain:
        keras.utils.set_random_seed(0)
    else:
        rngstate.seed_everything(0)
    from rngstate.tensorflow import RNGStateCheckpoint
    from rngstate.tf_data import resume_iterator

    model = build("loop")
    optimizer, loss_fn = model.optimizer, model.loss
    data = pipeline(plain)
    step = tf.Variable(0, dtype=tf.int64)
    items: dict[str, Any] = {"model": model, "optimizer": optimizer, "step": step}
    if plain:
        items["iterator"] = repeated = iter(data.repeat(EPOCHS))
    else:
        items["rng"] = RNGStateCheckpoint()
    checkpoint = tf.train.Checkpoint(**items)
    manager = tf.train.CheckpointManager(checkpoint, str(folder), max_to_keep=1)
    keep = {stop: tf.train.CheckpointManager(checkpoint, str(folder / f"loop-{stop}"), max_to_keep=1)
            for stop in stops}  # uninterrupted: the checkpoint a run killed after step k leaves
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()

    @tf.function
    def train_step(x: Any, y: Any) -> None:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))

    def batches() -> Any:
        if plain:
            yield from repeated
            return
        epoch, position = divmod(int(step), 6)
        yield from resume_iterator(data, epoch, position)  # this epoch, rebuilt
        for _ in range(epoch + 1, EPOCHS):
            yield from data

    for x, y in batches():
        train_step(x, y)
        step.assign_add(1)
        if int(step) in keep:
            keep[int(step)].save()
    return weights_hash(model)


def run_cases(cases: list[str], folder: Path, plain: bool, mode: str) -> dict[str, str]:
    """mode "uninterrupted": one run a case, keeping the backup of each stop (weights hash as
    ``case@0``); "resume": one run a stop, from that backup (``case@k``)."""
    hashes: dict[str, str] = {}
    for case in cases:
        run = loop_case if case == "loop" else lambda *a, c=case: fit_case(c, *a)
        if mode == "uninterrupted":
            hashes[f"{case}@0"] = run(folder, STOPS[case], plain)
        else:
            for stop in STOPS[case]:
                hashes[f"{case}@{stop}"] = run(folder / f"{case}-{stop}", [], plain)
        gc.collect()  # the next case's model gets the keys a fresh process gives it
    return hashes


def in_process(*args: str) -> dict[str, str]:
    command = [sys.executable, __file__, "--run", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def compare(cases: list[str], plain: bool) -> dict[str, bool]:
    extra = ["--plain"] if plain else []
    with tempfile.TemporaryDirectory() as folder:
        options = ["--cases", ",".join(cases), "--folder", folder, *extra]
        reference = in_process("--mode", "uninterrupted", *options)
        resumed = in_process("--mode", "resume", *options)
    return {key: reference[f"{key.split('@')[0]}@0"] == value for key, value in resumed.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", action="store_true", help="one process (else: the comparison)")
    parser.add_argument("--mode", choices=["uninterrupted", "resume"], default="uninterrupted")
    parser.add_argument("--cases", default="")
    parser.add_argument("--folder", default="keras_fit_backups")
    parser.add_argument("--plain", action="store_true", help="Keras / TensorFlow alone")
    parser.add_argument("--alone", action="store_true", help="the comparison: also Keras / TensorFlow alone")
    args = parser.parse_args()
    backend = keras.backend.backend()
    wanted = args.cases.split(",") if args.cases else list(STOPS)
    cases = [c for c in wanted if backend == "tensorflow" or c not in TF_ONLY]
    if args.run:
        print(json.dumps(run_cases(cases, Path(args.folder), args.plain, args.mode)))
        return
    for plain in ([False, True] if args.alone or not args.cases else [False]):
        kind = "Keras/TF alone" if plain else "with rngstate"
        for key, same in compare(cases, plain).items():
            case, stop = key.split("@")
            verdict = "yes" if same else "no"
            print(f"{backend:10} {case:10} stopped at step {stop:2}, {kind:14}: identical {verdict}")


if __name__ == "__main__":
    main()
