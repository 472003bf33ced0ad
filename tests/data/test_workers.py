"""worker_init_fn with plain framework loaders."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
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


def test_rngstate_and_its_data_package_import_no_framework() -> None:
    # The facades (rngstate.torch, rngstate.paddle) import their framework: their loaders are
    # real subclasses of the framework's DataLoader (DESIGN).
    code = """
    import sys, rngstate, rngstate.data
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


class Scoped(torch.utils.data.Dataset[torch.Tensor]):
    """Augments inside a scope: the pattern that repeated across workers and epochs."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        with rngstate.rng_scope("aug"):
            return torch.tensor(
                [float(index), random.random(), float(np.random.rand()), float(torch.rand(()))]
            )


def scoped_run(workers: int = 2) -> list[torch.Tensor]:
    rngstate.seed_everything(0)
    with rngstate.rng_scope("aug"):  # the parent's substream exists before the workers fork
        random.random()
    loader = torch.utils.data.DataLoader(
        Scoped(),
        batch_size=2,
        num_workers=workers,
        worker_init_fn=rngstate.worker_init_fn,
        generator=rngstate.torch.generator("scoped_loader"),
    )
    return [batch for _ in range(2) for batch in loader]


def test_scopes_in_plain_loader_workers_differ_across_workers_and_epochs() -> None:
    first, second = scoped_run(), scoped_run()
    assert same(first, second)  # reproducible
    rows = torch.cat(first)
    for column in (1, 2, 3):  # 2 workers x 2 epochs x 4 samples: all different
        assert len(set(rows[:, column].tolist())) == 16


def test_scopes_in_rngstate_loader_follow_the_sample() -> None:
    def run(workers: int) -> list[torch.Tensor]:
        rngstate.seed_everything(0)
        loader = rngstate.torch.DataLoader(Scoped(), 2, True, num_workers=workers, name="scoped")
        return [batch for _ in range(2) for batch in loader]

    zero = run(0)
    assert same(zero, run(2))  # a scope's draws depend on the sample, not on the worker
    assert len(set(torch.cat(zero)[:, 1].tolist())) == 16
