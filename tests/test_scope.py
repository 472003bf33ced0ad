"""rng_scope semantics: substreams, outer streams untouched, re-entry, nesting, errors."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import rngstate
from rngstate import backends
from rngstate.backends.torch_backend import RawCPUState
from rngstate.errors import NoRootSeedError, ScopeError
from rngstate.runtime import RUNTIME
from tests.conftest import run_python


def draws() -> tuple[object, ...]:
    """One draw from every stream, Gaussian caches included."""
    return (
        random.random(),
        random.gauss(0, 1),
        np.random.rand(),
        np.random.standard_normal(),
        torch.rand(2).tolist(),
        torch.randn(1).tolist(),
        torch.randn(1, dtype=torch.float64).tolist(),
    )


def run(with_scope: bool) -> list[tuple[object, ...]]:
    rngstate.seed_everything(11)
    out = [draws()]  # leaves a cached Gaussian in python and numpy
    if with_scope:
        with rngstate.rng_scope("noise"):
            draws()
            draws()
    out.append(draws())
    return out


def test_outer_streams_untouched_bit_for_bit() -> None:
    assert run(with_scope=True) == run(with_scope=False)


def test_scope_draws_depend_only_on_path() -> None:
    rngstate.seed_everything(5)
    with rngstate.rng_scope("a"):
        first = draws()
    rngstate.seed_everything(5)
    draws()
    np.random.rand(100)
    with rngstate.rng_scope("b"):
        draws()
    with rngstate.rng_scope("a"):
        assert draws() == first


def test_reentry_continues() -> None:
    rngstate.seed_everything(5)
    with rngstate.rng_scope("dropout"):
        a = torch.rand(4)
    torch.rand(10)
    with rngstate.rng_scope("dropout"):
        b = torch.rand(4)
    rngstate.seed_everything(5)
    with rngstate.rng_scope("dropout"):
        both = torch.rand(8)
    assert torch.equal(torch.cat([a, b]), both)
    assert not torch.equal(a, b)


def test_nesting_composes_paths() -> None:
    rngstate.seed_everything(9)
    with rngstate.rng_scope("model") as outer:
        with rngstate.rng_scope("encoder") as inner:
            assert inner.path == "model/encoder"
            nested = draws()
        assert outer.path == "model"
    rngstate.seed_everything(9)
    with rngstate.rng_scope("model/encoder"):
        assert draws() == nested


def test_decorator_and_recursion() -> None:
    rngstate.seed_everything(2)

    @rngstate.rng_scope("init")
    def sample(depth: int) -> list[float]:
        values = [random.random()]
        if depth:
            values += sample(depth - 1)  # re-enters "init" nested: path "init/init"
        return values

    outer = random.random()
    rngstate.seed_everything(2)
    values = sample(1)
    assert random.random() == outer
    rngstate.seed_everything(2)
    with rngstate.rng_scope("init"):
        first = random.random()
        with rngstate.rng_scope("init"):
            second = random.random()
    assert values == [first, second]


def test_exception_restores_outer_state() -> None:
    rngstate.seed_everything(4)
    expected = draws()
    rngstate.seed_everything(4)
    with pytest.raises(KeyError), rngstate.rng_scope("fails"):
        draws()
        raise KeyError("boom")
    assert draws() == expected
    assert "fails" in rngstate.capture().substreams  # the substream's advance is kept


def test_no_root_seed() -> None:
    with pytest.raises(NoRootSeedError, match="seed_everything"), rngstate.rng_scope("a"):
        pass


@pytest.mark.parametrize("name", ["", "a//b", "/a", "new\nline", 3, None])
def test_invalid_names(name: object) -> None:
    with pytest.raises(ScopeError):
        rngstate.rng_scope(name)  # type: ignore[arg-type]


def test_second_thread_refused_while_first_inside() -> None:
    rngstate.seed_everything(1)
    errors: list[BaseException] = []

    def enter() -> None:
        try:
            with rngstate.rng_scope("worker"):
                pass
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    with rngstate.rng_scope("main"):
        thread = threading.Thread(target=enter)
        thread.start()
        thread.join()
    assert len(errors) == 1 and isinstance(errors[0], ScopeError)
    assert "another thread" in str(errors[0])
    thread = threading.Thread(target=enter)  # after the main thread left, another may enter
    thread.start()
    thread.join()
    assert len(errors) == 1


def test_out_of_order_exit_refused() -> None:
    rngstate.seed_everything(1)
    a, b = rngstate.rng_scope("a"), rngstate.rng_scope("b")
    a.__enter__()
    b.__enter__()
    with pytest.raises(ScopeError, match="out of order"):
        a.__exit__(None, None, None)
    b.__exit__(None, None, None)
    a.__exit__(None, None, None)


# -- the unused-layer story ------------------------------------------------------------------


def build(order: list[str], extra: str | None) -> dict[str, torch.Tensor]:
    """Build layers named in ``order`` (plus an unused one), each in its own scope."""
    rngstate.seed_everything(0)
    torch.rand(1)  # whatever ran before model construction must not matter either
    layers: dict[str, nn.Module] = {}
    for name in order:
        if name == extra:
            with rngstate.rng_scope("unused"):
                nn.Linear(16, 16)
            continue
        with rngstate.rng_scope(name):
            layers[name] = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.5), nn.Linear(16, 4))
    return {name: torch.cat([p.flatten() for p in layer.parameters()]) for name, layer in layers.items()}


BASE = ["encoder", "decoder", "head"]
VARIANTS: dict[str, Callable[[], dict[str, torch.Tensor]]] = {
    "before": lambda: build(["unused", *BASE], "unused"),
    "between": lambda: build(["encoder", "unused", "decoder", "head"], "unused"),
    "after": lambda: build([*BASE, "unused"], "unused"),
    "reordered": lambda: build(["head", "decoder", "encoder"], None),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_scoped_layers_identical(variant: str) -> None:
    reference = build(BASE, None)
    other = VARIANTS[variant]()
    for name in BASE:
        assert torch.equal(reference[name], other[name]), name


def test_without_scopes_an_unused_layer_shifts_init() -> None:
    # The problem rngstate solves; if this ever stops failing, the demo no longer demonstrates.
    torch.manual_seed(0)
    a = nn.Linear(4, 4).weight.clone()
    torch.manual_seed(0)
    nn.Linear(4, 4)
    assert not torch.equal(a, nn.Linear(4, 4).weight)


def slow_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the streams use their frameworks' get_state/set_state instead of raw copies."""
    python, numpy_, torch_cpu = (backends.stream(name) for name in ("python", "numpy", "torch.cpu"))
    for stream, fields in ((python, {"_fast": False, "_instance": None, "_view": memoryview(b"")}),
                           (numpy_, {"_gauss_offset": None, "_owners": (None, None), "_views": None}),
                           (torch_cpu, {"_engine": None, "_generator": torch.default_generator})):
        for field, value in fields.items():
            monkeypatch.setattr(stream, field, value)


