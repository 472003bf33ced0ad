"""The framework-free part of init_by_name: naming, warnings, and no framework imported."""

from __future__ import annotations

import pytest

import rngstate
from rngstate.derive import derive_bytes
from rngstate.errors import InitializationError, ScopeError
from rngstate.initialize import INIT_COMPONENT, Namer, check_init_fn, report_untouched
from rngstate.snapshot import RNGStateWarning
from tests.conftest import run_python


def test_the_framework_free_helpers_import_no_framework() -> None:
    code = """
    import sys, rngstate, rngstate.initialize
    print(sorted({"torch", "paddle", "keras", "tensorflow"} & set(sys.modules)))
    """
    assert run_python(code).strip() == "[]"


def test_names_are_components_under_a_reserved_prefix_of_the_scope_path() -> None:
    rngstate.seed_everything(5)
    with rngstate.rng_scope("gan"), rngstate.rng_scope("generator"):
        namer = Namer()
    assert namer.parts("", ".") == ("gan", "generator", INIT_COMPONENT)
    assert namer.parts("blocks.0.fc", ".") == ("gan", "generator", "#init", "blocks", "0", "fc")
    assert namer.parts("encoder/dense", "/")[-2:] == ("encoder", "dense")
    parts = namer.parts("head", ".")
    assert namer.material(parts, "torch.cpu") == derive_bytes(5, parts, "torch.cpu")
    assert 0 <= namer.seed(parts, "keras.initializer") < 2**31
    with pytest.raises(ScopeError, match="reserved"):  # users cannot open "#init"
        rngstate.rng_scope(INIT_COMPONENT)


def test_init_fn_must_be_callable() -> None:
    check_init_fn(None, "f")
    check_init_fn(print, "f")
    with pytest.raises(InitializationError, match="f: init_fn must be a function"):
        check_init_fn("reset", "f")  # type: ignore[arg-type]


def test_the_warning_names_parameters_and_counts_the_rest() -> None:
    with pytest.warns(RNGStateWarning, match=r"f: 25 parameter\(s\).*: p0, p1, .*p19 and 5 more\. hint"):
        report_untouched("f", [f"p{i}" for i in range(25)], "hint")
