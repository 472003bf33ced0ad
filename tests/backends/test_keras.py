"""Keras 3 (TensorFlow backend): the global SeedGenerator, SeedGenerators inside layers tracked
without registration, the unused-layer story, and training that resumes exactly in another
process (``train_on_batch`` and a custom loop).

Keras runs in subprocesses (it imports TensorFlow, which must not be imported before Paddle in
the pytest process); state validation needs neither and runs here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import rngstate
from rngstate import backends
from rngstate.errors import InvalidStateError
from tests.conftest import PRELOAD_KERAS, ROOT, run_python

GLOBAL = backends.stream("keras.global")
KIND = backends.kind("keras.SeedGenerator")


def test_validation_without_keras() -> None:
    assert "keras" not in sys.modules
    assert GLOBAL.decode({"mode": "state", "state": [7, 3]}, "s") == ("pending", ("state", (7, 3)))
    assert KIND.decode({"state": [1, 2**64 - 1]}, "g") == (1, 2**64 - 1)
    bad: list[tuple[Any, Any, str]] = [
        (GLOBAL, {"mode": "state", "state": [1]}, "expected 2 items"),
        (GLOBAL, {"mode": "seed", "seed": "7"}, "integer"),
        (GLOBAL, {"mode": "seed"}, "missing"),
        (KIND, {"state": [1, 2**64]}, "outside"),
        (KIND, {"state": [1, 2], "extra": 0}, "unexpected"),
    ]
    for backend, plain, match in bad:
        with pytest.raises(InvalidStateError, match=match):
            backend.decode(plain, "where")


MODEL = """
import json, sys, warnings
import numpy as np
import rngstate
from rngstate.errors import RNGStateWarning

def build():
    import keras
    inputs = keras.Input((6,))
    with rngstate.rng_scope("encoder"):
        hidden = keras.layers.Dense(16, activation="relu")(inputs)
        hidden = keras.layers.Dropout(0.4)(hidden)
    with rngstate.rng_scope("head"):
        hidden = keras.layers.GaussianNoise(0.3)(hidden)
        outputs = keras.layers.Dense(1)(keras.layers.Dropout(0.2)(hidden))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
    return model

batches = [(np.random.default_rng(i).normal(size=(8, 6)).astype("float32"),
            np.random.default_rng(100 + i).normal(size=(8, 1)).astype("float32")) for i in range(6)]

