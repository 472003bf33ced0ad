"""``rngstate.tensorflow.RNGStateCheckpoint``: rngstate's state travels inside a
``tf.train.Checkpoint`` written by a ``CheckpointManager`` (one string entry in rngstate's file
format, never a pickle) and is restored with it in another process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_python

SAVE = """
import json, random, sys
import numpy as np
import rngstate
rngstate.seed_everything(0)
import tensorflow as tf
from rngstate.tensorflow import RNGStateCheckpoint
tf.random.uniform([2]); np.random.rand(3); random.random()
checkpoint = tf.train.Checkpoint(step=tf.Variable(7), rng=RNGStateCheckpoint())
manager = tf.train.CheckpointManager(checkpoint, sys.argv[1], max_to_keep=1)
path = manager.save()
entry = tf.train.load_checkpoint(path).get_tensor("rng/.ATTRIBUTES/py_state")
print(json.dumps({"magic": entry[:9].hex(), "draws": [*tf.random.uniform([2]).numpy().tolist(),
                  *np.random.rand(2).tolist(), random.random()]}))
"""

RESTORE = """
import json, random, sys
import numpy as np
import rngstate
rngstate.seed_everything(1)
import tensorflow as tf
from rngstate.tensorflow import RNGStateCheckpoint
checkpoint = tf.train.Checkpoint(step=tf.Variable(0), rng=RNGStateCheckpoint())
manager = tf.train.CheckpointManager(checkpoint, sys.argv[1], max_to_keep=1)
checkpoint.restore(manager.latest_checkpoint).assert_consumed()
print(json.dumps({"step": int(checkpoint.step), "draws": [*tf.random.uniform([2]).numpy().tolist(),
                  *np.random.rand(2).tolist(), random.random()]}))
"""


@pytest.mark.slow
def test_the_state_travels_in_a_checkpoint_manager(tmp_path: Path) -> None:
    saved = json.loads(run_python(SAVE, str(tmp_path)).strip().splitlines()[-1])
    restored = json.loads(run_python(RESTORE, str(tmp_path)).strip().splitlines()[-1])
    assert bytes.fromhex(saved["magic"]) == b"\x89RNGSTATE"  # rngstate's file format, no pickle
    assert restored["step"] == 7
    assert restored["draws"] == saved["draws"]
