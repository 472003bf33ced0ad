"""rngstate.paddle.DataLoader as a drop-in for paddle.io.DataLoader: Paddle's signature, the
user's dataset, independent iterators, a batch_sampler of one's own that resumes exactly."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

import rngstate
from rngstate.errors import DataLoaderError

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
    assert [row[0] for row in rows(full)[:12]] != [row[0] for row in rows(full)[12:]]  # reshuffled buckets
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


# -- IterableDataset and batch_size=None ------------------------------------------------------


class PaddleStream(paddle.io.IterableDataset):  # type: ignore[misc]
    """A sharded stream that augments with Python, NumPy and paddle randomness per sample."""

    def __iter__(self) -> Any:
        info = paddle.io.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        for i in range(worker, 12, workers):
            yield np.array([i, random.random(), np.random.rand(), float(paddle.rand([]))], dtype="float64")


class PaddleCounter(paddle.io.IterableDataset):  # type: ignore[misc]
    """Keeps its position and its own generator in state_dict (torchdata's protocol)."""

    def __init__(self) -> None:
        self.next_item = 0
        self.rng = random.Random(5)

    def __iter__(self) -> Any:
        while self.next_item < 10:
            item = self.next_item
            self.next_item += 1
            yield np.array([item, self.rng.random()], dtype="float64")
        self.next_item = 0

    def state_dict(self) -> dict[str, Any]:
        version, words, gauss = self.rng.getstate()
        return {"next_item": self.next_item, "rng": [version, list(words), gauss]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next_item = state["next_item"]
        version, words, gauss = state["rng"]
        self.rng.setstate((version, tuple(words), gauss))


def stream_run(
    dataset: Any, workers: int, stop: int | None = None, state: Any = None, **options: Any
) -> tuple[list[list[list[float]]], Any]:
    """Two epochs (one after a load), as lists of rows; stopped after ``stop`` batches."""
    rngstate.seed_everything(0)
    options.setdefault("batch_size", 2)
    loader = rngstate.paddle.DataLoader(dataset, num_workers=workers, name="stream", **options)
    if state is not None:
        loader.load_state_dict(state)
    out: list[list[list[float]]] = []
    for _epoch in range(2 if state is None else 1):
        for batch in loader:
            out.append(np.atleast_2d(np.asarray(batch)).tolist())
            if len(out) == stop:
                return out, loader.state_dict()
    return out, None


@pytest.mark.parametrize("workers", [0, 2])
def test_paddle_iterable_resumes_mid_epoch_by_fast_forward(workers: int) -> None:
    full, _ = stream_run(PaddleStream(), workers)
    assert len(full) == 12 and full[:6] != full[6:]  # epochs draw differently
    draws = [row[1:] for batch in full for row in batch]
    assert len({tuple(d) for d in draws}) == 24  # every sample, worker and epoch differs
    assert full == stream_run(PaddleStream(), workers)[0]
    head, state = stream_run(PaddleStream(), workers, stop=3)
    assert (state["resume"], state["batches"], state["num_workers"]) == ("fast_forward", 3, workers)
    tail, _ = stream_run(PaddleStream(), workers, state=state)
    assert head + tail == full[:6]
    assert random.random() == random.Random(0).random()  # training's stream untouched by loading


def test_paddle_iterable_workers_read_their_own_streams() -> None:
    full, _ = stream_run(PaddleStream(), 2)
    # Worker 0's stream is seeded as the loader's without workers (its first sample matches);
    # worker 1's stream is its own.
    assert stream_run(PaddleStream(), 2, persistent_workers=True)[0] == full  # reseeded per epoch
    alone, _ = stream_run(PaddleStream(), 0)
    by_index = {int(row[0]): row for batch in alone[:6] for row in batch}
    for batch in full[:6]:
        for row in batch:
            assert (row == by_index[int(row[0])]) == (int(row[0]) == 0)


def test_paddle_iterable_resumes_through_the_datasets_own_state_dict() -> None:
    full, _ = stream_run(PaddleCounter(), 0)
    head, state = stream_run(PaddleCounter(), 0, stop=2)
    assert state["resume"] == "dataset_state_dict" and state["dataset_state"]["next_item"] == 4
    tail, _ = stream_run(PaddleCounter(), 0, state=state)
    assert head + tail == full[:5]


def test_paddle_iterable_mid_epoch_state_needs_the_same_number_of_workers() -> None:
    _, state = stream_run(PaddleStream(), 2, stop=1)
    rngstate.seed_everything(0)
    loader = rngstate.paddle.DataLoader(PaddleStream(), batch_size=2, name="stream")
    with pytest.raises(DataLoaderError, match="num_workers=2"):
        loader.load_state_dict(state)


def test_paddle_iterable_unbatched_drop_last_and_paddles_own_checks() -> None:
    samples, _ = stream_run(PaddleStream(), 0, batch_size=None)
    batched, _ = stream_run(PaddleStream(), 0)
    assert [row for batch in samples for row in batch] == [row for batch in batched for row in batch]
    head, state = stream_run(PaddleStream(), 0, stop=5, batch_size=None)
    tail, _ = stream_run(PaddleStream(), 0, state=state, batch_size=None)
    assert head + tail == samples[:12]
    cut, _ = stream_run(PaddleStream(), 0, batch_size=5, drop_last=True)
    assert [len(batch) for batch in cut] == [5, 5, 5, 5]
    rngstate.seed_everything(0)
    with pytest.raises(ValueError, match="shuffle"):
        rngstate.paddle.DataLoader(PaddleStream(), shuffle=True)
    with pytest.raises(ValueError, match="length of IterableDataset"):
        len(rngstate.paddle.DataLoader(PaddleStream()))


@pytest.mark.parametrize("workers", [0, 2])
def test_paddle_batch_size_none_hands_on_samples_and_resumes(workers: int) -> None:
    def loader(shuffle: bool) -> Any:
        rngstate.seed_everything(0)
        return rngstate.paddle.DataLoader(
            Draws(), batch_size=None, shuffle=shuffle, num_workers=workers, name="single"
        )

    plain = loader(False)
    assert plain.batch_size is None and plain.batch_sampler is None and len(plain) == 12
    assert [int(np.asarray(x)[0]) for x in plain] == list(range(12))
    once = loader(True)
    full = [np.asarray(x).tolist() for _ in range(2) for x in once]
    assert [len(row) for row in full] == [3] * 24  # single samples, not batches
    assert [row[0] for row in full[:12]] != list(range(12))  # shuffle is honoured
    head_loader = loader(True)
    head_iter = iter(head_loader)
    head = [np.asarray(next(head_iter)).tolist() for _ in range(5)]
    resumed = loader(True)
    resumed.load_state_dict(head_loader.state_dict())
    tail = [np.asarray(x).tolist() for _ in range(2) for x in resumed]
    assert head + tail == full


def noisy_double(sample: Any) -> Any:
    return np.asarray(sample) * 2 + np.random.rand()


def test_paddle_batch_size_none_collate_is_seeded_whatever_the_workers() -> None:
    def run(workers: int) -> list[list[float]]:
        rngstate.seed_everything(0)
        loader = rngstate.paddle.DataLoader(
            Draws(), batch_size=None, collate_fn=noisy_double, num_workers=workers, name="c"
        )
        return [np.asarray(x).tolist() for x in loader]

    alone = run(0)
    assert all(2 * i < row[0] < 2 * i + 1 for i, row in enumerate(alone))  # the collate_fn ran
    assert alone == run(2)
