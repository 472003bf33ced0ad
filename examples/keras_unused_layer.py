"""The unused-layer story in Keras 3 (TensorFlow backend).

Keras initializers take their seed from Python's ``random`` when a layer is constructed.  Two
copies of one model; the second constructs an extra ``Dense`` layer that the model never uses,
before the others, so as built every later layer's weights differ.  The model's code is not
changed: one line after construction, ``rngstate.keras.init_by_name(model)``, re-runs each
layer's initializers with seeds derived from the layer's name, and every layer is identical.
The layers are named: automatic names (``dense_1``) would shift with the extra layer.

    python examples/keras_unused_layer.py
"""

from __future__ import annotations

import keras
import numpy as np

import rngstate
import rngstate.keras


def build(extra_layer: bool, by_name: bool) -> keras.Model:
    rngstate.seed_everything(42)
    if extra_layer:
        keras.layers.Dense(64)  # constructed, never part of the model
    inputs = keras.Input((32,))
    hidden = keras.layers.Dense(64, activation="relu", name="encoder")(inputs)
    hidden = keras.layers.BatchNormalization(name="norm")(hidden)
    hidden = keras.layers.Dropout(0.3, name="dropout")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(10, name="head")(hidden))
    if by_name:
        rngstate.keras.init_by_name(model)  # the one line
    return model


def compare(by_name: bool) -> dict[str, bool]:
    """For each layer with weights: are they the same in the model with the extra layer?"""
    plain, extended = build(False, by_name), build(True, by_name)
    return {
        layer.name: all(
            np.array_equal(a, b)
            for a, b in zip(layer.get_weights(), extended.get_layer(layer.name).get_weights(), strict=True)
        )
        for layer in plain.layers
        if layer.weights
    }


def main() -> None:
    plain, by_name = compare(by_name=False), compare(by_name=True)
    print(f"{'layer':10}{'as built':12}{'after init_by_name'}")
    for name in plain:
        verdicts = ["identical" if same else "DIFFERENT" for same in (plain[name], by_name[name])]
        print(f"{name:10}{verdicts[0]:12}{verdicts[1]}")


if __name__ == "__main__":
    main()
