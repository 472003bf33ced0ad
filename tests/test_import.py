"""`import rngstate` imports no framework, and rngstate works without torch ever imported."""

from __future__ import annotations

import importlib
import json

import pytest

import rngstate
from tests.conftest import ALL_FRAMEWORKS, PRELOAD_ALL, run_python

FRAMEWORKS = {"torch", "tensorflow", "paddle", "keras", "jax"}


def test_import_rngstate_imports_no_framework() -> None:
    code = f"""
    import sys, rngstate
    rngstate.seed_everything(1)
    with rngstate.rng_scope("a"):
        import random; random.random()
    rngstate.capture()
    import rngstate.numpy, rngstate.data  # helpers that need no framework import none
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
    "seed_everything", "stateful", "trace", "track", "worker_init_fn",
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


# Each facade's public classes and functions, defined at module level (not built on first use).
FACADES = {
    "rngstate.torch": {"DataLoader": "rngstate.torch", "generator": "rngstate.torch",
                       "init_by_name": "rngstate.initialize.torch"},
    "rngstate.paddle": {"DataLoader": "rngstate.paddle", "RNGStateCallback": "rngstate.paddle_fit",
                        "init_by_name": "rngstate.initialize.paddle"},
    "rngstate.lightning": {"RNGStateCallback": "rngstate.lightning"},
    "rngstate.transformers": {"RNGStateCallback": "rngstate.transformers",
                              "RNGStateMixin": "rngstate.transformers"},
    "rngstate.keras": {"RNGStateCallback": "rngstate.keras", "init_by_name": "rngstate.initialize.keras"},
}


@pytest.mark.slow
@pytest.mark.xdist_group(ALL_FRAMEWORKS)
def test_facades_define_their_public_names_at_module_level() -> None:
    code = f"""
    import paddle  # before tensorflow (keras): the other order crashes on this machine
    import importlib, inspect, json
    found = {{}}
    for name, members in {FACADES!r}.items():
        module = importlib.import_module(name)
        assert "__getattr__" not in vars(module), name  # nothing is built lazily
        for member in members:
            value = vars(module)[member]
            found[f"{{name}}.{{member}}"] = [value.__module__, value.__qualname__ == member,
                                           member in module.__all__]
    print(json.dumps(found))
    """
    found = json.loads(run_python(code, preload=PRELOAD_ALL).strip().splitlines()[-1])
    for name, members in FACADES.items():
        for member, module in members.items():
            assert found[f"{name}.{member}"] == [module, True, True]


def test_public_signatures_are_real() -> None:
    import inspect

    import rngstate.torch

    loader = inspect.signature(rngstate.torch.DataLoader)
    assert list(loader.parameters)[:3] == ["dataset", "batch_size", "shuffle"]
    assert {"name", "seed_per", "rank", "world_size", "group"} <= set(loader.parameters)
    assert list(inspect.signature(rngstate.RNGState).parameters) == ["data"]
    _ = rngstate.seed_everything(3)
    state = rngstate.capture()
    assert rngstate.RNGState(state.to_dict()) == state == rngstate.RNGState.from_dict(state.to_dict())
