"""Keras ``model.fit``: a run killed right after a mid-epoch backup by
``rngstate.keras.RNGStateCallback`` and started again in a new process ends with the weights of a
run that never stopped (``examples/trainer_keras.py``; TensorFlow only ever runs in those
subprocesses)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_python
from tests.integrations.conftest import TrainerExample

EXAMPLE = TrainerExample("trainer_keras.py")
slow = pytest.mark.slow


@slow
def test_resume_mid_epoch_with_other_worker_threads(tmp_path: Path) -> None:
    # 6 steps per epoch: step 8 is the second batch of epoch 1; PyDataset(workers=3), then 1.
    EXAMPLE.interrupted(tmp_path / "backup", 8, "--workers", "3")
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == [
        "optimizer.npz", "progress.json", "rng.state", "weights.npz"
    ]
    resumed = EXAMPLE.final("--checkpoint", str(tmp_path / "backup"))
    assert resumed == EXAMPLE.reference("--checkpoint", str(tmp_path / "reference"))


@slow
def test_resume_at_the_last_batch_of_an_epoch(tmp_path: Path) -> None:
    EXAMPLE.interrupted(tmp_path / "backup", 12)
    resumed = EXAMPLE.final("--checkpoint", str(tmp_path / "backup"))
    assert resumed == EXAMPLE.reference("--checkpoint", str(tmp_path / "reference"))


@slow
def test_keras_alone_does_not_resume_exactly(tmp_path: Path) -> None:
    # Control: keras.utils.set_random_seed + BackupAndRestore(save_freq=8), which restarts the
    # interrupted epoch with the mid-epoch weights and no optimizer state.
    EXAMPLE.interrupted(tmp_path / "backup", 8, "--plain")
    resumed = EXAMPLE.final("--plain", "--checkpoint", str(tmp_path / "backup"))
    assert resumed != EXAMPLE.reference("--plain", "--checkpoint", str(tmp_path / "reference"))


def test_only_the_facade_imports_keras() -> None:
    code = """
    import sys, rngstate
    before = bool({'keras', 'tensorflow'} & set(sys.modules))
    import rngstate.keras
    print(before, 'keras' in sys.modules)
    """
    assert run_python(code).strip() == "False True"


def test_bad_arguments_are_refused() -> None:
    out = run_python(
        """
        import os
        os.environ["KERAS_BACKEND"] = "tensorflow"
        import rngstate.keras
        from rngstate.keras import KerasResumeError
        for kwargs in ({"save_freq": 0}, {"save_freq": 5}, {"save_freq": 5, "data": [1, 2]}):
            try:
                rngstate.keras.RNGStateCallback("backup", **kwargs)
            except KerasResumeError as exc:
                print("refused:", str(exc).split(" ")[0])
        """
    )
    assert out.split() == ["refused:", "save_freq", "refused:", "a", "refused:", "data"]
