"""The TensorFlow backend: the global seed with eager op seeds, the global tf.random.Generator,
tracked Generators, the kernel cache, warnings, files across processes.

TensorFlow is never imported in the pytest process (importing it before Paddle crashes the
process in this environment): each scenario runs in one subprocess that checks many things.
Validation of plain states needs no TensorFlow and runs here.
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
from tests.conftest import run_python

OPS = backends.stream("tensorflow.ops")
GLOBAL = backends.stream("tensorflow.generator")
KIND = backends.kind("tensorflow.Generator")


def test_backends_load_without_tensorflow() -> None:
    assert "tensorflow" not in sys.modules
    assert not OPS.is_active() and not GLOBAL.is_active()


def test_op_seed_state_validation() -> None:
    rng = backends.stream("python").encode(backends.stream("python").get_state())
    assert OPS.decode({"seed": [5], "rng": [rng]}, "s")[0] == 5
    assert OPS.decode({"seed": [], "rng": []}, "s") == (None, None)
    bad: list[tuple[Any, str]] = [
        ({"seed": 5, "rng": []}, "expected a list"),
        ({"seed": [1, 2], "rng": [rng, rng]}, "at most one"),
        ({"seed": [2**64], "rng": [rng]}, "outside"),
        ({"seed": [True], "rng": [rng]}, "integer"),
        ({"seed": [5], "rng": []}, "both empty or both set"),  # later ops would fail
        ({"seed": [5], "rng": [{**rng, "pos": 625}]}, "outside"),
        ({"seed": []}, "missing"),
    ]
    for plain, match in bad:
        with pytest.raises(InvalidStateError, match=match):
            OPS.decode(plain, "streams.tensorflow.ops")


def test_generator_state_validation() -> None:
    assert GLOBAL.decode({"mode": "seed", "seed": 4}, "s") == ("pending", ("seed", 4))
    assert GLOBAL.decode({"mode": "unseeded"}, "s") == ("pending", None)
    assert KIND.decode({"alg": 2, "state": [1, 2]}, "g") == (2, (1, 2))
    bad: list[tuple[Any, str]] = [
        ({"mode": "state", "alg": 1, "state": [1, 2]}, "expected 3 items"),  # Philox needs 3
        ({"mode": "state", "alg": 4, "state": [1, 2, 3]}, "outside"),
        ({"mode": "state", "alg": 1, "state": [1, 2, 2**63]}, "outside"),
        ({"mode": "seed", "seed": -1}, "outside"),
        ({"mode": "other"}, "not one of"),
        ({"mode": "unseeded", "seed": 1}, "unexpected"),
    ]
    for plain, match in bad:
        with pytest.raises(InvalidStateError, match=match):
            GLOBAL.decode(plain, "streams.tensorflow.generator")


EAGER = """
import json, sys, warnings
import rngstate
from rngstate.errors import RNGStateWarning
rngstate.seed_everything(4)
import tensorflow as tf
from tensorflow.python.eager import context

def draws():
    return [*tf.random.uniform([3]).numpy().tolist(), *tf.random.normal([2]).numpy().tolist(),
            *tf.nn.dropout(tf.ones([8]), 0.5).numpy().tolist()]

# 1. the root stream is tf.random.set_seed(root); import order does not matter
first = draws()
tf.random.set_seed(4)
assert draws() == first, "seed_everything(4) differs from tf.random.set_seed(4)"

# 2. scopes: own substream, outer untouched, re-entry continues, only (root, path) matters
rngstate.seed_everything(4)
with rngstate.rng_scope("enc"):
    inner = draws()
assert draws() == first, "a scope shifted the outer op seeds"
with rngstate.rng_scope("enc"):
    again = draws()
assert again != inner, "re-entry restarted instead of continuing"
rngstate.seed_everything(4)
tf.random.uniform([100])
with rngstate.rng_scope("enc"):
    assert draws() == inner, "a scope depends on draws outside it"

