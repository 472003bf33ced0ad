"""The pytest plugin (through pytester) and the pytest-randomly random_seeder entry point."""

from __future__ import annotations

import json
import random
from importlib.metadata import entry_points

import pytest
import torch

from rngstate.pytest_plugin import random_seeder, test_seed
from rngstate.runtime import RUNTIME
from tests.conftest import run_python

pytest_plugins = ["pytester"]

INNER_TESTS = """
import json, os, random
from pathlib import Path

import numpy as np
import pytest
import torch

OUT = Path(__file__).with_name("values.jsonl")


@pytest.fixture
def drawn_in_fixture():
    return random.random()


def record(name, extra=None):
    row = [name, random.random(), float(np.random.rand()), float(torch.rand(1)), extra]
    with OUT.open("a") as handle:
        handle.write(json.dumps(row) + "\\n")


def test_one(drawn_in_fixture):
    record("one", drawn_in_fixture)


def test_two():
    record("two")


@pytest.mark.parametrize("n", [1, 2])
def test_param(n):
    record(f"param{n}")
"""


def values(pytester: pytest.Pytester, *args: str) -> dict[str, list[object]]:
    """Run the inner tests with ``args``; return what each test drew."""
    out = pytester.path / "values.jsonl"
    out.unlink(missing_ok=True)
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=len(out.read_text().splitlines()))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return {row[0]: row[1:] for row in rows}


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("RNGSTATE_SEED", raising=False)
    pytester.makepyfile(test_inner=INNER_TESTS)
    return pytester


def test_inert_without_the_option(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_inert="""
        import os
        from rngstate.runtime import RUNTIME

        def test_nothing_seeded():
            assert RUNTIME.root is None and "RNGSTATE_SEED" not in os.environ
        """
    )
    result = inner.runpytest("-p", "no:cacheprovider", "test_inert.py")
    result.assert_outcomes(passed=1)
    assert not any(line.startswith("rngstate") for line in result.outlines)  # no header line


def test_seed_makes_every_test_repeat_independently_of_the_others(inner: pytest.Pytester) -> None:
    full = values(inner, "--rngstate-seed=5")
    assert values(inner, "--rngstate-seed=5") == full
    assert set(full) == {"one", "two", "param1", "param2"}
    # Each test's numbers depend only on (seed, its id): running one test alone repeats them.
    assert values(inner, "--rngstate-seed=5", "-k", "two") == {"two": full["two"]}
    assert values(inner, "--rngstate-seed=5", "-k", "param and 2") == {"param2": full["param2"]}
    assert len({json.dumps(v[:3]) for v in full.values()}) == 4  # every test its own seed
    assert full["one"][3] is not None  # fixtures draw from the test's seed as well
    assert values(inner, "--rngstate-seed=6")["two"] != full["two"]


def test_header_and_each_test_seed(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_seeds="""
        from rngstate.pytest_plugin import test_seed
        from rngstate.runtime import RUNTIME

        def test_root(request, rngstate_seed):
            assert rngstate_seed == RUNTIME.root == test_seed(5, request.node.nodeid)
        """
    )
    result = inner.runpytest("-p", "no:cacheprovider", "--rngstate-seed=5", "test_seeds.py")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["rngstate: seed 5 (each test reseeded from (seed, test id); repeat with --rngstate-seed=5)"]
    )


