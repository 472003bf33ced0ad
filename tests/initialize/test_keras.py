"""rngstate.keras.init_by_name: each layer's initializers re-run with seeds from its name.

Keras runs in a subprocess (it imports TensorFlow, which must not be imported before Paddle in
the pytest process).
"""

from __future__ import annotations

import pytest

from tests.conftest import PRELOAD_KERAS, run_python

SCRIPT = """
import warnings
import numpy as np
import rngstate, rngstate.keras
from rngstate.errors import InitializationError
from rngstate.snapshot import RNGStateWarning
import keras

class Scaled(keras.layers.Layer):
    '''Weights made in build(): one with its initializer kept on the layer, one without.'''
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.w_initializer = keras.initializers.RandomNormal(stddev=0.5)
    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer=self.w_initializer, name="w")
        self.offset = self.add_weight(shape=(1,), initializer="ones", name="offset")
    def call(self, x):
        return x * self.w + self.offset

def build(unused=None, head_first=False, scaled=False):
    keras.random.normal([int(np.random.randint(1, 50))])  # what was drawn before does not matter
    layers = {}
    if unused == "before":
        keras.layers.Dense(8, name="unused")
    if head_first:
        layers["head"] = keras.layers.Dense(2, name="head")
    layers["encoder"] = keras.layers.Dense(8, activation="relu", name="encoder")
    layers["norm"] = keras.layers.BatchNormalization(name="norm")
    if unused == "between":
        keras.layers.Dense(8, name="unused")
    layers["rnn"] = keras.layers.LSTM(3, name="rnn")
    if not head_first:
        layers["head"] = keras.layers.Dense(2, name="head")
    if unused == "after":
        keras.layers.Dense(8, name="unused")
    inputs = keras.Input((4,))
    x = layers["norm"](layers["encoder"](inputs))
    if scaled:
        x = Scaled(name="scaled")(x)
    x = layers["rnn"](keras.layers.Reshape((2, 4), name="reshape")(x))
    return keras.Model(inputs, layers["head"](x))

def weights(model):
    return {w.path: w.numpy() for w in model.weights}

def same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)

def initialized(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RNGStateWarning)
        return weights(rngstate.keras.init_by_name(build(**kwargs)))

rngstate.seed_everything(3)
plain = initialized()
for unused in ("before", "between", "after"):
    assert same(plain, initialized(unused=unused)), unused
assert same(plain, initialized(head_first=True))
rngstate.seed_everything(3)
without = [weights(build()), weights(build(unused="before"))]
assert not same(*without)  # the story init_by_name fixes

model = build()
first = weights(rngstate.keras.init_by_name(model))
assert same(first, weights(rngstate.keras.init_by_name(model)))  # every call restarts
with rngstate.rng_scope("other"):
    assert not same(first, initialized())

# each weight keeps its layer's distribution
assert np.all(first["norm/gamma"] == 1) and np.all(first["norm/moving_variance"] == 1)
assert not first["encoder/bias"].any() and first["encoder/kernel"].std() > 0
bias = first["rnn/lstm_cell/bias"]
assert np.all(bias[3:6] == 1) and not bias[:3].any() and not bias[6:].any()  # unit_forget_bias
limit = (6.0 / (4 + 8)) ** 0.5  # Dense's GlorotUniform
assert 0 < np.abs(first["encoder/kernel"]).max() <= limit

# a weight made in build() with its initializer on the layer is re-initialized; one without is reported
model = build(scaled=True)
model.get_layer("scaled").offset.assign([5.0])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    rngstate.keras.init_by_name(model)
messages = [str(w.message) for w in caught if issubclass(w.category, RNGStateWarning)]
assert len(messages) == 1 and ": scaled/offset." in messages[0], messages
assert model.get_layer("scaled").offset.numpy()[0] == 5.0
again = weights(rngstate.keras.init_by_name(build(scaled=True)))
assert np.array_equal(again["scaled/w"], weights(model)["scaled/w"])

try:
    rngstate.keras.init_by_name(keras.Sequential([keras.layers.Dense(2)]))
except InitializationError as error:
    assert "not built" in str(error)
else:
    raise AssertionError("an unbuilt model was accepted")
try:
    rngstate.keras.init_by_name("model")
except InitializationError as error:
    assert isinstance(error, TypeError) and "takes a keras.Model" in str(error)
else:
    raise AssertionError("a str was accepted")
print("ok")
"""


@pytest.mark.slow
def test_keras_init_by_name() -> None:
    # rngstate.keras imports Keras (and TensorFlow) first anyway: forked from their preloader
    assert run_python(SCRIPT, preload=PRELOAD_KERAS).strip().splitlines()[-1] == "ok"
