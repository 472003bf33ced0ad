"""``paddle.Model.fit``: a run killed right after a mid-epoch backup by
``rngstate.paddle.RNGStateCallback`` and started again in a new process, with another number of
DataLoader workers, ends with the weights of a run that never stopped
(``examples/trainer_paddle.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PRELOAD_PADDLE, run_python
from tests.integrations.conftest import TrainerExample

EXAMPLE = TrainerExample("trainer_paddle.py", preload=PRELOAD_PADDLE)
slow = pytest.mark.slow


@slow
def test_resume_mid_epoch_with_fewer_workers(tmp_path: Path) -> None:
    # 6 steps per epoch: step 8 is the second batch of epoch 1.
    EXAMPLE.interrupted(tmp_path / "backup", 8, "--workers", "2")
    resumed = EXAMPLE.final("--checkpoint", str(tmp_path / "backup"), "--workers", "0")
    assert resumed == EXAMPLE.reference("--workers", "2", checkpoint=True)


@slow
def test_resume_at_an_epoch_boundary_with_more_workers(tmp_path: Path) -> None:
    EXAMPLE.interrupted(tmp_path / "backup", 12, "--workers", "0")
    resumed = EXAMPLE.final("--checkpoint", str(tmp_path / "backup"), "--workers", "2")
    assert resumed == EXAMPLE.reference("--workers", "2", checkpoint=True)


@slow
def test_paddle_alone_does_not_resume_exactly(tmp_path: Path) -> None:
    # Control: seeds set, Model.save/Model.load, consumed batches skipped, same workers.
    EXAMPLE.interrupted(tmp_path / "backup", 8, "--plain", "--workers", "2")
    resumed = EXAMPLE.final("--plain", "--checkpoint", str(tmp_path / "backup"), "--workers", "2")
    reference = EXAMPLE.reference("--plain", "--workers", "2", checkpoint=True)
    assert resumed != reference


def test_bad_arguments_are_refused() -> None:
    out = run_python(
        """
        import numpy as np, rngstate, rngstate.paddle
        from rngstate.paddle_fit import PaddleResumeError
        rngstate.seed_everything(0)
        loader = rngstate.paddle.DataLoader(np.arange(8.0), name="train", batch_size=4)
        for args, kwargs in (((loader,), {"save_freq": 0}), (([1, 2],), {"save_freq": 5})):
            try:
                rngstate.paddle.RNGStateCallback("backup", *args, **kwargs)
            except PaddleResumeError as exc:
                print("refused:", str(exc).split(" ")[0])
        """
    )
    assert out.split() == ["refused:", "save_freq", "refused:", "train_data"]