# 3. capture/restore repeats op seeds whose kernels are cached: exact only with a clear cache
rngstate.seed_everything(4)
draws()
gen = rngstate.track(tf.random.Generator.from_seed(0), "augment")
global_gen = tf.random.get_global_generator()  # created now, from the pending root seed
reference = tf.random.Generator.from_seed(4)
assert global_gen.normal([2]).numpy().tolist() == reference.normal([2]).numpy().tolist()
@tf.function
def graph_draw():
    return global_gen.normal([2]) + gen.uniform([2])
with rngstate.rng_scope("enc"):
    draws()
state = rngstate.capture()
expected = [draws(), gen.normal([3]).numpy().tolist(), global_gen.normal([3]).numpy().tolist(),
            graph_draw().numpy().tolist()]
with rngstate.rng_scope("enc"):
    expected_inner = draws()
for _ in range(2):
    rngstate.restore(rngstate.RNGState.from_dict(state.to_dict()))
    got = [draws(), gen.normal([3]).numpy().tolist(), global_gen.normal([3]).numpy().tolist(),
           graph_draw().numpy().tolist()]
    assert got == expected, "restore is not exact"
    with rngstate.rng_scope("enc"):
        assert draws() == expected_inner, "a restored substream is not exact"

# 3b. only a substream moved since the capture: its op seeds repeat when it is re-entered
state = rngstate.capture()
with rngstate.rng_scope("enc"):
    only_inner = draws()
rngstate.restore(state)
with rngstate.rng_scope("enc"):
    assert draws() == only_inner, "a restored substream reuses cached kernels"

# 4. the global generator: a user's own non-deterministic generator stays non-deterministic
a = tf.random.Generator.from_non_deterministic_state().normal([2]).numpy().tolist()
b = tf.random.Generator.from_non_deterministic_state().normal([2]).numpy().tolist()
assert a != b

# 4b. after tf.random.set_seed(None) ops are unseeded: the state still round trips
tf.random.set_seed(None)
rngstate.restore(rngstate.RNGState.from_dict(rngstate.capture().to_dict()))
tf.random.uniform([2])

# 5. one warning each for what cannot be captured
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    tf.random.uniform([2], seed=3)
    tf.random.uniform([2], seed=3)
    tf.function(lambda: tf.random.uniform([2]))()
    tf.function(lambda: tf.random.normal([2]))()
messages = [str(w.message) for w in caught if issubclass(w.category, RNGStateWarning)]
assert len(messages) == 2 and "explicit op seed" in messages[0] and "tf.function" in messages[1], messages

# 6. files: what a fresh process must reproduce
rngstate.seed_everything(4)
tf.random.uniform([3])
with rngstate.rng_scope("enc"):
    tf.random.uniform([3])
gen = tf.random.Generator.from_seed(0)
rngstate.tracking.RUNTIME.tracked.pop("augment")  # a fresh object under the same name
rngstate.track(gen, "augment")
gen.normal([2])
rngstate.save(sys.argv[1])
with rngstate.rng_scope("enc"):
    scoped = draws()
print(json.dumps({"outer": draws(), "scoped": scoped, "gen": gen.normal([3]).numpy().tolist(),
                  "global": tf.random.get_global_generator().normal([3]).numpy().tolist()}))
"""

RESUME = """
import json, sys
import rngstate
rngstate.restore(rngstate.load(sys.argv[1]))  # before TensorFlow is imported: applied at import
import tensorflow as tf
from tensorflow.python.eager import context
assert not context.context()._initialized, "rngstate initialized the eager context"

def draws():
    return [*tf.random.uniform([3]).numpy().tolist(), *tf.random.normal([2]).numpy().tolist(),
            *tf.nn.dropout(tf.ones([8]), 0.5).numpy().tolist()]

gen = rngstate.track(tf.random.Generator.from_seed(0), "augment")  # gets its saved state
with rngstate.rng_scope("enc"):
    scoped = draws()
print(json.dumps({"outer": draws(), "scoped": scoped, "gen": gen.normal([3]).numpy().tolist(),
                  "global": tf.random.get_global_generator().normal([3]).numpy().tolist()}))
