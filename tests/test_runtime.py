"""The runtime's verbs: the only code that writes its fields (issue 17)."""

from __future__ import annotations

import random

import numpy as np
import pytest

import rngstate
from rngstate import backends
from rngstate.errors import InvalidStateError, ScopeError
from rngstate.runtime import RUNTIME


def test_the_runtime_is_what_the_backends_talk_to() -> None:
    assert backends.listener() is RUNTIME


def test_reset_forgets_everything_but_leaves_the_generators() -> None:
    rngstate.seed_everything(3)
    rngstate.track(random.Random(), "rng")
    with rngstate.rng_scope("a"):
        random.random()
    live = random.getstate()
    RUNTIME.reset()
    assert RUNTIME.root is None and not RUNTIME.active and not RUNTIME.substreams
    assert not RUNTIME.tracked and not RUNTIME.frames and random.getstate() == live


def test_forget_only_drops_the_same_object() -> None:
    rngstate.seed_everything(3)
    first = rngstate.track(random.Random(), "rng")
    RUNTIME.forget("rng", random.Random())  # another object: kept
    assert RUNTIME.tracked["rng"].obj is first
    RUNTIME.forget("rng", first)
    assert "rng" not in RUNTIME.tracked


def test_install_is_all_or_nothing() -> None:
    rngstate.seed_everything(3)
    good = rngstate.track(random.Random(), "good")

    class Refusing(random.Random):
        def setstate(self, state: object) -> None:
            raise RuntimeError("refused")

    rngstate.track(Refusing(), "refusing")
    np.random.rand()
    before, good_before = rngstate.capture(), good.getstate()
    snapshot = backends.kind("python.Random").get_state(random.Random(9))
    with pytest.raises(RuntimeError, match="refused"):
        RUNTIME.install(
            7, {"python": backends.stream("python").get_state()}, {}, {"x": {}},
            {"good": ("python.Random", snapshot), "refusing": ("python.Random", snapshot)},
        )
    assert rngstate.capture() == before and RUNTIME.root == 3 and "x" not in RUNTIME.substreams
    assert good.getstate() == good_before  # it had been set before the failure: put back


def test_install_refuses_inside_a_scope() -> None:
    rngstate.seed_everything(3)
    with rngstate.rng_scope("a"), pytest.raises(ScopeError, match="inside an rng_scope"):
        RUNTIME.install(3, {}, {}, {}, {})


def test_restore_wraps_a_framework_error_and_rolls_back() -> None:
    rngstate.seed_everything(3)

    class Refusing(random.Random):
        def setstate(self, state: object) -> None:
            raise RuntimeError("refused")

    rngstate.track(Refusing(), "refusing")
    state = rngstate.capture()
    random.random()
    before = rngstate.capture()
    with pytest.raises(InvalidStateError, match="rolled back: refused"):
        rngstate.restore(state)
    assert rngstate.capture() == before


def test_seed_streams_leaves_root_and_skipped_frameworks() -> None:
    rngstate.seed_everything(3)
    with rngstate.rng_scope("a"):
        pass
    substreams = rngstate.capture().substreams
    python = random.getstate()
    RUNTIME.seed_streams(11, skip=("random",))
    assert random.getstate() == python  # skipped
    np_state = np.random.get_state()[1][:4].tolist()
    np.random.seed(11)
    assert np.random.get_state()[1][:4].tolist() == np_state  # numpy seeded the way np.random.seed does
    assert RUNTIME.root == 3 and rngstate.capture().substreams == substreams


def test_a_failing_exit_still_puts_every_outer_state_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    rngstate.seed_everything(4)
    with rngstate.rng_scope("a"):  # from now on "a" is known: entry and exit both exchange
        pass
    outer = (random.getstate(), np.random.get_state()[1].tolist(), torch.get_rng_state())
    stream = backends.stream("numpy")
    calls: list[object] = []
    exchange = stream.exchange

    def fails_on_exit(snapshot: object) -> object:
        calls.append(snapshot)
        if len(calls) == 2:
            raise InvalidStateError("injected")
        return exchange(snapshot)

    monkeypatch.setattr(stream, "exchange", fails_on_exit)
    monkeypatch.setattr(stream, "exchange_outer", fails_on_exit)  # entry's (numpy's is exchange)
    with pytest.raises(InvalidStateError, match="injected"), rngstate.rng_scope("a"):
        random.random(), np.random.rand(), torch.rand(1)
    assert not RUNTIME.frames and RUNTIME.owner is None
    assert random.getstate() == outer[0] and np.random.get_state()[1].tolist() == outer[1]
    assert torch.get_rng_state().equal(outer[2])
    monkeypatch.undo()
    with rngstate.rng_scope("b"):  # scopes work afterwards
        pass
