"""rngstate.torch.DataLoader as a drop-in for torch.utils.data.DataLoader: what torch's own
class does (independent iterators, the user's dataset in the workers, the signature, samplers,
generic typing, growing datasets) while order, samples and position stay exact."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
import torch

import rngstate
import rngstate.torch
from rngstate.errors import InvalidStateError
from tests.data.helpers import Noisy, same


def indices(batches: list[torch.Tensor]) -> list[int]:
    return [int(i) for batch in batches for i in batch[:, 0]]


def test_each_iter_is_a_whole_epoch_and_iterators_are_independent() -> None:
    rngstate.seed_everything(0)
    loader = rngstate.torch.DataLoader(Noisy(10), 3, True, name="peek")
    first = iter(loader)
    peeked = next(first)
    second = list(iter(loader))  # the usual peek-a-batch-then-train pattern
    rest_of_first = list(first)
    assert len(second) == 4 and len(rest_of_first) == 3  # nothing cut off
    assert sorted(indices([peeked, *rest_of_first])) == list(range(10))
    assert sorted(indices(second)) == list(range(10))
    assert indices([peeked, *rest_of_first]) != indices(second)  # the next epoch
    assert loader.epoch == 1 and loader.position == 10


def _remember_worker(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    assert info is not None
    info.dataset.opened_by = 100 + worker_id  # e.g. a per-worker file handle


class Handles(torch.utils.data.Dataset[torch.Tensor]):
    opened_by = -1

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([index, self.opened_by])


def test_workers_and_loader_see_the_users_dataset() -> None:
    rngstate.seed_everything(0)
    dataset = Handles()
    loader = rngstate.torch.DataLoader(dataset, batch_size=2, num_workers=2, worker_init_fn=_remember_worker)
    assert loader.dataset is dataset and loader.worker_init_fn is _remember_worker
    tags = {int(t) for batch in loader for t in batch[:, 1]}
    assert tags == {100, 101}


def test_torch_signature_generic_class_and_attributes() -> None:
    rngstate.seed_everything(0)
    loader: rngstate.torch.DataLoader[torch.Tensor] = rngstate.torch.DataLoader(Noisy(10), 4, False)
    assert (loader.batch_size, loader.drop_last, loader.batch_sampler.batch_size) == (4, False, 4)
    assert indices(list(loader)) == list(range(10))  # shuffle=False: in order
    assert rngstate.torch.DataLoader[int] is not None
    with pytest.raises(ValueError, match="should not be set after"):
        loader.batch_size = 3  # type: ignore[misc]


def test_len_follows_a_growing_dataset() -> None:
    rngstate.seed_everything(0)
    data = [torch.ones(2) for _ in range(4)]
    loader = rngstate.torch.DataLoader(data, shuffle=True)
    data.append(torch.ones(2))
    assert len(loader) == 5 and len(list(loader)) == 5


class Batched(torch.utils.data.Dataset[torch.Tensor]):
    """Fetches a batch at once (__getitems__), drawing per sample as it goes."""

    def __init__(self) -> None:
        self.calls = 0

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([float(index), random.random(), float(np.random.rand())], dtype=torch.float64)

    def __getitems__(self, batch: list[int]) -> list[torch.Tensor]:
        self.calls += 1
        return [self[index] for index in batch]


def test_getitems_is_used_and_seeded_per_sample() -> None:
    rngstate.seed_everything(0)
    dataset = Batched()
    batched = list(rngstate.torch.DataLoader(dataset, 4, True, name="b"))
    assert dataset.calls == 3
    rngstate.seed_everything(0)
    plain = list(rngstate.torch.DataLoader(Noisy(12), 4, True, name="b"))
    # Same positions, same seeds: the draws equal those of a dataset without __getitems__.
    assert all(torch.equal(a[:, :3], b[:, :3]) for a, b in zip(batched, plain, strict=True))
    rngstate.seed_everything(0)
    assert same(batched, list(rngstate.torch.DataLoader(Batched(), 4, True, name="b", num_workers=2)))


def run(loader: Any, stop: int | None = None, state: dict[str, Any] | None = None) -> tuple[list[Any], Any]:
    if state is not None:
        loader.load_state_dict(state)
    out: list[Any] = []
    for _epoch in range(2):
        for batch in loader:
            out.append(batch)
            if len(out) == stop:
                return out, loader.state_dict()
    return out, None


def weighted(workers: int, root: int = 0) -> Any:
    rngstate.seed_everything(root)
    sampler = torch.utils.data.WeightedRandomSampler([1.0] * 10 + [5.0] * 10, num_samples=16)
    return rngstate.torch.DataLoader(Noisy(), batch_size=4, sampler=sampler, num_workers=workers, name="w")


def test_a_users_sampler_is_drawn_from_the_root_seed_and_resumes_exactly() -> None:
    full, _ = run(weighted(0))
    assert len(full) == 8 and indices(full[:4]) != indices(full[4:])  # epochs differ
    assert same(full, run(weighted(2))[0])  # independent of the workers
    assert indices(run(weighted(0, root=1))[0]) != indices(full)  # follows the root seed
    head, state = run(weighted(2), stop=3)
    rngstate.seed_everything(0)
    tail, _ = run(weighted(0), state=state)
    assert same(head + tail, full)


def test_a_samplers_own_generator_is_seeded_and_left_as_it_was() -> None:
    generator = torch.Generator().manual_seed(7)
    before = generator.get_state()
    rngstate.seed_everything(0)
    sampler = torch.utils.data.RandomSampler(range(20), generator=generator)
    loader = rngstate.torch.DataLoader(Noisy(), 5, sampler=sampler, name="g")
    first = indices(list(loader))
    assert torch.equal(generator.get_state(), before)
    rngstate.seed_everything(0)
    other = torch.utils.data.RandomSampler(range(20), generator=torch.Generator().manual_seed(99))
    again = rngstate.torch.DataLoader(Noisy(), 5, sampler=other, name="g")
    assert indices(list(again)) == first  # the order comes from the root seed, not the generator


class Buckets(torch.utils.data.Sampler[list[int]]):
    """A bucketing batch sampler: batches of similar items, in a random order."""

    def __len__(self) -> int:
        return 6

    def __iter__(self) -> Any:
        order = torch.randperm(6).tolist()
        return iter([[2 * b, 2 * b + 1, 12 + b][: 2 + b % 2] for b in order])


def test_a_users_batch_sampler_resumes_exactly() -> None:
    def loader(workers: int) -> Any:
        rngstate.seed_everything(0)
        return rngstate.torch.DataLoader(Noisy(), batch_sampler=Buckets(), num_workers=workers, name="bk")

    full, _ = run(loader(0))
    assert len(full) == 12 and [len(b) for b in full[:6]] != [len(b) for b in full[6:]]
    head, state = run(loader(2), stop=4)
    tail, _ = run(loader(0), state=state)
    assert same(head + tail, full)


def test_a_distributed_sampler_decides_about_ranks() -> None:
    # What Lightning does under DDP: the loader re-created with sampler=DistributedSampler.
    rngstate.seed_everything(0)
    own = rngstate.torch.DataLoader(Noisy(), batch_size=4, shuffle=True, name="ddp", world_size=1)
    sampler = torch.utils.data.DistributedSampler(own.dataset, num_replicas=2, rank=1, shuffle=True)
    again = type(own)(own.dataset, batch_size=4, sampler=sampler, shuffle=False, name="ddp", world_size=1)
    assert again.sampler is sampler
    got = indices(list(again))
    assert got == list(sampler) and len(got) == 10  # the sampler's shard, not split again
    again.set_epoch(3)
    assert sampler.epoch == 3  # set_epoch reaches the user's sampler


def test_generator_is_accepted_and_seeds_the_workers_only() -> None:
    def loader(generator: Any) -> Any:
        rngstate.seed_everything(0)
        return rngstate.torch.DataLoader(Noisy(), 4, True, name="gen", generator=generator, num_workers=2)

    with_generator = loader(torch.Generator().manual_seed(3))
    assert with_generator.generator is not None
    assert same(list(with_generator), list(loader(None)))  # order and samples from the root seed


def test_loader_state_round_trips_and_rejects_other_loaders() -> None:
    rngstate.seed_everything(0)
    loader = rngstate.torch.DataLoader(Noisy(), 4, True, name="a")
    _, state = run(loader, stop=2)
    other = rngstate.torch.DataLoader(Noisy(), 4, True, name="b")
    with pytest.raises(InvalidStateError, match="saved by 'a', this is 'b'"):
        other.load_state_dict(state)


def test_lightning_re_creates_the_loader_with_a_distributed_sampler() -> None:
    fabric_data = pytest.importorskip("lightning.fabric.utilities.data")
    rngstate.seed_everything(0)
    loader = rngstate.torch.DataLoader(Noisy(), batch_size=4, shuffle=True, name="train")
    sampler = torch.utils.data.DistributedSampler(loader.dataset, num_replicas=2, rank=1, shuffle=True)
    again = fabric_data._update_dataloader(loader, sampler)
    assert type(again) is type(loader) and again.sampler is sampler and again.name == "train"
    assert indices(list(again)) == list(sampler)
