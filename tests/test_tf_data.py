"""``rngstate.tf_data``: the warnings naming what keeps a pipeline from resuming exactly, and
``resume_iterator`` putting a rebuilt pipeline where the interrupted one stood (TensorFlow runs
in a subprocess: it must not be imported before Paddle in the pytest process)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_python

CHECKS = """
import json, warnings
import rngstate
rngstate.seed_everything(0)
import tensorflow as tf
from rngstate.errors import RNGStateWarning
from rngstate.tf_data import check_dataset, resume_iterator

def caught(build):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        dataset = build()
        found = check_dataset(dataset)
    return found, [str(w.message) for w in seen if issubclass(w.category, RNGStateWarning)]

def guidance():
    def augment(x, seed):
        return x + tf.random.stateless_uniform([], tf.stack([seed, seed]), 0, 10, tf.int64)
    data = tf.data.Dataset.range(12).shuffle(12, seed=rngstate.derive_seed("shuffle"))
    seeds = tf.data.Dataset.random(seed=rngstate.derive_seed("augment"), rerandomize_each_iteration=True)
    data = tf.data.Dataset.zip((data, seeds)).map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return data.batch(3).prefetch(tf.data.AUTOTUNE)

out = {}
out["guidance"] = caught(guidance)
out["stateful"] = caught(lambda: tf.data.Dataset.range(4).map(
    lambda x: x + tf.random.uniform([], 0, 9, tf.int64), num_parallel_calls=2))
out["unordered"] = caught(lambda: tf.data.Dataset.range(4).map(lambda x: x, num_parallel_calls=2,
                                                               deterministic=False))
out["unseeded"] = caught(lambda: tf.data.Dataset.range(4).shuffle(4))

def batches(iterator):
    return [b.numpy().tolist() for b in iterator]

data = guidance()
epochs = [batches(data) for _ in range(3)]
rebuilt = guidance()
out["resumed"] = batches(resume_iterator(rebuilt, 1, 2)) + batches(rebuilt)
out["uninterrupted"] = epochs[1][2:] + epochs[2]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_warnings_name_the_op_and_a_rebuilt_pipeline_resumes() -> None:
    out = json.loads(run_python(CHECKS).strip().splitlines()[-1])
    assert out["guidance"] == [[], []]
    found, warned = out["stateful"]
    assert len(found) == 1 and "RandomUniformInt" in found[0] and "parallel map" in found[0]
    assert "tf.random.stateless_uniform" in found[0] and warned[-1].endswith(found[0])
    found, _ = out["unordered"]
    assert len(found) == 1 and "deterministic=False" in found[0]
    found, warned = out["unseeded"]
    assert found == [] and len(warned) == 1
    assert "shuffle() was built without a seed" in warned[0] and "rngstate.derive_seed" in warned[0]
    assert out["resumed"] == out["uninterrupted"]