def train(model, steps):
    import tensorflow as tf
    import keras
    for x, y in steps:
        model.train_on_batch(x, y)                       # a tf.function: dropout in a graph
        with tf.GradientTape() as tape:                  # a custom eager loop
            loss = keras.ops.mean((model(x, training=True) - y) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return [w.tolist() for w in model.get_weights()] + [keras.random.normal([2]).numpy().tolist()]
"""

FIRST = MODEL + """
sys.path.insert(0, sys.argv[2])
import keras_unused_layer as example
assert all(example.compare(by_name=True).values()) and not all(example.compare(by_name=False).values())

rngstate.seed_everything(6)
import gc, keras
gc.collect()  # the example's models are gone: their generators leave the capture
model = build()
keys = rngstate.capture().generators
assert keys == ("encoder/keras.SeedGenerator.0", "head/keras.SeedGenerator.0",
                "head/keras.SeedGenerator.1"), keys

# in one process: capture, draw, restore, draw again (dropout, noise and the global generator)
x = batches[0][0]
state = rngstate.capture()
expected = [np.asarray(model(x, training=True)).tolist(), keras.random.normal([3]).numpy().tolist()]
rngstate.restore(state)
assert [np.asarray(model(x, training=True)).tolist(), keras.random.normal([3]).numpy().tolist()] == expected

with warnings.catch_warnings():
    warnings.simplefilter("error", RNGStateWarning)  # Keras draws nothing rngstate cannot capture
    train(model, batches[:3])
    np.savez(sys.argv[1] + ".npz", *model.get_weights(), *[v.numpy() for v in model.optimizer.variables])
    rngstate.save(sys.argv[1])
    print(json.dumps(train(model, batches[3:])))
"""

RESUMED = MODEL + """
rngstate.restore(rngstate.load(sys.argv[1]))  # before Keras exists: applied as layers are built
import keras
model = build()
saved = np.load(sys.argv[1] + ".npz")
arrays = [saved[f"arr_{i}"] for i in range(len(saved.files))]
weights = len(model.get_weights())
model.set_weights(arrays[:weights])
model.optimizer.build(model.trainable_variables)
for variable, value in zip(model.optimizer.variables, arrays[weights:], strict=True):
    variable.assign(value)
print(json.dumps(train(model, batches[3:])))
"""


@pytest.mark.slow
def test_training_resumes_exactly_in_another_process(tmp_path: Path) -> None:
    path = str(tmp_path / "keras.state")
    # FIRST imports Keras before seeding (forked from its preloader); RESUMED restores before
    # Keras is imported (a cold interpreter: the state is applied as the layers are built).
    first = run_python(FIRST, path, str(ROOT / "examples"), preload=PRELOAD_KERAS)
    uninterrupted = json.loads(first.strip().splitlines()[-1])
    resumed = json.loads(run_python(RESUMED, path).strip().splitlines()[-1])
    assert resumed == uninterrupted
    state = rngstate.load(path)
    assert "keras.global" in state.streams and len(state.generators) == 3


@pytest.mark.slow
def test_keras_example_runs() -> None:
    script = ROOT / "examples" / "keras_unused_layer.py"
    code = f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')"
    out = run_python(code, preload=PRELOAD_KERAS)
    rows = [line.split() for line in out.strip().splitlines()[-3:]]
    assert rows == [["encoder", "DIFFERENT", "identical"], ["norm", "identical", "identical"],
                    ["head", "DIFFERENT", "identical"]]


STATE_BYTES = """
import numpy as np
import rngstate
from rngstate import backends
from rngstate.tracing.streams import StreamFingerprints
from tests.backends.plain_bytes_checks import kind_same_on_every_path, same_on_every_path
import keras

rngstate.seed_everything(5)
glob, kind = backends.stream("keras.global"), backends.kind("keras.SeedGenerator")

seen = [same_on_every_path(glob)]  # pending: a seed
model = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.5), keras.layers.Dropout(0.3)])
handles = [item.obj for item in rngstate.tracking.RUNTIME.tracked.values()]
assert len(handles) == 2
x = np.ones((2, 4), "float32")
crcs = [[kind_same_on_every_path(kind, h) for h in handles]]
import tensorflow as tf
step = tf.function(lambda: model(x, training=True))  # dropout in a graph
for _ in range(2):
    keras.random.normal([2])  # creates the global generator (live), then draws
    model(x, training=True)  # eager
    step()
    seen.append(same_on_every_path(glob))
    crcs.append([kind_same_on_every_path(kind, h) for h in handles])
assert len(set(seen)) == len(seen), "a draw did not change keras.global's bytes"
assert all(len(set(column)) == len(column) for column in zip(*crcs)), crcs

# a step trace: the live global generator and the tracked generators at every step
streams = StreamFingerprints()
first = streams.take()
assert streams.take()[0] == first[0] and streams.take()[3] == first[3]
step()
again = streams.take()
assert again[0]["keras.global"] == first[0]["keras.global"]  # the layers have their own generators
assert all(again[3][key] != first[3][key] for key in first[3]), (first[3], again[3])
print("ok")
"""


@pytest.mark.slow
def test_state_bytes_are_the_same_raw_or_through_get_state() -> None:
    """What a step trace fingerprints of keras.global and the SeedGenerators: equal on every
    path, the values older traces hold, and different after a draw (eager or in a graph)."""
    assert run_python(STATE_BYTES, preload=PRELOAD_KERAS).strip().endswith("ok")
