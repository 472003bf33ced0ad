"""What taking over ``fit``'s batches on NumPy arrays costs: one epoch of ``model.fit(x, y,
shuffle=True)`` with ``rngstate.keras.RNGStateCallback`` against Keras' own array pipeline, with
no callback and with ``keras.callbacks.BackupAndRestore(save_freq=<steps>)`` (the peer: a
per-batch hook, like rngstate's), in the same process.

    python benchmarks/keras_fit_feed.py [--samples 20000] [--batch 64]
    KERAS_BACKEND=torch python benchmarks/keras_fit_feed.py

Both callbacks are set never to save (``save_freq`` above the step count), so the feed and the
per-batch hook are measured; runs alternate, the best of each is kept.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import rngstate
import rngstate.keras


def model_for(features: int) -> Any:
    model = keras.Sequential([keras.Input((features,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dropout(0.2), keras.layers.Dense(10)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="epochs a fit call (a timing)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rngstate.seed_everything(0)
    source = np.random.default_rng(0)
    x = source.normal(size=(args.samples, 32)).astype("float32")
    y = source.integers(0, 10, size=args.samples)
    folder = tempfile.mkdtemp()
    models = {"keras": model_for(32), "keras+B&R": model_for(32), "rngstate": model_for(32)}
    best = {name: float("inf") for name in models}
    for round_ in range(args.repeat + 1):  # round 0 warms up (tracing)
        for name, model in models.items():
            callbacks: list[Any] = []
            if name == "rngstate":
                callbacks = [rngstate.keras.RNGStateCallback(os.path.join(folder, "r"), save_freq=10**9)]
            elif name == "keras+B&R":
                callbacks = [keras.callbacks.BackupAndRestore(os.path.join(folder, "k"), save_freq=10**9)]
            start = time.perf_counter()
            model.fit(x, y, batch_size=args.batch, epochs=args.epochs, shuffle=True, callbacks=callbacks,
                      verbose=0)
            if round_:
                best[name] = min(best[name], time.perf_counter() - start)
    steps = -(-args.samples // args.batch) * args.epochs
    print(f"backend {keras.backend.backend()}, {args.samples} samples, batch {args.batch}: {steps} steps")
    for name, seconds in best.items():
        print(f"{name:9} {seconds * 1e3:8.1f} ms a fit  {seconds / steps * 1e6:7.1f} us a step")
    print(f"ratio rngstate / keras: {best['rngstate'] / best['keras']:.2f}, "
          f"rngstate / keras+BackupAndRestore: {best['rngstate'] / best['keras+B&R']:.2f}")


if __name__ == "__main__":
    main()
