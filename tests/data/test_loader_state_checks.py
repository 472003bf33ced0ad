"""Loader states that do not fit are refused (issue 25): another dataset length under
``sampler=`` / ``batch_sampler=``, a state without ``seed_per`` in a per-batch loader."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import rngstate
import rngstate.torch
from rngstate.errors import DataLoaderError, InvalidStateError


class Numbers(torch.utils.data.Dataset[int]):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


def make(kind: str, n: int, seed_per: str = "sample") -> Any:
    data = Numbers(n)
    order = torch.utils.data.SequentialSampler(data)
    if kind == "sampler":
        return rngstate.torch.DataLoader(data, name="l", batch_size=2, sampler=order, seed_per=seed_per)
    if kind == "batch_sampler":
        batches = torch.utils.data.BatchSampler(order, 2, drop_last=False)
        return rngstate.torch.DataLoader(data, name="l", batch_sampler=batches, seed_per=seed_per)
    return rngstate.torch.DataLoader(data, name="l", batch_size=2, shuffle=True, seed_per=seed_per)


@pytest.mark.parametrize("kind", ["sampler", "batch_sampler", "default"])
def test_a_state_saved_over_another_dataset_length_is_refused(kind: str) -> None:
    # Before: sampler= and batch_sampler= loaders took it and skipped or repeated samples.
    rngstate.seed_everything(0)
    first = make(kind, 10)
    batches = iter(first)
    next(batches), next(batches)
    state = first.state_dict()
    same = make(kind, 10)
    same.load_state_dict(state)
    assert [int(i) for batch in same for i in batch] == list(range(4, 10)) or kind == "default"
    with pytest.raises(InvalidStateError, match="covers 10 samples, this dataset has 12"):
        make(kind, 12).load_state_dict(state)


@pytest.mark.parametrize("kind", ["sampler", "default"])
def test_a_state_without_seed_per_is_taken_as_per_sample(kind: str) -> None:
    # Before: a seed_per="batch" loader accepted it, and its samples drew other numbers.
    rngstate.seed_everything(0)
    state = {key: value for key, value in make(kind, 10).state_dict().items() if key != "seed_per"}
    make(kind, 10).load_state_dict(state)  # what a ResumableSampler or an older loader saved
    with pytest.raises(DataLoaderError, match="seed_per='sample', this one has seed_per='batch'"):
        make(kind, 10, seed_per="batch").load_state_dict(state)
