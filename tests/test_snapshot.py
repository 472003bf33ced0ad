"""capture/restore: exact, inside scopes, across processes, all-or-nothing, strictness."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

import rngstate
from rngstate.errors import InvalidStateError, MissingBackendError, RNGStateWarning, ScopeError
from rngstate.runtime import RUNTIME
from tests.conftest import run_python
from tests.test_scope import draws


def test_restore_is_exact_including_gaussian_caches() -> None:
    rngstate.seed_everything(21)
    draws()  # python and numpy now hold a cached Gaussian, torch its normal caches
    random.gauss(0, 1)
    state = rngstate.capture()
    expected = [draws() for _ in range(3)]
    rngstate.restore(state)
    assert [draws() for _ in range(3)] == expected


def test_capture_includes_substreams_and_restore_continues_them() -> None:
    rngstate.seed_everything(21)
    with rngstate.rng_scope("a"):
        draws()
    state = rngstate.capture()
    with rngstate.rng_scope("a"):
        expected = draws()
    rngstate.seed_everything(99)
    rngstate.restore(state)
    assert state.substreams == ("a",)
    with rngstate.rng_scope("a"):
        assert draws() == expected


def test_capture_inside_scope_is_as_if_scopes_exited() -> None:
    rngstate.seed_everything(3)
    with rngstate.rng_scope("outer"), rngstate.rng_scope("inner"):
        draws()
        state = rngstate.capture()
        rest_inner = draws()
    after = draws()
    with rngstate.rng_scope("outer"):
        outer_next = draws()
    rngstate.restore(state)
    with rngstate.rng_scope("outer/inner"):
        assert draws() == rest_inner
    assert draws() == after
    with rngstate.rng_scope("outer"):
        assert draws() == outer_next


def test_restore_inside_scope_refused() -> None:
    rngstate.seed_everything(3)
    state = rngstate.capture()
    with rngstate.rng_scope("a"), pytest.raises(ScopeError):
        rngstate.restore(state)


def test_restore_accepts_plain_dict() -> None:
    rngstate.seed_everything(3)
    data = rngstate.capture().to_dict()
    expected = draws()
    rngstate.restore(data)
    assert draws() == expected


def test_capture_without_seed_everything() -> None:
    state = rngstate.capture()
    assert state.root_seed is None
    expected = draws()
    rngstate.restore(state)
    assert draws() == expected


def test_restore_sets_root_seed() -> None:
    rngstate.seed_everything(17)
    state = rngstate.capture()
    RUNTIME.reset()  # a fresh process, in effect
    rngstate.restore(state)
    assert RUNTIME.root == 17
    assert rngstate.derive_seed("x") == rngstate.derive_seed("x", root=17)


def test_failed_restore_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    rngstate.seed_everything(1)
    with rngstate.rng_scope("a"):
        pass
    other = rngstate.capture()
    rngstate.seed_everything(2)
    with rngstate.rng_scope("b"):
        pass
    before = rngstate.capture()

    stream = RUNTIME.active["torch.cpu"]
    calls = []

    def fails_once(snapshot: object) -> None:
        calls.append(snapshot)
        if len(calls) == 1:
            raise RuntimeError("torch refused the state")
        type(stream).set_state(stream, snapshot)  # the rollback's call goes through

    monkeypatch.setattr(stream, "set_state", fails_once)
    with pytest.raises(InvalidStateError, match="rolled back"):
        rngstate.restore(other)
    monkeypatch.undo()
    assert rngstate.capture() == before
    assert RUNTIME.root == 2


def test_strict_missing_live_stream_and_non_strict_warning() -> None:
    rngstate.seed_everything(1)
    data = rngstate.capture().to_dict()
    del data["streams"]["torch.cpu"]
    with pytest.raises(MissingBackendError, match="torch.cpu"):
        rngstate.restore(data)
    expected_python = random.random()
    rngstate.seed_everything(1)
    torch_before = torch.get_rng_state()
    random.random()
    with pytest.warns(RNGStateWarning, match="torch.cpu"):
        rngstate.restore(data, strict=False)
    assert random.random() == expected_python
    assert torch.equal(torch.get_rng_state(), torch_before)


def test_unknown_stream_strictness() -> None:
    rngstate.seed_everything(1)
    data = rngstate.capture().to_dict()
    data["streams"]["jax.cpu"] = {"key": b"1234"}
    with pytest.raises(MissingBackendError, match="jax.cpu"):
        rngstate.restore(data)
    with pytest.warns(RNGStateWarning, match="jax.cpu"):
        rngstate.restore(data, strict=False)


def test_uninstalled_framework_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    rngstate.seed_everything(1)
    data = rngstate.capture().to_dict()
    monkeypatch.setattr("rngstate.backends.is_installed", lambda framework: framework != "torch")
    with pytest.raises(MissingBackendError, match=r"rngstate\[torch\]"):
        rngstate.restore(data)


@pytest.mark.slow
def test_restored_state_for_framework_imported_later(tmp_path: Path) -> None:
    saver = """
    import sys, rngstate, torch
    rngstate.seed_everything(5)
    torch.rand(7)
    with rngstate.rng_scope("m"):
        torch.rand(3)
    rngstate.save(sys.argv[1])
    print(torch.rand(3).tolist())
    with rngstate.rng_scope("m"):
        print(torch.rand(3).tolist())
    """
    loader = """
    import sys, rngstate
    state = rngstate.load(sys.argv[1])
    rngstate.restore(state)          # torch is installed but not imported: applied at import
    assert "torch" not in sys.modules
    import torch
    print(torch.rand(3).tolist())
    with rngstate.rng_scope("m"):
        print(torch.rand(3).tolist())
    """
    path = str(tmp_path / "s.rngstate")
    assert run_python(saver, path) == run_python(loader, path)


SAVE = """
import sys, random, numpy as np, torch, rngstate
rngstate.seed_everything(1234)
random.gauss(0, 1); np.random.standard_normal(); torch.randn(3)
with rngstate.rng_scope("model/encoder"):
    torch.nn.Linear(3, 3)
