"""End to end, torch: training stopped mid-epoch and resumed in a new process, with another
number of DataLoader workers, ends with the weights of a run that never stopped.

Each run is examples/resume_torch.py in its own process: a model with dropout, a dataset that
augments with Python, NumPy and torch randomness, loaded by workers, SGD with momentum, the
checkpoint written with torch.save and read with torch.load(weights_only=True).
"""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
EXAMPLE = ROOT / "examples" / "resume_torch.py"


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
def uninterrupted(workers: int, plain: bool = False) -> str:
    return final_hash(run("--workers", str(workers), *(["--plain"] if plain else [])))


def resumed(tmp_path: Path, stop_at: int, before: int, after: int, plain: bool = False) -> str:
    checkpoint = str(tmp_path / "run.ckpt")
    extra = ["--plain"] if plain else []
    saved = run("--stop-at", str(stop_at), "--workers", str(before), "--checkpoint", checkpoint, *extra)
    assert f"checkpoint saved at step {stop_at} " in saved
    return final_hash(run("--resume", "--workers", str(after), "--checkpoint", checkpoint, *extra))


def test_zero_and_two_workers_train_identically() -> None:
    assert uninterrupted(0) == uninterrupted(2)


def test_resume_mid_epoch_with_fewer_workers(tmp_path: Path) -> None:
    # 6 batches per epoch: step 8 is the second batch of epoch 1.
    assert resumed(tmp_path, 8, before=2, after=0) == uninterrupted(2)


def test_resume_at_an_epoch_boundary_with_more_workers(tmp_path: Path) -> None:
    assert resumed(tmp_path, 12, before=0, after=2) == uninterrupted(2)


def test_resume_early_in_the_first_epoch(tmp_path: Path) -> None:
    assert resumed(tmp_path, 1, before=2, after=2) == uninterrupted(2)


def test_the_usual_recipe_does_not_resume_exactly(tmp_path: Path) -> None:
    # Control: plain DataLoader, RNG restored, consumed batches skipped (accelerate's recipe).
    # If this ever matched, the test above would prove nothing.
    assert resumed(tmp_path, 8, before=2, after=2, plain=True) != uninterrupted(2, plain=True)
    assert uninterrupted(0, plain=True) != uninterrupted(2, plain=True)