def many_round_trips() -> tuple[list[tuple[object, ...]], rngstate.RNGState]:
    """Hundreds of scope entries, nested and not, with a capture/restore half-way."""
    rngstate.seed_everything(21)
    scopes = [rngstate.rng_scope(name) for name in ("a", "b", "a/c")]
    seen = []
    for i in range(300):
        with scopes[i % 3]:
            if i % 5:
                seen.append(draws())
            if i % 7 == 0:
                with scopes[(i + 1) % 3]:
                    seen.append(draws())
        if i % 11 == 0:
            seen.append(draws())
        if i == 150:  # substreams then hold decoded snapshots, the live ones raw copies
            rngstate.restore(rngstate.capture())
    return seen, rngstate.capture()


def test_many_round_trips_exact_and_raw_copies_equal_get_set_state(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = many_round_trips()
    live = RUNTIME.substreams["a"]
    assert type(live["torch.cpu"]) is RawCPUState and len(live["python"]) == 2  # raw copies
    slow_paths(monkeypatch)
    slow = many_round_trips()
    assert type(RUNTIME.substreams["a"]["torch.cpu"]) is torch.Tensor  # the slow path was taken
    assert slow == fast


def test_scopes_deeper_than_a_state_may_hold_are_refused_on_entry(tmp_path: Path) -> None:
    # Issue 25: 65 nested scopes captured and saved a state that restore/load/from_dict refuse.
    rngstate.seed_everything(0)

    @rngstate.rng_scope("r")
    def recurse(n: int) -> rngstate.RNGState:
        return recurse(n - 1) if n else rngstate.capture()

    deepest = recurse(63)  # 64 components: the most a state holds
    rngstate.save(tmp_path / "deep.rngstate", deepest)
    rngstate.restore(rngstate.load(tmp_path / "deep.rngstate"))
    rngstate.restore(rngstate.RNGState.from_dict(deepest.to_dict()))
    before = random.getstate()
    with pytest.raises(ScopeError, match="nested 65 deep"):
        recurse(64)
    assert random.getstate() == before and not RUNTIME.frames
    with rngstate.rng_scope("/".join(["p"] * 64)), pytest.raises(ScopeError, match="nested 65 deep"):
        rngstate.rng_scope("q").__enter__()


def test_a_signal_handler_may_enter_a_scope_while_the_runtime_lock_is_held() -> None:
    # Issue 25: the handler ran on the thread holding the (non-reentrant) lock: deadlock.
    code = """
    import random, signal, rngstate
    from rngstate.runtime import RUNTIME
    rngstate.seed_everything(0)
    seen = []
    def handler(signum, frame):
        with rngstate.rng_scope("handler"):
            seen.append(random.random())
    signal.signal(signal.SIGUSR1, handler)
    with RUNTIME._lock:  # as inside enter() or the last exit()
        signal.raise_signal(signal.SIGUSR1)
    with rngstate.rng_scope("handler"):
        pass
    print(len(seen), RUNTIME.frames)
    """
    assert run_python(code, timeout=60).split() == ["1", "[]"]
