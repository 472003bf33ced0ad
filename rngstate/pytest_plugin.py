"""pytest plugin: reseed every framework before each test from (seed, test id).

Installed with rngstate (entry point ``pytest11: rngstate``) and inert unless asked::

    pytest --rngstate-seed=1234          # or, in the ini file:  rngstate_seed = 1234

Each test then starts from ``seed_everything(test_seed(1234, nodeid))``: its random numbers do
not depend on which tests ran before it, so ``pytest -k one_test`` reproduces a failure seen in
the full run.  The header shows the seed; a failing test's report shows its own seed.  The
``rngstate_seed`` fixture gives a test its seed (and seeds the test from base seed 0 when the
option is off).  :func:`random_seeder` is a ``pytest_randomly.random_seeder`` entry point, so
pytest-randomly users get torch, Paddle and TensorFlow reseeded too.

Disable it entirely with ``-p no:rngstate``.  Importing this module imports no framework.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator

import pytest

_BASE_SEED = pytest.StashKey["int | None"]()
_TEST_SEED = pytest.StashKey[int]()
_PERSONALIZATION = b"rngstate.pytest"
_SEED_RANGE = 2**32  # what seed_everything and every backend's seed() accept


def test_seed(base: int, nodeid: str) -> int:
    """The seed of the test ``nodeid`` under base seed ``base``: stable across processes.

    BLAKE2b (never ``hash()``, which ``PYTHONHASHSEED`` changes) of the base seed and node id.

    >>> test_seed(1234, "tests/test_a.py::test_one")
    2255640272
    """
    digest = hashlib.blake2b(digest_size=4, person=_PERSONALIZATION)
    digest.update(base.to_bytes(8, "big"))
    digest.update(nodeid.encode("utf-8", "surrogatepass"))
    return int.from_bytes(digest.digest(), "big")


test_seed.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test for pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rngstate", "rngstate: reproducible random numbers")
    group.addoption(
        "--rngstate-seed",
        action="store",
        default=None,
        metavar="N",
        help="reseed python, numpy and every imported framework before each test from (N, test id)",
    )
    parser.addini(
        "rngstate_seed",
        "base seed for rngstate's per-test reseeding (like --rngstate-seed); empty: off",
        default="",
    )


def _parse(text: str, where: str) -> int:
    from rngstate import _check
    from rngstate.derive import MAX_SEED
    from rngstate.errors import InvalidSeedError

    try:
        return _check.seed_text(text, where, MAX_SEED)
    except InvalidSeedError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_configure(config: pytest.Config) -> None:
    option = config.getoption("rngstate_seed", None)
    ini = str(config.getini("rngstate_seed") or "").strip()
    base = None
    if option is not None:
        base = _parse(option, "--rngstate-seed")
    elif ini:
        base = _parse(ini, "ini option rngstate_seed")
    config.stash[_BASE_SEED] = base


def pytest_report_header(config: pytest.Config) -> str | None:
    base = config.stash.get(_BASE_SEED, None)
    if base is None:
        return None
    return (
        f"rngstate: seed {base} (each test reseeded from (seed, test id); repeat with --rngstate-seed={base})"
    )


def _reseed(item: pytest.Item, base: int) -> int:
    from rngstate.seeding import seed_everything

    seed = test_seed(base, item.nodeid)
    seed_everything(seed)
    item.stash[_TEST_SEED] = seed
    return seed


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # tryfirst: before fixtures are set up, so they draw from the test's seed too.
    base = item.config.stash.get(_BASE_SEED, None)
    if base is not None:
        _reseed(item, base)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    seed = item.stash.get(_TEST_SEED, None)
    if seed is not None and report.failed:
        base = item.config.stash.get(_BASE_SEED, None)
        origin = f"--rngstate-seed={base}" if base is not None else "the rngstate_seed fixture, base 0"
        report.sections.append(("rngstate", f"this test ran from seed {seed} ({origin} and its id)"))
    return report


@pytest.fixture
def rngstate_seed(request: pytest.FixtureRequest) -> int:
    """The seed this test runs under.

    With ``--rngstate-seed`` the test was already reseeded before its fixtures; without it,
    requesting this fixture reseeds the test here, from base seed 0 and the test id.
    """
    item: pytest.Item = request.node
    seed = item.stash.get(_TEST_SEED, None)
    if seed is None:
        seed = _reseed(item, 0)
    return seed


def random_seeder(seed: int) -> None:
    """``pytest_randomly.random_seeder`` entry point: reseed every imported framework.

    pytest-randomly reseeds ``random`` and NumPy itself and calls this with its per-test seed,
    which may exceed the 32-bit range; it is reduced modulo 2**32 (the range every rngstate
    backend's ``seed`` accepts, and NumPy's).  Only frameworks already imported are touched.

    >>> random_seeder(2**40 + 5)   # nothing but python/numpy imported: nothing to do
    """
    from rngstate.runtime import RUNTIME

    # pytest-randomly already seeded random and NumPy; frameworks not imported stay so.
    RUNTIME.seed_streams(seed % _SEED_RANGE, skip=("random", "numpy"))
