"""Datasets and helpers shared by the tests of rngstate.data."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

import rngstate
import rngstate.torch


class Noisy(torch.utils.data.Dataset[torch.Tensor]):
    """Each sample: its index and one draw from Python, NumPy and torch."""

    def __init__(self, n: int = 20) -> None:
        self.n = n
        self.label = "noisy"

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor(
            [float(index), random.random(), float(np.random.rand()), float(torch.rand(()))],
            dtype=torch.float64,
        )


def mixup(samples: list[torch.Tensor]) -> torch.Tensor:
    """A collate_fn with randomness of its own."""
    batch = torch.stack(samples)
    return torch.cat([batch, torch.full((len(samples), 1), np.random.rand())], dim=1)


def plain_worker_info(_: int) -> torch.Tensor:
    info = torch.utils.data.get_worker_info()
    assert info is not None
    return torch.tensor([float(info.id), np.random.rand(), random.random(), float(torch.rand(()))])


def run_loader(
    loader: Any, epochs: range, stop: int | None = None
) -> tuple[list[torch.Tensor], dict[str, Any] | None]:
    batches: list[torch.Tensor] = []
    for epoch in epochs:
        loader.set_epoch(epoch)
        for batch in loader:
            batches.append(batch)
            if len(batches) == stop:
                return batches, loader.state_dict()
    return batches, None


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def live_streams() -> tuple[Any, ...]:
    numpy_state = np.random.get_state()
    return (torch.get_rng_state(), numpy_state[1].copy(), numpy_state[2], random.getstate())


def streams_equal(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return bool(torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2] and a[3] == b[3])


def make_loader(workers: int, **kwargs: Any) -> Any:
    options: dict[str, Any] = {"name": "train", "batch_size": 3, "shuffle": True, "num_workers": workers}
    options.update(kwargs)
    return rngstate.torch.DataLoader(Noisy(), **options)