gen = rngstate.torch.generator("loader")
rng = rngstate.numpy.generator("noise")
torch.rand(5, generator=gen); rng.random(3)
rngstate.save(sys.argv[1])
"""
CONTINUE = """
import random, numpy as np, torch, rngstate
gen = rngstate.torch.generator("loader")
rng = rngstate.numpy.generator("noise")
out = [random.gauss(0, 1), random.random(), np.random.standard_normal(), torch.randn(3).tolist()]
with rngstate.rng_scope("model/encoder"):
    out.append(torch.rand(2).tolist())
out += [torch.rand(3, generator=gen).tolist(), rng.random(2).tolist()]
print(out)
"""


@pytest.mark.slow
def test_save_in_one_process_restore_in_another(tmp_path: Path) -> None:
    path = str(tmp_path / "run.rngstate")
    # Asking again for the same tracked names returns the same generators, so SAVE + CONTINUE
    # is one uninterrupted run.
    uninterrupted = run_python(SAVE + CONTINUE, path)
    resumed = run_python(
        "import sys, rngstate\nrngstate.restore(rngstate.load(sys.argv[1]))\n" + CONTINUE, path
    )
    # The restoring process created the tracked generators after restore: they were pending.
    assert resumed == uninterrupted


def test_tracked_generators_restored_in_place() -> None:
    rngstate.seed_everything(3)
    gen = rngstate.torch.generator("g")
    rng = rngstate.numpy.generator("n")
    legacy = rngstate.numpy.random_state("legacy")
    legacy.standard_normal()
    state = rngstate.capture()
    expected = (torch.rand(3, generator=gen), rng.random(), legacy.standard_normal())
    rngstate.restore(state)
    got = (torch.rand(3, generator=gen), rng.random(), legacy.standard_normal())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]


def test_tracked_generator_missing_from_state() -> None:
    rngstate.seed_everything(3)
    state = rngstate.capture()
    rngstate.torch.generator("late")
    with pytest.raises(MissingBackendError, match="late"):
        rngstate.restore(state)


def test_numpy_global_with_other_bit_generator() -> None:
    rngstate.seed_everything(3)
    np.random.set_bit_generator(np.random.PCG64(5))
    try:
        np.random.standard_normal()
        state = rngstate.capture()
        expected = np.random.rand(3).tolist()
        with rngstate.rng_scope("pcg"):
            np.random.rand(2)
        assert np.random.rand(3).tolist() != expected
        rngstate.restore(state)
        assert np.random.rand(3).tolist() == expected
    finally:
        np.random.set_bit_generator(np.random.MT19937(0))