"""


def last_json(output: str) -> Any:
    return json.loads(output.strip().splitlines()[-1])


@pytest.mark.slow
def test_eager_streams_and_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "tf.state"
    expected = last_json(run_python(EAGER, str(path)))
    resumed = last_json(run_python(RESUME, str(path)))
    assert resumed == expected
    state = rngstate.load(path)
    assert {"tensorflow.ops", "tensorflow.generator"} <= set(state.streams)
    assert state.generators == ("augment",)
    plain = state.to_dict()["streams"]["tensorflow.generator"]
    assert plain == {"mode": "state", "alg": 1, "state": plain["state"]}  # created, so live


@pytest.mark.slow
def test_import_hook_seeds_tensorflow() -> None:
    code = """
    import json, sys, rngstate
    if sys.argv[1] == "before":
        rngstate.seed_everything(8)
    import tensorflow as tf
    if sys.argv[1] == "after":
        rngstate.seed_everything(8)
    import random
    print(json.dumps([tf.random.uniform([3]).numpy().tolist(), random.random(),
                      tf.random.get_global_generator().normal([2]).numpy().tolist()]))
    """
    before = last_json(run_python(code, "before"))
    after = last_json(run_python(code, "after"))
    assert before == after  # TensorFlow's import draws from `random`; the hook puts it back


STATE_BYTES = """
import rngstate
from rngstate import backends
from rngstate.tracing.streams import StreamFingerprints
from tests.backends.plain_bytes_checks import kind_same_on_every_path, same_on_every_path
import tensorflow as tf

rngstate.seed_everything(4)
ops, glob = backends.stream("tensorflow.ops"), backends.stream("tensorflow.generator")
kind = backends.kind("tensorflow.Generator")
seen = []
for draw in (lambda: None, lambda: tf.random.uniform([2]), lambda: tf.random.normal([2])):
    draw()
    seen.append(same_on_every_path(ops))
tf.random.set_seed(None)
seen.append(same_on_every_path(ops))
assert len(set(seen)) == len(seen), "a draw did not change the op-seed stream's bytes"

# the global generator: pending (a seed), then live; a user's generator
rngstate.seed_everything(4)
seen = [same_on_every_path(glob)]
gen = rngstate.track(tf.random.Generator.from_seed(0), "augment")
seen_kind = [kind_same_on_every_path(kind, gen)]
global_gen = tf.random.get_global_generator()
for _ in range(2):
    seen.append(same_on_every_path(glob))
    global_gen.normal([2])
    gen.normal([2])
    seen_kind.append(kind_same_on_every_path(kind, gen))
assert len(set(seen)) == len(seen) and len(set(seen_kind)) == len(seen_kind), "a draw changed nothing"

# a step trace with the global generator live reads it at every step (it raised at the second
# step when the previous step's snapshot, holding a tensor, was compared with ==)
streams = StreamFingerprints()
first = streams.take()
assert streams.take()[0] == first[0] and streams.take()[3] == first[3]
global_gen.normal([2])
again = streams.take()
assert again[0]["tensorflow.generator"] != first[0]["tensorflow.generator"]
assert again[0]["tensorflow.ops"] == first[0]["tensorflow.ops"]

# reads while a tf.function is being traced (graph mode): lifted out, the same bytes
inside = []
@tf.function
def traced():
    inside.append((glob.state_crc(), kind.state_crc(gen), glob.state_bytes()))
    return global_gen.normal([1])
expected = (glob.state_crc(), kind.state_crc(gen), glob.state_bytes())
traced()
assert inside == [expected], (inside, expected)
print("ok")
"""


@pytest.mark.slow
def test_state_bytes_are_the_same_raw_or_through_get_state() -> None:
    """What a step trace fingerprints of the TensorFlow streams and tracked generators: equal on
    every path (live, snapshot, decoded, inside a tf.function being traced), the values older
    traces hold, and different after a draw."""
    assert run_python(STATE_BYTES).strip().endswith("ok")