def test_ini_option(inner: pytest.Pytester) -> None:
    inner.makeini("[pytest]\nrngstate_seed = 7\n")
    from_ini = values(inner)
    assert from_ini == values(inner, "--rngstate-seed=7")
    result = inner.runpytest("-p", "no:cacheprovider", "--collect-only")
    result.stdout.fnmatch_lines(["rngstate: seed 7 *"])


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (["--rngstate-seed=abc"], "", "--rngstate-seed: 'abc' is not a seed; write an integer in [[]0, 4294967295]"),  # noqa: E501
        (["--rngstate-seed=-1"], "", "--rngstate-seed: '-1' is not a seed*"),
        (["--rngstate-seed=+7"], "", "--rngstate-seed: '+7' is not a seed*plain decimal digits*"),
        (["--rngstate-seed=1_000"], "", "--rngstate-seed: '1_000' is not a seed*"),
        ([], "[pytest]\nrngstate_seed = 2**40\n", "ini option rngstate_seed: '2[*][*]40' is not a seed*"),
    ],
)
def test_bad_seed_is_a_usage_error(inner: pytest.Pytester, args: list[str], ini: str, message: str) -> None:
    if ini:
        inner.makeini(ini)
    result = inner.runpytest("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_fixture_seeds_the_test_even_when_the_option_is_off(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_fixture="""
        import random
        from rngstate.pytest_plugin import test_seed
        from rngstate.runtime import RUNTIME

        def test_does_not_ask():  # runs first: nothing seeded it
            assert RUNTIME.root is None

        def test_asks(request, rngstate_seed):
            assert rngstate_seed == RUNTIME.root == test_seed(0, request.node.nodeid)
            print("DRAW", random.random())
        """
    )
    runs = []
    for _ in range(2):
        RUNTIME.reset()  # in-process runs share the runtime: start fresh
        runs.append(inner.runpytest("-p", "no:cacheprovider", "-s", "test_fixture.py"))
        runs[-1].assert_outcomes(passed=2)
    draws = [[part for part in result.outlines if "DRAW" in part] for result in runs]
    assert draws[0] == draws[1] and len(draws[0]) == 1


def test_failing_test_report_shows_its_seed(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_fails="def test_fails():\n    assert False\n")
    result = inner.runpytest("-p", "no:cacheprovider", "--rngstate-seed=3", "test_fails.py")
    result.assert_outcomes(failed=1)
    seed = test_seed(3, "test_fails.py::test_fails")
    result.stdout.fnmatch_lines(
        ["*rngstate*", f"this test ran from seed {seed} (--rngstate-seed=3 and its id)"]
    )


def test_disabled_with_p_no(inner: pytest.Pytester) -> None:
    result = inner.runpytest("-p", "no:cacheprovider", "-p", "no:rngstate", "--rngstate-seed=1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # the option does not exist without the plugin


def test_registered_entry_points() -> None:
    (plugin,) = [ep for ep in entry_points(group="pytest11") if ep.name == "rngstate"]
    assert plugin.value == "rngstate.pytest_plugin"
    (seeder,) = [ep for ep in entry_points(group="pytest_randomly.random_seeder") if ep.name == "rngstate"]
    assert seeder.load() is random_seeder


def test_test_seed_is_stable() -> None:
    # Pinned: changing the derivation would change every user's per-test seeds silently.
    assert test_seed(1234, "tests/test_a.py::test_one") == 2255640272
    assert test_seed(1234, "tests/test_a.py::test_two") != test_seed(1234, "tests/test_a.py::test_one")
    assert test_seed(1235, "tests/test_a.py::test_one") != 2255640272


# -- pytest-randomly's random_seeder -------------------------------------------------------------


def test_random_seeder_reduces_large_seeds_and_leaves_python_and_numpy_alone() -> None:
    random.seed(1)
    python_state = random.getstate()
    import numpy as np

    np.random.seed(1)
    numpy_state = np.random.get_state()[1].copy()
    random_seeder(2**40 + 5)
    assert torch.initial_seed() == 5
    assert random.getstate() == python_state and (np.random.get_state()[1] == numpy_state).all()
    random_seeder(-1)  # pytest-randomly's offsets can make it negative
    assert torch.initial_seed() == 2**32 - 1
    assert RUNTIME.root is None  # it reseeds; it does not take over the root seed


def test_random_seeder_touches_only_imported_frameworks() -> None:
    code = """
    import sys
    from rngstate.pytest_plugin import random_seeder
    random_seeder(2**70 + 3)
    print(sorted({"numpy", "torch", "tensorflow", "paddle", "keras"} & set(sys.modules)))
    """
    assert run_python(code).strip() == "[]"


def test_plugin_import_is_light() -> None:
    code = """
    import sys
    import rngstate.pytest_plugin
    print(sorted({"numpy", "torch", "tensorflow", "paddle", "keras"} & set(sys.modules)))
    """
    assert run_python(code).strip() == "[]"


def test_this_suite_runs_with_the_plugin_loaded_but_inert(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.has_plugin("rngstate")
    if pytestconfig.getoption("rngstate_seed") is not None or pytestconfig.getini("rngstate_seed"):
        pytest.skip("this run asked for per-test reseeding")
    assert RUNTIME.root is None  # nothing reseeded this test
