"""`import rngstate` imports no framework, and rngstate works without torch ever imported."""

from __future__ import annotations

import importlib
import json

import pytest

import rngstate
from tests.conftest import run_python

FRAMEWORKS = {"torch", "tensorflow", "paddle", "keras", "jax"}


def test_import_rngstate_imports_no_framework() -> None:
    code = f"""
    import sys, rngstate
    rngstate.seed_everything(1)
    with rngstate.rng_scope("a"):
        import random; random.random()
    rngstate.capture()
    import rngstate.torch, rngstate.numpy  # helpers load lazily and still import no framework
    print(sorted({FRAMEWORKS!r} & set(sys.modules)))
    """
    assert run_python(code).strip() == "[]"


def test_works_with_python_and_numpy_only(tmp_path: object) -> None:
    code = """
    import sys, random, numpy as np, rngstate
    rngstate.seed_everything(4)
    with rngstate.rng_scope("aug"):
        a = (random.random(), np.random.rand())
    state = rngstate.capture()
    with rngstate.rng_scope("aug"):
        b = (random.random(), np.random.rand())
    rngstate.restore(state)
    with rngstate.rng_scope("aug"):
        assert (random.random(), np.random.rand()) == b
    print(state.streams, "torch" in sys.modules)
    """
    assert run_python(code).strip() == "('numpy', 'python') False"


TOP_LEVEL = {
    "RNGState", "RNGStateError", "ResumableSampler", "StateFileError", "__version__", "audit",
    "capture", "derive_seed", "deterministic", "fingerprint", "load", "restore", "rng_scope", "save",
    "seed_everything", "stateful", "track", "worker_init_fn",
}


def test_top_level_is_small_and_pinned() -> None:
    # A fresh process: what `import rngstate` defines, submodules aside, is exactly __all__.
    code = """
    import inspect, json, sys, rngstate
    defined = [n for n, v in vars(rngstate).items() if not n.startswith("_") and not inspect.ismodule(v)]
    resolved = [n for n in rngstate.__all__ if getattr(rngstate, n, None) is not None]
    frameworks = sorted({"torch", "tensorflow", "paddle", "keras", "jax"} & set(sys.modules))
    print(json.dumps([rngstate.__all__, defined, resolved, frameworks]))
    """
    all_names, defined, resolved, frameworks = json.loads(run_python(code))
    assert len(all_names) <= 20
    assert set(all_names) <= TOP_LEVEL  # `stateful` joins when rngstate/stateful.py lands
    assert set(defined) <= set(all_names)  # the lazy ones (ResumableSampler, ...) load on use
    assert resolved == all_names  # every exported name resolves, lazily or not
    assert frameworks == []  # resolving ResumableSampler and worker_init_fn imported no framework


def test_moved_names_say_where_they_live() -> None:
    moved = [("InvalidStateError", "rngstate.errors"), ("check_reproducible", "rngstate.diagnostics"),
             ("rank_info", "rngstate.distributed"), ("register_stream", "rngstate.backends")]
    for name, module in moved:
        with pytest.raises(AttributeError, match=f"from {module} import {name}"):
            getattr(rngstate, name)
        assert hasattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rngstate.nope  # noqa: B018
