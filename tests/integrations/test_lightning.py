"""Lightning: a run killed right after a mid-epoch ModelCheckpoint and resumed in a new process
with ``trainer.fit(ckpt_path=...)`` ends with the weights of a run that never stopped.

Each training is ``examples/trainer_lightning.py --run`` in its own process (a model with
dropout, a dataset drawing Python, NumPy and torch randomness, DataLoader workers).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rngstate.distributed import TopologyError
from rngstate.errors import InvalidStateError
from tests.conftest import PRELOAD_LIGHTNING, run_python
from tests.integrations.conftest import TrainerExample

EXAMPLE = TrainerExample("trainer_lightning.py", preload=PRELOAD_LIGHTNING)
slow = pytest.mark.slow


@slow
def test_resume_mid_epoch_with_fewer_workers(tmp_path: Path) -> None:
    # 6 steps per epoch: step 8 is the second batch of epoch 1.
    EXAMPLE.interrupted(tmp_path, 8, "--workers", "2")
    resumed = EXAMPLE.final("--resume", str(tmp_path / "interrupted.ckpt"), "--workers", "0")
    assert resumed == EXAMPLE.reference("--workers", "2")


@slow
def test_resumed_twice_in_the_same_epoch(tmp_path: Path) -> None:
    # The second checkpoint is written by a resumed run: the loader position it saves must
    # count from the saved position, not from where Lightning's set_epoch put it.
    first, second = tmp_path / "first", tmp_path / "second"
    EXAMPLE.interrupted(first, 7, "--workers", "0")
    EXAMPLE.interrupted(second, 10, "--resume", str(first / "interrupted.ckpt"), "--workers", "2")
    resumed = EXAMPLE.final("--resume", str(second / "interrupted.ckpt"), "--workers", "1")
    assert resumed == EXAMPLE.reference("--workers", "2")


@slow
def test_resume_in_the_first_epoch(tmp_path: Path) -> None:
    # Lightning calls set_epoch(0) after it created the first iterator; the checkpoint of step 3
    # must still hold the 24 samples taken, not 0.
    import torch

    EXAMPLE.interrupted(tmp_path, 3, "--workers", "2")
    checkpoint = torch.load(tmp_path / "interrupted.ckpt", weights_only=True)
    (loader,) = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert (loader["epoch"], loader["position"]) == (0, 24)
    resumed = EXAMPLE.final("--resume", str(tmp_path / "interrupted.ckpt"), "--workers", "1")
    assert resumed == EXAMPLE.reference("--workers", "2")


@slow
def test_the_checkpoint_is_plain_data(tmp_path: Path) -> None:
    import torch

    EXAMPLE.interrupted(tmp_path, 8, "--workers", "0")
    checkpoint = torch.load(tmp_path / "interrupted.ckpt", weights_only=True)
    saved = checkpoint["callbacks"]["rngstate"]
    assert (saved["format"], saved["world_size"], len(saved["ranks"])) == ("rngstate.lightning", 1, 1)
    # Lightning saved the loader position itself (the loader is Stateful).
    (loader,) = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert (loader["path"], loader["epoch"], loader["position"]) == ("train", 1, 16)


@slow
def test_ddp_two_gloo_ranks(tmp_path: Path) -> None:
    # Lightning would rebuild the loader with a DistributedSampler; the callback keeps the
    # rngstate loader, which shards by rank itself. 3 steps per epoch and rank.
    EXAMPLE.interrupted(tmp_path, 5, "--ddp", "--workers", "1")
    resumed = EXAMPLE.final("--ddp", "--resume", str(tmp_path / "interrupted.ckpt"), "--workers", "0")
    assert resumed == EXAMPLE.reference("--ddp", "--workers", "1")


@slow
def test_lightning_alone_does_not_resume_exactly(tmp_path: Path) -> None:
    # Control, measured with Lightning's own recipe: seed_everything(workers=True), a torch
    # DataLoader, ModelCheckpoint, fit(ckpt_path=...).  If it matched, the tests above would
    # prove nothing.
    EXAMPLE.interrupted(tmp_path, 8, "--plain", "--workers", "2")
    resumed = EXAMPLE.final("--plain", "--resume", str(tmp_path / "interrupted.ckpt"), "--workers", "2")
    assert resumed != EXAMPLE.reference("--plain", "--workers", "2")


@pytest.mark.slow
def test_only_the_facade_imports_lightning() -> None:
    code = """
    import sys, rngstate
    before = bool({'lightning', 'pytorch_lightning'} & set(sys.modules))
    import rngstate.lightning
    print(before, 'lightning.pytorch' in sys.modules)
    """
    assert run_python(code).strip() == "False True"


def test_a_checkpoint_from_another_world_size_is_refused() -> None:
    import rngstate
    from rngstate.lightning import _capture_ranks as capture_ranks
    from rngstate.lightning import _own_rank as own_rank

    rngstate.seed_everything(3)
    saved = capture_ranks()
    assert own_rank(saved) == rngstate.capture()
    with pytest.raises(TopologyError, match="same number of devices"):
        own_rank({**saved, "world_size": 2, "ranks": saved["ranks"] * 2})
    with pytest.raises(InvalidStateError, match="format"):
        own_rank({**saved, "format": "something else"})


@pytest.mark.slow
def test_the_callback_follows_pytorch_lightning_when_that_is_imported() -> None:
    out = run_python(
        """
        import pytorch_lightning, rngstate.lightning
        callback = rngstate.lightning.RNGStateCallback
        print(issubclass(callback, pytorch_lightning.Callback), callback.__qualname__)
        """
    )
    assert out.split() == ["True", "RNGStateCallback"]
