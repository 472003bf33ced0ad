"""seed_per="batch": one seeding per batch, still independent of workers and exact on resume."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest
import torch

import rngstate
import rngstate.data
import rngstate.torch
from rngstate.data.seeding import BATCH_SAMPLES, SEEDER
from rngstate.data.wrappers import SeededBatch
from rngstate.errors import DataLoaderError
from tests.data.helpers import Noisy, live_streams, make_loader, run_loader, same, streams_equal


def test_samples_do_not_depend_on_workers() -> None:
    runs = []
    for workers in (0, 2):
        rngstate.seed_everything(0)
        runs.append(run_loader(make_loader(workers, seed_per="batch"), range(2))[0])
    assert same(runs[0], runs[1])
    draws = torch.cat(runs[0])[:, 1:]
    assert len({tuple(row.tolist()) for row in draws}) == len(draws)  # every sample differs


def test_a_sample_depends_on_its_batch_and_place_not_on_its_index() -> None:
    rngstate.seed_everything(0)
    batches, _ = run_loader(make_loader(0, seed_per="batch", shuffle=False), range(1))
    rngstate.seed_everything(0)
    shuffled, _ = run_loader(make_loader(0, seed_per="batch"), range(1))
    # Same batches and places, other indices: the same draws (column 0 is the index).
    assert all(torch.equal(a[:, 1:], b[:, 1:]) for a, b in zip(batches, shuffled, strict=True))
    rngstate.seed_everything(0)
    per_sample, _ = run_loader(make_loader(0, shuffle=False), range(1))
    assert not torch.equal(per_sample[1][:, 1:], batches[1][:, 1:])  # another mode, other draws


def test_batch_seeding_equals_seeding_every_stream_at_the_batch_start() -> None:
    rngstate.seed_everything(3)
    loader = make_loader(0, seed_per="batch", shuffle=False)
    batches, _ = run_loader(loader, range(1))
    dataset = Noisy()
    for number, batch in enumerate(batches):
        start = number * 3
        next(SEEDER.positions(3, (*loader._rng_parts, BATCH_SAMPLES, "0"), start, 1, 1))
        expected = [dataset[start + i] for i in range(len(batch))]
        assert torch.equal(batch, torch.stack(expected))


@pytest.mark.parametrize(("before", "after"), [(2, 0), (0, 2)])
def test_resume_mid_epoch(before: int, after: int) -> None:
    rngstate.seed_everything(5)
    full, _ = run_loader(make_loader(0, seed_per="batch"), range(3))
    rngstate.seed_everything(5)
    first, state = run_loader(make_loader(before, seed_per="batch"), range(3), stop=10)
    assert state is not None and (state["epoch"], state["position"]) == (1, 9)
    rng = rngstate.capture()
    rngstate.seed_everything(99)
    rngstate.restore(rng)
    loader = make_loader(after, seed_per="batch")
    loader.load_state_dict(json.loads(json.dumps(state)))
    rest, _ = run_loader(loader, range(state["epoch"], 3))
    assert same(full, first + rest)


def test_the_state_carries_seed_per_and_a_resume_in_another_mode_is_refused() -> None:
    from rngstate.errors import InvalidStateError

    rngstate.seed_everything(5)
    _, state = run_loader(make_loader(0, seed_per="batch"), range(2), stop=4)
    assert state is not None and state["seed_per"] == "batch"
    with pytest.raises(DataLoaderError, match="seed_per='batch'"):
        make_loader(0).load_state_dict(state)
    with pytest.raises(InvalidStateError, match="seed_per"):
        make_loader(0).load_state_dict({**state, "seed_per": "epoch"})
    make_loader(0, seed_per="batch").load_state_dict(state)  # the same mode resumes
    # A ResumableSampler's state says nothing about seeding: accepted by either mode.
    sampler_state = {key: value for key, value in state.items() if key != "seed_per"}
    make_loader(0).load_state_dict(sampler_state)
    assert make_loader(0).state_dict()["seed_per"] == "sample"


def test_training_streams_are_put_back() -> None:
    rngstate.seed_everything(0)
    before = live_streams()
    run_loader(make_loader(0, seed_per="batch"), range(1))
    assert streams_equal(before, live_streams())


class PerSampleSeeds(torch.utils.data.Dataset[torch.Tensor]):
    """Each sample: sample_seed() (per sample in both modes) and a draw in a scope of its own."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> torch.Tensor:
        seed = rngstate.data.sample_seed("aug")
        with rngstate.rng_scope("aug"):
            drawn = float(torch.rand(()))
        return torch.tensor([float(index), float(seed % 2**40), drawn], dtype=torch.float64)


