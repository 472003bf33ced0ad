"""End to end, torch: training stopped mid-epoch and resumed in a new process, with another
number of DataLoader workers, ends with the weights of a run that never stopped.

Each run is examples/resume_torch.py in its own process: a model with dropout, a dataset that
augments with Python, NumPy and torch randomness, loaded by workers, SGD with momentum, the
checkpoint written with torch.save and read with torch.load(weights_only=True).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PRELOAD_TORCH, ResumeExample

pytestmark = pytest.mark.slow
EXAMPLE = ResumeExample("resume_torch.py", preload=PRELOAD_TORCH)


def test_zero_and_two_workers_train_identically() -> None:
    assert EXAMPLE.uninterrupted(0) == EXAMPLE.uninterrupted(2)


def test_resume_mid_epoch_with_fewer_workers(tmp_path: Path) -> None:
    # 6 batches per epoch: step 8 is the second batch of epoch 1.
    assert EXAMPLE.resumed(tmp_path, 8, before=2, after=0) == EXAMPLE.uninterrupted(2)


def test_resume_at_an_epoch_boundary_with_more_workers(tmp_path: Path) -> None:
    assert EXAMPLE.resumed(tmp_path, 12, before=0, after=2) == EXAMPLE.uninterrupted(2)


def test_resume_early_in_the_first_epoch(tmp_path: Path) -> None:
    assert EXAMPLE.resumed(tmp_path, 1, before=2, after=2) == EXAMPLE.uninterrupted(2)


def test_the_usual_recipe_does_not_resume_exactly(tmp_path: Path) -> None:
    # Control: plain DataLoader, RNG restored, consumed batches skipped (accelerate's recipe).
    # If this ever matched, the test above would prove nothing.
    assert EXAMPLE.resumed(tmp_path, 8, before=2, after=2, plain=True) != EXAMPLE.uninterrupted(2, plain=True)
    assert EXAMPLE.uninterrupted(0, plain=True) != EXAMPLE.uninterrupted(2, plain=True)


def test_the_docs_show_these_runs(tmp_path: Path) -> None:
    EXAMPLE.check_shown(tmp_path)  # docs/exact-resume.md
