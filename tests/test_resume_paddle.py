"""PaddlePaddle: rngstate.paddle.DataLoader in this process, then end to end in separate ones.

End to end, each run is examples/resume_paddle.py in its own process: a model with dropout, a
dataset that augments with Python, NumPy and paddle randomness, loaded by workers, Momentum SGD,
model/optimizer/loader state written with paddle.save and the RNG state with rngstate.save.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rngstate
from tests.conftest import PRELOAD_PADDLE, ResumeExample

paddle = pytest.importorskip("paddle")
import rngstate.paddle  # noqa: E402  (after the skip: it needs paddle)

EXAMPLE = ResumeExample("resume_paddle.py", preload=PRELOAD_PADDLE)


class Noisy(paddle.io.Dataset):  # type: ignore[misc]
    def __len__(self) -> int:
        return 20

    def __getitem__(self, index: int) -> np.ndarray:
        draws = [float(index), random.random(), np.random.rand(), float(paddle.rand([]))]
        return np.array(draws, dtype="float64")


def batches(
    workers: int, epochs: range, stop: int | None = None, state: Any = None
) -> tuple[list[Any], Any]:
    loader = rngstate.paddle.DataLoader(
        Noisy(), name="train", batch_size=3, shuffle=True, num_workers=workers
    )
    if state is not None:
        loader.load_state_dict(state)
    taken: list[np.ndarray] = []
    for epoch in epochs:
        loader.set_epoch(epoch)
        for batch in loader:
            taken.append(batch.numpy())
            if len(taken) == stop:
                return taken, loader.state_dict()
    return taken, None


def equal(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_paddle_samples_do_not_depend_on_workers_and_resume(tmp_path: Path) -> None:
    rngstate.seed_everything(0)
    zero, _ = batches(0, range(3))
    assert len({round(float(b[0, 3]), 12) for b in zero}) == len(zero)  # paddle draws vary
    rngstate.seed_everything(0)
    two, _ = batches(2, range(3))
    assert equal(zero, two)
    rngstate.seed_everything(0)
    first, state = batches(2, range(3), stop=10)
    # A checkpoint mixing tensors and plain data goes through paddle.save's pickler.
    path = str(tmp_path / "progress.pdstate")
    paddle.save({"loader": state, "step": 10, "weights": paddle.ones([2])}, path)
    rngstate.save(tmp_path / "rng.state")
    loaded = paddle.load(path)
    assert loaded["loader"] == state == json.loads(json.dumps(state))
    rngstate.seed_everything(7)
    rngstate.restore(rngstate.load(tmp_path / "rng.state"))
    rest, _ = batches(0, range(state["epoch"], 3), state=loaded["loader"])
    assert equal(zero, first + rest)


def test_paddle_iterators_do_not_move_numpy() -> None:
    rngstate.seed_everything(1)
    numpy_before, python_before = np.random.get_state()[1].copy(), random.getstate()
    probe = paddle.rand([3]).numpy()  # what dropout would draw next
    rngstate.seed_everything(1)
    for workers in (0, 2):
        loader = rngstate.paddle.DataLoader(Noisy(), name=f"w{workers}", batch_size=4, num_workers=workers)
        for _ in loader:
            pass
    assert np.array_equal(np.random.get_state()[1], numpy_before)
    assert random.getstate() == python_before
    assert np.array_equal(paddle.rand([3]).numpy(), probe)
    # The fact the loader protects against: Paddle draws its workers' base seed from NumPy.
    rngstate.seed_everything(1)
    iter(paddle.io.DataLoader(Noisy(), batch_size=4, num_workers=1))
    assert not np.array_equal(np.random.get_state()[1], numpy_before)


def test_paddle_batches_look_like_paddles() -> None:
    rngstate.seed_everything(0)

    class Pairs(paddle.io.Dataset):  # type: ignore[misc]
        def __len__(self) -> int:
            return 6

        def __getitem__(self, index: int) -> tuple[np.ndarray, int, dict[str, np.ndarray]]:
            return np.full(2, index, dtype="float32"), index, {"a": np.float32(index)}

    ours = next(iter(rngstate.paddle.DataLoader(Pairs(), name="p", batch_size=4)))
    plain = next(iter(paddle.io.DataLoader(Pairs(), batch_size=4)))
    assert type(ours) is type(plain) and len(ours) == len(plain) == 3
    for mine, theirs in [(ours[0], plain[0]), (ours[1], plain[1]), (ours[2]["a"], plain[2]["a"])]:
        assert isinstance(mine, paddle.Tensor) and mine.dtype == theirs.dtype
        assert np.array_equal(mine.numpy(), theirs.numpy())


def test_paddle_loader_rejects_static_graph_feeding_and_bad_batch_sizes() -> None:
    rngstate.seed_everything(0)
    with pytest.raises(rngstate.data.DataLoaderError, match="feed_list"):
        rngstate.paddle.DataLoader(Noisy(), return_list=False)
    with pytest.raises(ValueError, match="batch_size must be a positive int or None"):
        rngstate.paddle.DataLoader(Noisy(), batch_size=0)
    assert rngstate.paddle.DataLoader(Noisy(), batch_size=None).batch_size is None  # type: ignore[arg-type]


# -- end to end ---------------------------------------------------------------------------


@pytest.mark.slow
def test_paddle_zero_and_two_workers_train_identically() -> None:
    assert EXAMPLE.uninterrupted(0) == EXAMPLE.uninterrupted(2)


@pytest.mark.slow
def test_paddle_resume_mid_epoch_with_other_workers(tmp_path: Path) -> None:
    assert EXAMPLE.resumed(tmp_path, 8, before=2, after=0) == EXAMPLE.uninterrupted(2)


@pytest.mark.slow
def test_paddle_usual_recipe_does_not_resume_exactly(tmp_path: Path) -> None:
    assert EXAMPLE.resumed(tmp_path, 8, before=2, after=2, plain=True) != EXAMPLE.uninterrupted(2, plain=True)


@pytest.mark.slow
def test_paddle_the_docs_show_these_runs(tmp_path: Path) -> None:
    EXAMPLE.check_shown(tmp_path)  # docs/frameworks/paddle.md
