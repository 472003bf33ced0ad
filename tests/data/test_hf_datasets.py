"""Hugging Face ``datasets`` through ``rngstate.torch.DataLoader`` (issue 24 item 3): a dataset
fetched whole by ``__getitems__`` (``with_transform``, ``set_transform``, ``map`` then a
transform) is seeded once per batch, so a batched transform drawing Python, NumPy and torch
randomness gives the same batches at ``num_workers`` 0 and 2, and a 2 -> 0 resume continues
them; a streamed dataset (``to_iterable_dataset``) repeats and resumes exactly."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

import rngstate

torch = pytest.importorskip("torch")
datasets = pytest.importorskip("datasets")
import rngstate.torch  # noqa: E402


def noisy(batch: dict[str, list[Any]]) -> dict[str, list[float]]:
    """A batched transform drawing from every global generator."""
    return {"x": [x + random.random() + np.random.rand() + torch.rand(1).item() for x in batch["x"]]}


def build(kind: str) -> Any:
    dataset = datasets.Dataset.from_dict({"x": [float(i) for i in range(14)]})
    if kind == "with_transform":
        return dataset.with_transform(noisy)
    if kind == "set_transform":
        dataset.set_transform(noisy)
        return dataset
    if kind == "map":
        return dataset.map(lambda b: {"x": [v * 2 for v in b["x"]]}, batched=True).with_transform(noisy)
    assert kind == "streamed"
    return dataset.to_iterable_dataset(num_shards=2).map(noisy, batched=True, batch_size=3)


def batches(kind: str, workers: int, *, stop: int = 0, resume: Any = None) -> tuple[list[Any], Any]:
    """The rounded batches of two epochs (``stop``: of the first ``stop`` batches, then the
    loader's state and the random state)."""
    rngstate.seed_everything(0)
    loader = rngstate.torch.DataLoader(
        build(kind), name="train", batch_size=4, shuffle=kind != "streamed", num_workers=workers
    )
    if resume is not None:
        rngstate.restore(resume[1])
        loader.load_state_dict(resume[0])
    out = []
    for _ in range(2):
        for batch in loader:
            out.append([round(v, 9) for v in batch["x"].tolist()])
            if len(out) == stop:
                return out, (loader.state_dict(), rngstate.capture())
        if kind == "streamed" or (resume is not None):
            break  # one epoch: the resumed part continues the first
    return out, None


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["with_transform", "set_transform", "map"])
def test_getitems_datasets_do_not_depend_on_num_workers(kind: str) -> None:
    here, _ = batches(kind, 0)
    workers, _ = batches(kind, 2)
    assert here == workers
    assert len({tuple(b) for b in here}) == len(here)  # the transform's draws differ per batch
    first, saved = batches(kind, 2, stop=2)
    rest, _ = batches(kind, 0, resume=saved)
    assert first + rest == here[: len(first) + len(rest)] and len(first + rest) == 4  # 14 samples: 4 batches


def test_the_training_streams_do_not_see_the_transform() -> None:
    rngstate.seed_everything(0)
    loader = rngstate.torch.DataLoader(build("with_transform"), name="train", batch_size=4, shuffle=True)
    before = rngstate.fingerprint()
    list(loader)
    assert rngstate.fingerprint() == before


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_a_streamed_dataset_repeats_and_resumes_exactly(workers: int) -> None:
    whole, _ = batches("streamed", workers)
    assert batches("streamed", workers)[0] == whole
    first, saved = batches("streamed", workers, stop=1)
    rest, _ = batches("streamed", workers, resume=saved)
    assert first + rest == whole
