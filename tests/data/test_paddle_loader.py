"""rngstate.paddle.DataLoader as a drop-in for paddle.io.DataLoader: Paddle's signature, the
user's dataset, independent iterators, a batch_sampler of one's own that resumes exactly."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

import rngstate

paddle = pytest.importorskip("paddle")
import rngstate.paddle  # noqa: E402  (after the skip: it needs paddle)


class Draws(paddle.io.Dataset):  # type: ignore[misc]
    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> np.ndarray:
        return np.array([index, random.random(), np.random.rand()], dtype="float64")


class Buckets(paddle.io.Sampler):  # type: ignore[misc]
    """A batch sampler drawing its bucket order from NumPy's global generator."""

    def __len__(self) -> int:
        return 4

    def __iter__(self) -> Any:
        order = np.random.permutation(4).tolist()
        return iter([[3 * b, 3 * b + 1, 3 * b + 2][: 2 + b % 2] for b in order])


def rows(batches: list[Any]) -> list[list[float]]:
    return [row for batch in batches for row in np.asarray(batch).tolist()]


def test_paddle_signature_dataset_and_independent_iterators() -> None:
    rngstate.seed_everything(0)
    dataset = Draws()
    loader = rngstate.paddle.DataLoader(dataset, None, None, True, None, 4, True, name="p")
    assert loader.dataset is dataset and loader.batch_size == 4
    first = iter(loader)
    peeked = next(first)
    second = list(iter(loader))
    assert len(list(first)) + 1 == len(second) == 3  # the first iterator was not cut off
    assert sorted(int(r[0]) for r in rows([peeked, *second])[4:]) == list(range(12))


def test_paddle_batch_sampler_resumes_exactly() -> None:
    def loader(workers: int) -> Any:
        rngstate.seed_everything(0)
        return rngstate.paddle.DataLoader(Draws(), batch_sampler=Buckets(), num_workers=workers, name="pb")

    def two_epochs(workers: int) -> list[Any]:
        once = loader(workers)
        return list(once) + list(once)

    full = two_epochs(0)
    assert rows(full) == rows(two_epochs(2))
    assert [len(b) for b in full[:4]] != [len(b) for b in full[4:]]  # each epoch reshuffles buckets
    head_loader = loader(0)
    head_iter = iter(head_loader)
    head = [next(head_iter), next(head_iter)]
    state = head_loader.state_dict()
    resumed = loader(2)
    resumed.load_state_dict(state)
    tail = list(resumed) + list(resumed)
    assert rows(head + tail) == rows(full)


class ScopedDraws(paddle.io.Dataset):  # type: ignore[misc]
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> np.ndarray:
        with rngstate.rng_scope("aug"):
            return np.array([index, random.random(), np.random.rand()], dtype="float64")


def test_scopes_in_plain_paddle_workers_differ_across_workers_and_epochs() -> None:
    def run() -> np.ndarray:
        rngstate.seed_everything(0)
        with rngstate.rng_scope("aug"):  # the parent's substream exists before the workers start
            random.random()
        loader = paddle.io.DataLoader(
            ScopedDraws(), batch_size=2, num_workers=2, worker_init_fn=rngstate.worker_init_fn
        )
        return np.concatenate([np.asarray(batch) for _ in range(2) for batch in loader])

    first, second = run(), run()
    assert np.array_equal(first, second)
    assert len(set(first[:, 1].tolist())) == len(set(first[:, 2].tolist())) == 16
