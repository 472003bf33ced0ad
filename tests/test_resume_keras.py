"""End to end, Keras 3 on TensorFlow: a model with Dropout trained with train_on_batch, with
tf.random noise on every batch and the order from rngstate.ResumableSampler, stopped mid-epoch
and resumed in a new process, ends with the weights of a run that never stopped.

Each run is examples/resume_keras.py in its own process; the RNG state travels in an
rngstate.save side file next to .npz weights and optimizer variables.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("keras") is None or importlib.util.find_spec("tensorflow") is None,
        reason="needs keras and tensorflow",
    ),
]
EXAMPLE = ROOT / "examples" / "resume_keras.py"


def run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def final_hash(output: str) -> str:
    match = re.search(r"final weights ([0-9a-f]{16})", output)
    assert match, output
    return match.group(1)


@cache
def uninterrupted(plain: bool = False) -> str:
    return final_hash(run(*(["--plain"] if plain else [])))


def resumed(tmp_path: Path, stop_at: int, plain: bool = False) -> str:
    checkpoint = str(tmp_path / f"run{stop_at}")
    extra = ["--plain"] if plain else []
    saved = run("--stop-at", str(stop_at), "--checkpoint", checkpoint, *extra)
    assert f"checkpoint saved at step {stop_at} " in saved
    return final_hash(run("--resume", "--checkpoint", checkpoint, *extra))


def test_keras_resumes_mid_epoch_exactly(tmp_path: Path) -> None:
    # 6 batches per epoch: step 8 is the second batch of epoch 1.
    assert resumed(tmp_path, 8) == uninterrupted()


def test_keras_usual_recipe_does_not_resume_exactly(tmp_path: Path) -> None:
    # Control: set_random_seed, weights and optimizer saved, no RNG state: the dropout masks
    # and the tf.random noise after the resume differ, so the weights do.
    assert resumed(tmp_path, 8, plain=True) != uninterrupted(plain=True)
