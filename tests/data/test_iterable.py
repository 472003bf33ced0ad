"""rngstate.torch.DataLoader over an IterableDataset: each worker's stream seeded from (root,
loader path, epoch, worker id), resume mid-epoch by fast-forward or the dataset's state_dict."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch

import rngstate
import rngstate.torch
from rngstate.errors import DataLoaderError
from tests.data.helpers import same


class Stream(torch.utils.data.IterableDataset[torch.Tensor]):
    """A sharded stream that augments with Python and torch randomness."""

    def __iter__(self) -> Any:
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        for i in range(worker, 12, workers):
            yield torch.tensor([float(i), random.random(), float(torch.rand(()))], dtype=torch.float64)


class Counter(torch.utils.data.IterableDataset[torch.Tensor]):
    """Keeps its position and its own generator in state_dict (torchdata's protocol)."""

    def __init__(self) -> None:
        self.next_item = 0
        self.rng = random.Random(5)

    def __iter__(self) -> Any:
        while self.next_item < 10:
            item = self.next_item
            self.next_item += 1
            yield torch.tensor([float(item), self.rng.random()], dtype=torch.float64)
        self.next_item = 0

    def state_dict(self) -> dict[str, Any]:
        version, words, gauss = self.rng.getstate()
        return {"next_item": self.next_item, "rng": [version, list(words), gauss]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next_item = state["next_item"]
        version, words, gauss = state["rng"]
        self.rng.setstate((version, tuple(words), gauss))


def run(dataset: Any, workers: int, stop: int | None = None, state: Any = None) -> tuple[list[Any], Any]:
    rngstate.seed_everything(0)
    loader = rngstate.torch.DataLoader(dataset, batch_size=2, num_workers=workers, name="stream")
    if state is not None:
        loader.load_state_dict(state)
    out: list[Any] = []
    for _epoch in range(2 if state is None else 1):
        for batch in loader:
            out.append(batch)
            if len(out) == stop:
                return out, loader.state_dict()
    return out, None


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_by_fast_forward(workers: int) -> None:
    full, _ = run(Stream(), workers)
    assert len(full) == 12 and not same(full[:6], full[6:])  # epochs draw differently
    assert same(full, run(Stream(), workers)[0])
    head, state = run(Stream(), workers, stop=3)
    assert (state["resume"], state["batches"], state["num_workers"]) == ("fast_forward", 3, workers)
    tail, _ = run(Stream(), workers, state=state)
    assert same(head + tail, full[:6])
    assert random.random() == random.Random(0).random()  # training's stream untouched by loading


def test_resume_through_the_datasets_own_state_dict() -> None:
    full, _ = run(Counter(), 0)
    head, state = run(Counter(), 0, stop=2)
    assert state["resume"] == "dataset_state_dict" and state["dataset_state"]["next_item"] == 4
    tail, _ = run(Counter(), 0, state=state)
    assert same(head + tail, full[:5])


def test_a_mid_epoch_state_needs_the_same_number_of_workers() -> None:
    _, state = run(Stream(), 2, stop=1)
    rngstate.seed_everything(0)
    loader = rngstate.torch.DataLoader(Stream(), batch_size=2, name="stream")
    with pytest.raises(DataLoaderError, match="num_workers=2"):
        loader.load_state_dict(state)


def test_torch_rejects_what_it_rejects_for_iterable_datasets() -> None:
    rngstate.seed_everything(0)
    with pytest.raises(ValueError, match="expected unspecified shuffle"):
        rngstate.torch.DataLoader(Stream(), shuffle=True)
