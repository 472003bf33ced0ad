"""worker_init_fn with plain framework loaders."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import rngstate
import rngstate.torch
from rngstate.errors import DataLoaderError
from tests.conftest import run_python
from tests.data.helpers import (
    Noisy,
    plain_worker_info,
    same,
)


def plain_run() -> list[torch.Tensor]:
    rngstate.seed_everything(0)
    loader = torch.utils.data.DataLoader(
        range(4),
        batch_size=None,
        num_workers=2,
        collate_fn=plain_worker_info,
        worker_init_fn=rngstate.worker_init_fn,
        generator=rngstate.torch.generator("loader"),
    )
    return [batch for _ in range(2) for batch in loader]


def test_worker_init_fn_seeds_every_worker_differently_and_repeatably() -> None:
    first, second = plain_run(), plain_run()
    assert same(first, second)
    rows = torch.stack(first)
    assert sorted(rows[:, 0].tolist()) == [0.0] * 4 + [1.0] * 4
    # Each worker in each epoch has its own NumPy, Python and torch draws.
    for column in (1, 2, 3):
        assert len(set(rows[:, column].tolist())) == 8


def test_worker_init_fn_outside_a_worker_raises() -> None:
    with pytest.raises(DataLoaderError, match="DataLoader worker"):
        rngstate.worker_init_fn(0)


def test_facades_import_no_framework() -> None:
    code = """
    import sys, rngstate, rngstate.torch, rngstate.paddle, rngstate.data
    rngstate.seed_everything(0)
    sampler = rngstate.ResumableSampler(5, name="s")
    assert sorted(sampler) == [0, 1, 2, 3, 4]
    assert rngstate.worker_init_fn is rngstate.data.worker_init_fn
    print(sorted({"torch", "paddle", "tensorflow", "keras"} & set(sys.modules)))
    """
    assert run_python(code).strip() == "[]"


def test_resumable_sampler_in_a_plain_torch_dataloader() -> None:
    def plain_loader() -> tuple[Any, Any]:
        sampler = rngstate.ResumableSampler(20, name="own")
        loader = torch.utils.data.DataLoader(
            Noisy(),
            batch_size=4,
            num_workers=2,
            sampler=sampler,
            worker_init_fn=rngstate.worker_init_fn,
            generator=rngstate.torch.generator("own_loader"),
        )
        return sampler, loader

    rngstate.seed_everything(0)
    sampler, loader = plain_loader()
    sampler.set_epoch(3)
    full = list(loader)
    assert [int(i) for b in full for i in b[:, 0]] == sampler.order(3).tolist()
    rngstate.seed_everything(0)
    sampler, loader = plain_loader()
    sampler.set_epoch(3)
    assert same(full, list(loader))  # reproducible with the same num_workers
    # Resuming by the samples the loop consumed (the sampler itself ran ahead, prefetching).
    rngstate.seed_everything(0)
    sampler, loader = plain_loader()
    sampler.set_epoch(3, start=8)
    assert [int(i) for b in loader for i in b[:, 0]] == sampler.order(3).tolist()[8:]
