"""The resume guard in a hand-written loop (rngstate.guard): what a new user forgets when
resuming ends with a ResumeWarning, not with other weights and no word."""

from __future__ import annotations

import random
import warnings
from typing import Any

import pytest

import rngstate
from rngstate.errors import InvalidStateError
from rngstate.guard import NextStep, ResumeMismatchError, ResumeWarning, check

torch = pytest.importorskip("torch")
import rngstate.torch  # noqa: E402


class Points(torch.utils.data.Dataset[Any]):
    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> Any:
        return torch.tensor([float(index)]) + torch.rand(1)


def loader() -> Any:
    return rngstate.torch.DataLoader(Points(), name="train", batch_size=2, shuffle=True)


def interrupted() -> tuple[dict[str, Any], rngstate.RNGState]:
    """A run stopped after 3 batches: (the loader's state_dict, the random state)."""
    rngstate.seed_everything(0)
    first = loader()
    batches = iter(first)
    for _ in range(3):
        next(batches)
        torch.randn(3)  # training draws (dropout)
    return first.state_dict(), rngstate.capture()


def test_a_correct_resume_is_quiet() -> None:
    saved, state = interrupted()
    rngstate.seed_everything(0)
    resumed = loader()
    rngstate.restore(state)
    resumed.load_state_dict(saved)
    assert len(list(resumed)) == 3  # filterwarnings turns a ResumeWarning into an error


def test_forgetting_restore_warns() -> None:
    saved, _ = interrupted()
    rngstate.seed_everything(0)
    resumed = loader()
    resumed.load_state_dict(saved)
    with pytest.warns(ResumeWarning, match="rngstate.restore"):
        next(iter(resumed))


def test_restoring_before_the_model_is_built_warns() -> None:
    saved, state = interrupted()
    rngstate.seed_everything(0)
    rngstate.restore(state)
    torch.nn.Linear(4, 4)  # construction draws from the restored streams
    random.random()
    resumed = loader()
    resumed.load_state_dict(saved)
    with pytest.warns(ResumeWarning, match="after the model and optimizer are built"):
        next(iter(resumed))


def test_forgetting_load_state_dict_warns() -> None:
    _, state = interrupted()
    rngstate.seed_everything(0)
    rngstate.restore(state)
    with pytest.warns(ResumeWarning, match="load_state_dict"):
        next(iter(loader()))


def test_a_state_captured_between_epochs_expects_no_load() -> None:
    rngstate.seed_everything(0)
    first = loader()
    list(first)
    state = rngstate.capture()
    rngstate.seed_everything(0)
    rngstate.restore(state)
    next(iter(loader()))  # quiet: no epoch was in progress


def test_the_warning_can_be_silenced_on_purpose() -> None:
    saved, _ = interrupted()
    rngstate.seed_everything(0)
    resumed = loader()
    resumed.load_state_dict(saved)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ResumeWarning)
        assert len(list(resumed)) == 3


def test_restore_of_a_loader_state_says_where_it_goes() -> None:
    saved, _ = interrupted()
    with pytest.raises(InvalidStateError, match=r"state_dict of the loader or sampler .*load_state_dict"):
        rngstate.restore(saved)


def test_a_mismatch_names_the_counter() -> None:
    expected = NextStep(epoch=1, batches=4, global_step=9, accumulation=2, phase=0, fingerprint="ab")
    check(expected, "here", epoch=1, batches=4, global_step=9, accumulation=2, phase=0, fingerprint="ab")
    with pytest.raises(ResumeMismatchError, match="global step is 8"):
        check(expected, "here", global_step=8)
    with pytest.raises(ResumeMismatchError, match=r"phase .* is 1.*between two optimizer steps"):
        check(expected, "here", phase=1)


def test_batches_taken_counts_from_the_epoch_start_after_a_resume() -> None:
    saved, state = interrupted()
    rngstate.seed_everything(0)
    resumed = loader()
    rngstate.restore(state)
    resumed.load_state_dict(saved)
    assert resumed.batches_taken == 3
    taken = [resumed.batches_taken for _ in resumed]
    assert taken == [4, 5, 6]
