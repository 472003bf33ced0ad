"""`import rngstate` imports no framework, and rngstate works without torch ever imported."""

from __future__ import annotations

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
