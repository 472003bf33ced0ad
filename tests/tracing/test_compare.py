"""compare(): alignment by step and the cause named for each first difference (the diagnoses
that need a whole broken job are in test_diagnose_examples.py)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import rngstate
from rngstate.cli import main
from rngstate.tracing import Comparison, compare, read_trace

Hook = Callable[[int], None]


def _run(path: Path, steps: int = 6, *, seed: int = 0, order: list[int] | None = None,
         before: Hook | None = None, loss_offset: Callable[[int], float] | None = None,
         weights: Callable[[int], float] | None = None, skip: int | None = None) -> Path:
    """A toy job: each step draws from Python's and torch's streams, a batch of 4 rows."""
    rngstate.seed_everything(seed)
    data = np.arange(48, dtype=np.float32).reshape(12, 4)
    model = {"w": np.zeros(3)}
    with rngstate.trace(path, weights_every=2) as trace:
        for step in range(1, steps + 1):
            if step == skip:
                continue
            if before is not None:
                before(step)
            rows = [(step * 4 + i) % 12 for i in range(4)]
            if order is not None and step == 3:
                rows = [rows[i] for i in order]
            noise = random.random() + float(torch.rand(1))
            loss = float(data[rows].sum()) * 1e-3 + noise + (loss_offset(step) if loss_offset else 0.0)
            model["w"] = model["w"] + (weights(step) if weights else 1.0)
            trace.step(step=step, epoch=0, position=step - 1, batch=data[rows], loss=loss, model=model)
    return path


def test_identical_runs(tmp_path: Path) -> None:
    result = compare(_run(tmp_path / "a.trace"), _run(tmp_path / "b.trace"))
    assert result.identical and bool(result)
    assert (result.compared, result.first, result.last) == (6, 1, 6)
    assert "identical: 6 steps compared (steps 1-6)" in str(result)


def test_the_same_samples_in_another_order(tmp_path: Path) -> None:
    result = compare(_run(tmp_path / "a.trace"), _run(tmp_path / "b.trace", order=[1, 0, 2, 3]))
    assert (result.step, result.differed) == (3, "batch")
    assert "the same samples in another order" in result.cause and "the shuffle differs" in result.cause


def test_a_stream_that_differs_from_the_start(tmp_path: Path) -> None:
    result = compare(_run(tmp_path / "a.trace"), _run(tmp_path / "b.trace", seed=1))
    assert (result.step, result.differed) == (1, "streams")
    assert "python" in result.cause and "started from different random states" in result.cause


def test_a_step_that_drew_more(tmp_path: Path) -> None:
    def extra(step: int) -> None:
        if step == 4:
            torch.rand(1)

    result = compare(_run(tmp_path / "a.trace"), _run(tmp_path / "b.trace", before=extra))
    assert (result.step, result.differed, result.compared) == (4, "streams", 3)
    assert "torch.cpu differs at step 4: the step drew different random numbers" in result.cause


def test_a_scope_is_named(tmp_path: Path) -> None:
    def scoped(step: int) -> None:
        if step == 2:
            with rngstate.rng_scope("augment/flip"):
                random.random()

    def entered(step: int) -> None:
        if step == 2:
            with rngstate.rng_scope("augment/flip"):
                pass

    result = compare(_run(tmp_path / "a.trace", before=entered), _run(tmp_path / "b.trace", before=scoped))
    assert (result.step, result.differed) == (2, "streams")
    assert "python in scope 'augment/flip'" in next(a.detail for a in result.aspects if a.name == "streams")


def test_loss_then_weights(tmp_path: Path) -> None:
    a = _run(tmp_path / "a.trace")
    loss = compare(a, _run(tmp_path / "b.trace", loss_offset=lambda s: 1e-9 if s == 5 else 0.0))
    assert (loss.step, loss.differed) == (5, "loss") and "a nondeterministic kernel" in loss.cause
    weights = compare(a, _run(tmp_path / "c.trace", weights=lambda s: 1.0 + (1e-9 if s == 3 else 0.0)))
    assert (weights.step, weights.differed) == (4, "weights")  # digested at steps 2, 4, 6
    assert "weights differ at step 4" in weights.cause


def test_a_missing_step_and_a_longer_trace(tmp_path: Path) -> None:
    a = _run(tmp_path / "a.trace")
    missing = compare(a, _run(tmp_path / "b.trace", skip=3))
    assert (missing.step, missing.differed) == (3, "missing") and "in one trace only" in missing.cause
    shorter = compare(a, _run(tmp_path / "c.trace", steps=4))
    assert shorter.identical and shorter.compared == 4
    assert shorter.notes == ("A goes on to step 6 (2 records more than the other)",)


def test_accumulation_phases_are_aligned(tmp_path: Path) -> None:
    def job(path: Path, bad: tuple[int, int] | None = None) -> Path:
        rngstate.seed_everything(0)
        with rngstate.trace(path) as trace:
            for step in (1, 2):
                for phase in (0, 1, 2):
                    loss = 1.0 + (1e-9 if (step, phase) == bad else 0.0)
                    assert trace.step(phase=phase, loss=loss) == step  # phases join their step
        return path

    a = job(tmp_path / "a.trace")
    keys = [(r.step, r.phase) for r in read_trace(a).steps]
    assert keys == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    assert compare(a, job(tmp_path / "b.trace")).compared == 6
    result = compare(a, job(tmp_path / "c.trace", bad=(2, 1)))
    assert (result.step, result.phase, result.differed) == (2, 1, "loss")
    assert "first difference at step 2 (phase 1), in the loss" in str(result)


def test_the_result_is_frozen_and_plain(tmp_path: Path) -> None:
    result = compare(_run(tmp_path / "a.trace"), _run(tmp_path / "b.trace", seed=1))
    assert isinstance(result, Comparison)
    with pytest.raises(AttributeError):
        result.step = 3  # type: ignore[misc]
    assert json.loads(json.dumps(result.to_dict()))["differed"] == "streams"


def test_cli_exit_status_json_and_rank(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _run(tmp_path / "a.trace"), _run(tmp_path / "b.trace")
    assert main(["compare", str(a), str(b)]) == 0
    assert "identical: 6 steps compared" in capsys.readouterr().out
    c = _run(tmp_path / "c.trace", seed=2)
    assert main(["compare", str(a), str(c), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert (data["step"], data["differed"], data["identical"]) == (1, "streams", False)
    assert [aspect["name"] for aspect in data["aspects"]] == ["place", "batch", "streams", "loss", "weights"]
    (tmp_path / "r").mkdir()
    _run(tmp_path / "r" / "run.rank1.trace")
    mine, theirs = str(tmp_path / "run.trace"), str(tmp_path / "r" / "run.trace")
    assert main(["compare", mine, theirs, "--rank", "1"]) == 2  # no run.rank1.trace here yet
    a.rename(tmp_path / "run.rank1.trace")
    assert main(["compare", mine, theirs, "--rank", "1"]) == 0


def test_a_resumed_run_that_replays_batches_without_positions(tmp_path: Path) -> None:
    """No epoch/position recorded: the loader that was not loaded shows as a replayed batch."""
    data = np.arange(48, dtype=np.float32).reshape(12, 4)

    def job(path: Path, resume_from: int | None = None, bad: bool = False) -> Path:
        rngstate.seed_everything(0)
        with rngstate.trace(path) as trace:
            start = resume_from or 0
            for step in range(start + 1, 7):
                index = step - 1 - (start if bad else 0)  # a loader that begins again
                trace.step(step=step, batch=data[2 * index : 2 * index + 2], loss=1.0)
        return path

    a = job(tmp_path / "a.trace")
    b = tmp_path / "b.trace"
    job(b)
    job(b, resume_from=3, bad=True)
    result = compare(a, b)
    assert (result.step, result.differed) == (4, "batch")
    assert "is A's batch of step 1: the loader's state was not loaded" in result.cause
