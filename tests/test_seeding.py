"""seed_everything: seeds, validation, environment, logging and the import hook."""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import pytest
import torch

import rngstate
from rngstate.errors import InvalidSeedError, NoRootSeedError, ScopeError
from tests.conftest import run_python


def test_matches_conventional_seeding() -> None:
    assert rngstate.seed_everything(8) == 8
    ours = (random.random(), np.random.rand(), torch.rand(2).tolist())
    random.seed(8)
    np.random.seed(8)
    torch.manual_seed(8)
    assert ours == (random.random(), np.random.rand(), torch.rand(2).tolist())


def test_exports_and_reads_environment() -> None:
    rngstate.seed_everything(123)
    assert os.environ["RNGSTATE_SEED"] == "123"
    first = random.random()
    assert rngstate.seed_everything() == 123
    assert random.random() == first


def test_missing_seed_and_variable() -> None:
    os.environ.pop("RNGSTATE_SEED", None)
    with pytest.raises(NoRootSeedError, match="RNGSTATE_SEED"):
        rngstate.seed_everything()


def test_bad_environment_value() -> None:
    os.environ["RNGSTATE_SEED"] = "banana"
    with pytest.raises(InvalidSeedError, match="RNGSTATE_SEED"):
        rngstate.seed_everything()


@pytest.mark.parametrize("bad", [-1, 2**32, 2**64, 1.0, "7", True, [1], None.__class__])
def test_bad_seeds(bad: object) -> None:
    with pytest.raises(InvalidSeedError, match=r"\[0, 4294967295\]"):
        rngstate.seed_everything(bad)  # type: ignore[arg-type]


def test_numpy_integer_accepted() -> None:
    assert rngstate.seed_everything(np.int64(5)) == 5


def test_logs_seed(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="rngstate"):
        rngstate.seed_everything(77)
    assert "root seed 77" in caplog.text


def test_inside_scope_refused() -> None:
    rngstate.seed_everything(1)
    with rngstate.rng_scope("a"), pytest.raises(ScopeError, match="inside an rng_scope"):
        rngstate.seed_everything(2)


def test_reseeding_forgets_substreams() -> None:
    rngstate.seed_everything(1)
    with rngstate.rng_scope("a"):
        first = torch.rand(3)
    with rngstate.rng_scope("a"):
        torch.rand(3)
    rngstate.seed_everything(1)
    with rngstate.rng_scope("a"):
        assert torch.equal(torch.rand(3), first)


IMPORT_ORDER = """
import sys, rngstate
order = sys.argv[1]
if order == "seed-first":
    rngstate.seed_everything(8)
    import torch
else:
    import torch
    rngstate.seed_everything(8)
print(torch.rand(3).tolist(), torch.randn(2).tolist())
"""


@pytest.mark.slow
def test_import_hook_makes_import_order_irrelevant() -> None:
    seed_first = run_python(IMPORT_ORDER, "seed-first")
    import_first = run_python(IMPORT_ORDER, "import-first")
    assert seed_first == import_first
    torch.manual_seed(8)
    assert seed_first.startswith(str(torch.rand(3).tolist()))


@pytest.mark.slow
def test_import_inside_scope_gets_substream() -> None:
    late = """
    import rngstate
    rngstate.seed_everything(3)
    with rngstate.rng_scope("late"):
        import torch
        inside = torch.rand(2).tolist()
    print(inside, torch.rand(2).tolist())
    """
    early = late.replace("import rngstate", "import rngstate, torch")
    assert run_python(late) == run_python(early)
    rngstate.seed_everything(3)
    root_stream = torch.rand(2).tolist()
    inside, after = run_python(late).strip().split("] [")
    assert inside + "]" != str(root_stream)  # the scope drew from its own substream
    assert "[" + after == str(root_stream)  # and torch's root stream was left untouched


def test_deterministic_variable_from_rngstate_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNGSTATE_DETERMINISTIC", "1")  # what `rngstate run --deterministic` sets
    try:
        rngstate.seed_everything(1)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        rngstate.deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()
