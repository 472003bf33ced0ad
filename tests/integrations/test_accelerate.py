"""accelerate: ``save_state`` mid-epoch with ``rngstate.stateful()`` and the rngstate loader
registered for checkpointing, the process dies, ``load_state`` in a new process: the final
weights equal the run that never stopped (``examples/trainer_accelerate.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rngstate.data import DataLoaderError
from tests.conftest import PRELOAD_ACCELERATE
from tests.integrations.conftest import TrainerExample

EXAMPLE = TrainerExample("trainer_accelerate.py", preload=PRELOAD_ACCELERATE)
slow = pytest.mark.slow


@slow
def test_resume_mid_epoch_with_fewer_workers(tmp_path: Path) -> None:
    EXAMPLE.interrupted(tmp_path / "ckpt", 8, "--workers", "2")
    resumed = EXAMPLE.final("--resume", str(tmp_path / "ckpt"), "--workers", "0")
    assert resumed == EXAMPLE.reference("--workers", "2")


@slow
def test_accelerate_alone_does_not_resume_exactly(tmp_path: Path) -> None:
    # Control: accelerate's recipe (set_seed, prepared DataLoader, save_state/load_state,
    # skip_first_batches), resumed with the same number of workers.
    EXAMPLE.interrupted(tmp_path / "ckpt", 8, "--plain", "--workers", "2")
    resumed = EXAMPLE.final("--plain", "--resume", str(tmp_path / "ckpt"), "--workers", "2")
    assert resumed != EXAMPLE.reference("--plain", "--workers", "2")


def test_load_state_restores_after_accelerates_own_rng(tmp_path: Path) -> None:
    # accelerate restores its own RNG files in load_state; the registered stateful() is loaded
    # after them, so rngstate's state is the one that holds.
    torch = pytest.importorskip("torch")
    accelerate = pytest.importorskip("accelerate")
    import rngstate
    import rngstate.torch

    accelerator = accelerate.Accelerator(cpu=True)
    rngstate.seed_everything(5)
    loader = rngstate.torch.DataLoader(torch.arange(12.0), name="train", batch_size=4, shuffle=True)
    accelerator.register_for_checkpointing(rngstate.stateful(), loader)
    batches = iter(loader)
    next(batches)
    accelerator.save_state(str(tmp_path / "ckpt"))
    expected = (torch.rand(3), next(batches))
    torch.manual_seed(99)  # anything else
    again = rngstate.torch.DataLoader(torch.arange(12.0), name="train", batch_size=4, shuffle=True)
    resumed = accelerate.Accelerator(cpu=True)  # what a new process would build
    resumed.register_for_checkpointing(rngstate.stateful(), again)
    resumed.load_state(str(tmp_path / "ckpt"))
    # The batch first: a draw between the restore and the loader's first batch is what the
    # resume guard warns about (ResumeWarning); iterating draws nothing from the global streams.
    batch = next(iter(again))
    assert torch.equal(torch.rand(3), expected[0])
    assert torch.equal(batch, expected[1])


def test_a_prepared_rngstate_loader_raises_a_clear_error() -> None:
    torch = pytest.importorskip("torch")
    accelerate = pytest.importorskip("accelerate")
    import rngstate
    import rngstate.torch

    accelerator = accelerate.Accelerator(cpu=True)
    rngstate.seed_everything(0)
    loader = rngstate.torch.DataLoader(torch.arange(8.0), name="train", batch_size=4, shuffle=True)
    prepared = accelerator.prepare(loader)
    with pytest.raises(DataLoaderError, match="do not pass it to accelerator.prepare"):
        next(iter(prepared))
    assert len(list(loader)) == 2  # the loader itself still works
    with pytest.raises(DataLoaderError, match="accelerator.prepare"):
        next(iter(prepared))  # also after the loader has run an epoch
    skipping = accelerate.skip_first_batches(loader, 1)  # rebuilds it around its sampler too
    with pytest.raises(DataLoaderError, match="register_for_checkpointing"):
        next(iter(skipping))
