"""torch, PaddlePaddle and TensorFlow/Keras in one process: one scope covers all of them, capture
and restore are exact across all, a state saved in one process restores in another, and the
import hook seeds frameworks imported after ``seed_everything``.

Each scenario is one subprocess (Paddle is imported before TensorFlow: the other order crashes
the process in this environment).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ALL_FRAMEWORKS, PRELOAD_ALL, run_python

DRAWS = """
import json, random, sys
import numpy as np
import rngstate

def draws():
    import torch, paddle, tensorflow as tf, keras
    return {
        "python": random.random(),
        "numpy": np.random.rand(),
        "torch": torch.rand(2).tolist(),
        "paddle": paddle.rand([2]).numpy().tolist(),
        "tf.ops": tf.random.uniform([2]).numpy().tolist(),
        "tf.dropout": tf.nn.dropout(tf.ones([6]), 0.5).numpy().tolist(),
        "tf.generator": tf.random.get_global_generator().normal([2]).numpy().tolist(),
        "keras": keras.random.normal([2]).numpy().tolist(),
    }
"""

FIRST = DRAWS + """
import torch, paddle, tensorflow as tf, keras
rngstate.seed_everything(8)
hooked = draws()  # the third process imports everything after seed_everything(8)

rngstate.seed_everything(3)
outer = draws()
rngstate.seed_everything(3)
with rngstate.rng_scope("model"):
    inner = draws()
assert draws() == outer, "one scope must leave every framework's outer stream untouched"
assert all(inner[name] != outer[name] for name in outer), "the scope did not cover every framework"
streams = set(rngstate.capture().streams)
assert {"python", "numpy", "torch.cpu", "paddle.cpu", "tensorflow.ops", "tensorflow.generator",
        "keras.global"} <= streams, streams

state = rngstate.capture()
expected = draws()
with rngstate.rng_scope("model"):
    expected_inner = draws()
rngstate.restore(state)
assert draws() == expected, "capture/restore is not exact across frameworks"
with rngstate.rng_scope("model"):
    assert draws() == expected_inner

rngstate.save(sys.argv[1])
with rngstate.rng_scope("model"):
    scoped = draws()
print(json.dumps({"hooked": hooked, "outer": draws(), "scoped": scoped}))
"""

SECOND = DRAWS + """
rngstate.restore(rngstate.load(sys.argv[1]))  # no framework imported yet: applied at import
import torch, paddle, tensorflow as tf, keras
with rngstate.rng_scope("model"):
    scoped = draws()
print(json.dumps({"outer": draws(), "scoped": scoped}))
"""

HOOKED = DRAWS + """
rngstate.seed_everything(8)
import torch, paddle, tensorflow as tf, keras
print(json.dumps(draws()))
"""


def last_json(output: str) -> Any:
    return json.loads(output.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.xdist_group(ALL_FRAMEWORKS)
def test_three_frameworks_in_one_process_and_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "all.state")
    with ThreadPoolExecutor(1) as pool:  # the cold import-hook run beside the first one
        hooked = pool.submit(run_python, HOOKED)
        # FIRST imports every framework before seeding anyway: forked from the preloader of them
        first = last_json(run_python(FIRST, path, preload=PRELOAD_ALL))
        second = last_json(run_python(SECOND, path))  # cold: restored before any import
        assert second == {"outer": first["outer"], "scoped": first["scoped"]}
        assert last_json(hooked.result()) == first["hooked"]  # import order does not matter
