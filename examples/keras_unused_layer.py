"""The unused-layer story in Keras 3 (TensorFlow backend).

Keras initializers and ``Dropout`` take their seed from Python's ``random`` when a layer is
constructed.  Two copies of one model; the second constructs an extra ``Dense`` layer that the
model never uses, before the others.  Without scopes every later layer's weights differ; with
``rng_scope`` they are identical, and so are the dropout masks.

    python examples/keras_unused_layer.py
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

import rngstate


def build(extra_layer: bool, scoped: bool) -> keras.Model:
    scope: Callable[[str], Any] = rngstate.rng_scope if scoped else (lambda name: contextlib.nullcontext())
    if extra_layer:
        with scope("unused"):
            keras.layers.Dense(64)  # constructed, never part of the model
    inputs = keras.Input((32,))
    with scope("encoder"):
        hidden = keras.layers.Dense(64, activation="relu", name="encoder")(inputs)
        hidden = keras.layers.Dropout(0.3, name="dropout")(hidden)
    with scope("head"):
        outputs = keras.layers.Dense(10, name="head")(hidden)
    return keras.Model(inputs, outputs)


def fingerprint(model: keras.Model) -> list[np.ndarray]:
    """The shared layers' weights and one training-mode forward pass (dropout masks)."""
    weights = [w for name in ("encoder", "head") for w in model.get_layer(name).get_weights()]
    batch = np.linspace(-1.0, 1.0, 4 * 32, dtype="float32").reshape(4, 32)
    return [*weights, np.asarray(model(batch, training=True))]


def same_model(scoped: bool) -> bool:
    results = []
    for extra_layer in (False, True):
        rngstate.seed_everything(42)
        results.append(fingerprint(build(extra_layer, scoped)))
    plain, extended = results
    return all(np.array_equal(a, b) for a, b in zip(plain, extended, strict=True))


def main() -> None:
    for scoped in (False, True):
        label = "with rng_scope   " if scoped else "without rng_scope"
        verdict = "identical" if same_model(scoped) else "DIFFERENT"
        print(f"{label}: encoder/head weights and dropout masks of the two models are {verdict}")


if __name__ == "__main__":
    main()
