"""rngstate.torch.DataLoader in this process (end-to-end training runs: tests/test_resume_*.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import rngstate
import rngstate.torch
from rngstate.data import sample_seed
from rngstate.errors import DataLoaderError, InvalidStateError
from tests.data.helpers import (
    Noisy,
    live_streams,
    make_loader,
    mixup,
    run_loader,
    same,
    streams_equal,
)


def test_samples_do_not_depend_on_workers() -> None:
    rngstate.seed_everything(0)
    zero, _ = run_loader(make_loader(0), range(2))
    rngstate.seed_everything(0)
    two, _ = run_loader(make_loader(2), range(2))
    assert same(zero, two) and len(zero) == 14
    # The augmentation draws really are random, and differ per epoch.
    assert len({round(float(b[0, 1]), 12) for b in zero}) == len(zero)
    assert sorted(torch.cat(zero[:7])[:, 0].tolist()) == [float(i) for i in range(20)]


def test_collate_fn_randomness_does_not_depend_on_workers() -> None:
    rngstate.seed_everything(0)
    zero, _ = run_loader(make_loader(0, collate_fn=mixup), range(1))
    rngstate.seed_everything(0)
    two, _ = run_loader(make_loader(2, collate_fn=mixup), range(1))
    assert same(zero, two)
    assert len({float(b[0, -1]) for b in zero}) == len(zero)


@pytest.mark.parametrize(("before", "after"), [(2, 0), (0, 2)])
def test_resume_mid_epoch_with_other_workers(before: int, after: int) -> None:
    rngstate.seed_everything(5)
    full, _ = run_loader(make_loader(0), range(3))
    rngstate.seed_everything(5)
    first, state = run_loader(make_loader(before), range(3), stop=10)
    assert state is not None and (state["epoch"], state["position"]) == (1, 9)
    rng = rngstate.capture()
    rngstate.seed_everything(99)  # a new process would start elsewhere
    rngstate.restore(rng)
    loader = make_loader(after)
    loader.load_state_dict(json.loads(json.dumps(state)))
    assert len(loader) == 4  # 11 samples left in batches of 3
    rest, _ = run_loader(loader, range(state["epoch"], 3))
    assert same(full, first + rest)


def test_iterating_does_not_disturb_training_streams() -> None:
    rngstate.seed_everything(2)
    for workers in (0, 2):
        before = live_streams()
        loader = make_loader(workers, collate_fn=mixup)
        for _ in loader:
            pass
        iterator = iter(loader)
        next(iterator)
        del iterator
        assert streams_equal(before, live_streams()), workers


def test_plain_torch_loader_does_disturb_training_streams() -> None:
    # The fact the loader protects against: torch draws its workers' base seed from the global
    # generator when no generator is given, so starting an iterator shifts dropout.
    rngstate.seed_everything(2)
    before = live_streams()
    iter(torch.utils.data.DataLoader(Noisy(), batch_size=3))
    assert not streams_equal(before, live_streams())


def test_persistent_workers_and_drop_last() -> None:
    rngstate.seed_everything(0)
    reference, _ = run_loader(make_loader(0, drop_last=True), range(3))
    assert len(reference) == 18  # 6 full batches of 3 out of 20, per epoch
    rngstate.seed_everything(0)
    loader = make_loader(2, drop_last=True, persistent_workers=True)
    assert len(loader) == 6
    persistent, _ = run_loader(loader, range(3))
    assert same(reference, persistent)
    # drop_last: 2 samples left is a finished epoch; without set_epoch the next one starts.
    rngstate.seed_everything(0)
    loader = make_loader(0, drop_last=True)
    batches = [batch for _ in range(3) for batch in loader]
    assert same(reference, batches)
    assert (loader.epoch, loader.position) == (2, 20)


def test_batch_size_none_and_scope_path() -> None:
    rngstate.seed_everything(0)
    with rngstate.rng_scope("stage1"):
        loader = rngstate.torch.DataLoader(Noisy(6), name="train", batch_size=None, shuffle=True)
    items = list(loader)
    assert len(items) == 6 and items[0].shape == (4,)
    assert loader.state_dict()["path"] == "stage1/train"
    assert type(loader.dataset) is Noisy and loader.batch_size is None and loader.batch_sampler is None


def test_loader_raises_what_torch_raises() -> None:
    rngstate.seed_everything(0)
    sampler = torch.utils.data.SequentialSampler(range(20))
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        rngstate.torch.DataLoader(Noisy(), sampler=sampler, shuffle=True)
    with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive"):
        rngstate.torch.DataLoader(Noisy(), 4, batch_sampler=[[0, 1]])
    with pytest.raises(ValueError, match="batch_size"):
        rngstate.torch.DataLoader(Noisy(), batch_size=0)
    with pytest.raises(DataLoaderError, match="pass either group= or rank="):
        rngstate.torch.DataLoader(Noisy(), rank=0, world_size=1, group=object())
    loader = make_loader(0)
    with pytest.raises(InvalidStateError, match="covers 20 samples, this dataset has 5"):
        rngstate.torch.DataLoader(Noisy(5), name="train", shuffle=True).load_state_dict(loader.state_dict())


@pytest.mark.slow
def test_spawned_workers() -> None:
    rngstate.seed_everything(0)
    reference, _ = run_loader(make_loader(0), range(1))
    rngstate.seed_everything(0)
    spawned, _ = run_loader(make_loader(1, multiprocessing_context="spawn"), range(1))
    assert same(reference, spawned)


def test_sample_seed() -> None:
    rngstate.seed_everything(0)

    class OwnGenerator:
        def __len__(self) -> int:
            return 8

        def __getitem__(self, index: int) -> torch.Tensor:
            rng = np.random.default_rng(sample_seed("noise"))
            return torch.tensor([rng.normal(), float(sample_seed())])

    zero, _ = run_loader(rngstate.torch.DataLoader(OwnGenerator(), name="own", batch_size=4), range(2))
    rngstate.seed_everything(0)
    two, _ = run_loader(
        rngstate.torch.DataLoader(OwnGenerator(), name="own", batch_size=4, num_workers=2), range(2)
    )
    assert same(zero, two)
    assert len({float(v) for b in zero for v in b[:, 0]}) == 16
    with pytest.raises(DataLoaderError, match="only available inside __getitem__"):
        sample_seed()


WORKER_TAG: list[int] = []


def tag_worker(worker_id: int) -> None:
    WORKER_TAG.append(100 + worker_id)


class Tagged(torch.utils.data.Dataset[torch.Tensor]):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([index, WORKER_TAG[-1] if WORKER_TAG else -1])


def test_the_users_worker_init_fn_still_runs() -> None:
    rngstate.seed_everything(0)
    loader = rngstate.torch.DataLoader(
        Tagged(), name="tagged", batch_size=2, num_workers=2, worker_init_fn=tag_worker
    )
    tags = {int(t) for batch in loader for t in batch[:, 1]}
    assert tags == {100, 101}


@pytest.mark.parametrize("seed_per", ["sample", "batch"])
def test_the_lean_fetch_loads_what_iterating_the_batches_loads(seed_per: str) -> None:
    """With num_workers=0 a batch loads itself in one loop (SeededFetcher, SeededBatch.load)
    instead of through torch's fetcher iterating it; the samples are the same."""
    from rngstate.data.wrappers import SeededBatch, SeededFetcher

    rngstate.seed_everything(0)
    loader = make_loader(0, seed_per=seed_per)
    assert type(iter(loader)._dataset_fetcher) is SeededFetcher
    lean, _ = run_loader(loader, range(2))
    dataset, root = Noisy(), rngstate.capture().root_seed
    assert root is not None
    for epoch, indices in ((0, [4, 1, 7]), (1, [0, 19])):
        batch = SeededBatch(indices, root=root, parts=("x",), epoch=epoch, first=3, seed_per=seed_per)
        again = SeededBatch(indices, root=root, parts=("x",), epoch=epoch, first=3, seed_per=seed_per)
        assert same([torch.stack(batch.load(dataset))], [torch.stack([dataset[i] for i in again])])
    rngstate.seed_everything(0)
    two, _ = run_loader(make_loader(2, seed_per=seed_per), range(2))
    assert same(lean, two)


def test_a_sample_that_raises_puts_the_outer_streams_back_at_once() -> None:
    class Failing(Noisy):
        def __getitem__(self, index: int) -> torch.Tensor:
            if index == 5:
                raise KeyError(index)
            return super().__getitem__(index)

    rngstate.seed_everything(3)
    before = live_streams()
    loader = rngstate.torch.DataLoader(Failing(), name="f", batch_size=4, shuffle=False)
    with pytest.raises(KeyError) as raised:
        list(loader)
    assert raised.value is not None  # the traceback (and its frames) still alive
    assert streams_equal(before, live_streams())


def test_under_the_profiler_the_loader_shows_as_torchs() -> None:
    """Without a profiler the loader skips torch's record_function (5 us a batch); under one
    the profile shows the loader's batches as for torch's own loader."""
    rngstate.seed_everything(0)
    loader = make_loader(0)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        batches = list(loader)
    names = [event.name for event in profile.events()]
    assert sum("DataLoader" in name and "__next__" in name for name in names) == len(batches) + 1