def test_sample_seed_stays_per_sample_and_scopes_continue_through_the_batch() -> None:
    rows = {}
    for seed_per, workers in (("sample", 0), ("batch", 0), ("batch", 2)):
        rngstate.seed_everything(2)
        loader = rngstate.torch.DataLoader(PerSampleSeeds(), name="s", batch_size=4, shuffle=True,
                                           num_workers=workers, seed_per=seed_per)
        rows[seed_per, workers] = torch.cat(run_loader(loader, range(1))[0])
    assert torch.equal(rows["batch", 0], rows["batch", 2])
    assert torch.equal(rows["sample", 0][:, :2], rows["batch", 0][:, :2])  # same sample_seed()
    assert len(set(rows["batch", 0][:, 1].tolist())) == 12
    assert len(set(rows["batch", 0][:, 2].tolist())) == 12  # scope draws differ within a batch
    assert not torch.equal(rows["sample", 0][:, 2], rows["batch", 0][:, 2])


def test_a_fetcher_reading_one_index_at_a_time_sees_whole_batch_seeding() -> None:
    # torch hands the batch to dataset.__getitems__ when there is one, which may read it lazily.
    rngstate.seed_everything(0)
    batches, _ = run_loader(make_loader(0, seed_per="batch", shuffle=False), range(1))
    rngstate.seed_everything(0)
    loader = make_loader(0, seed_per="batch", shuffle=False)
    dataset, rows = Noisy(), []
    for first in range(0, 20, 3):
        indices = list(range(first, min(first + 3, 20)))
        batch = SeededBatch(indices, root=0, parts=loader._rng_parts, epoch=0, first=first,
                            seed_per="batch")
        iterator = iter(batch)
        rows += [dataset[next(iterator)] for _ in indices]
    assert torch.equal(torch.stack(rows), torch.cat(batches))


@pytest.mark.parametrize("bad", ["epoch", "", None, 1, "Sample"])
def test_seed_per_is_checked(bad: Any) -> None:
    rngstate.seed_everything(0)
    with pytest.raises(DataLoaderError, match="seed_per") as error:
        make_loader(0, seed_per=bad)
    assert isinstance(error.value, ValueError)


def test_paddle_batch_mode_workers_and_resume() -> None:
    paddle = pytest.importorskip("paddle")
    import rngstate.paddle

    class Draws(paddle.io.Dataset):  # type: ignore[misc,name-defined]
        def __len__(self) -> int:
            return 22

        def __getitem__(self, index: int) -> np.ndarray:
            return np.array([float(index), random.random(), np.random.rand(), float(paddle.rand([]))])

    def make(workers: int) -> Any:
        return rngstate.paddle.DataLoader(Draws(), name="p", batch_size=4, shuffle=True,
                                          num_workers=workers, seed_per="batch")

    def run(loader: Any, epochs: range, stop: int | None = None) -> tuple[list[np.ndarray], Any]:
        out: list[np.ndarray] = []
        for epoch in epochs:
            loader.set_epoch(epoch)
            for batch in loader:
                out.append(np.asarray(batch))
                if len(out) == stop:
                    return out, loader.state_dict()
        return out, None

    rngstate.seed_everything(1)
    zero, _ = run(make(0), range(2))
    rngstate.seed_everything(1)
    two, _ = run(make(2), range(2))
    assert len(zero) == len(two) == 12
    assert all(np.array_equal(a, b) for a, b in zip(zero, two, strict=True))
    assert len({round(float(x), 12) for x in np.concatenate(zero)[:, 3]}) == 44  # paddle draws vary

    rngstate.seed_everything(1)
    first, state = run(make(2), range(2), stop=8)
    rng = rngstate.capture()
    rngstate.seed_everything(7)
    rngstate.restore(rng)
    loader = make(0)
    loader.load_state_dict(state)
    rest, _ = run(loader, range(state["epoch"], 2))
    assert all(np.array_equal(a, b) for a, b in zip(zero, first + rest, strict=True))
    with pytest.raises(DataLoaderError, match="seed_per"):
        rngstate.paddle.DataLoader(Draws(), batch_size=4, seed_per="epoch")
