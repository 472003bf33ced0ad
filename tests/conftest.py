"""Shared fixtures: every test starts with a fresh rngstate runtime."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from rngstate.runtime import RUNTIME
from tests.preloaded import preloaded

ROOT = Path(__file__).resolve().parent.parent


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist (the test extra has it)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker more than the CPUs this process may run on.  The ``slow`` tests
    spend part of their time waiting on the processes they start (torchrun's rendezvous, gloo
    ranks, a browser, a framework's import in a child): a spare worker keeps every core busy
    meanwhile (the suite on 2 cores: 5 min 44 s with 2 workers, 5 min 04 s to 5 min 38 s with
    3).  Without them (``-m "not slow"``) the tests compute: one worker a CPU (65 s against
    72-83 s with the spare one)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    quick = "not slow" in " ".join((config.getoption("markexpr") or "").split())
    return cpus if quick else cpus + 1


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (--dist loadgroup)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep the tests that use a module's cached reference runs (``EXAMPLE``, a ResumeExample
    or TrainerExample) on one xdist worker: split across two, each would train the reference
    run again.  The module's other tests go to whichever worker is free.

    Then the longest work goes first (the groups, then the other ``slow`` tests, in collection
    order otherwise): xdist hands out tests in this order, so the quick ones fill the gaps at
    the end instead of one long test running alone on one core."""
    from tests.integrations.conftest import TrainerExample

    rank: dict[str, int] = {}
    for item in items:
        module = getattr(item, "module", None)
        function = getattr(item, "function", None)
        uses_example = function is not None and "EXAMPLE" in function.__code__.co_names
        if uses_example and isinstance(getattr(module, "EXAMPLE", None), (ResumeExample, TrainerExample)):
            item.add_marker(pytest.mark.xdist_group(module.__name__))  # type: ignore[union-attr]
            rank[item.nodeid] = 0
        else:
            rank[item.nodeid] = 1 if item.get_closest_marker("slow") else 2
    items.sort(key=lambda item: rank[item.nodeid])


@pytest.fixture(autouse=True)
def fresh_runtime() -> Iterator[None]:
    """Forget root seed, substreams and tracked generators before and after each test."""
    RUNTIME.reset()
    saved = os.environ.get("RNGSTATE_SEED")
    yield
    RUNTIME.reset()
    if saved is None:
        os.environ.pop("RNGSTATE_SEED", None)
    else:
        os.environ["RNGSTATE_SEED"] = saved


def run_python(
    code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300,
    preload: tuple[str, ...] = (),
) -> str:
    """Run ``code`` in a fresh interpreter (project on sys.path); return stdout, fail on error.

    ``preload``: modules the code imports first anyway; the run is forked from an interpreter
    that imported them already (tests/preloaded.py).
    """
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    full_env.pop("RNGSTATE_SEED", None)
    if env and "RNGSTATE_SEED" in env:
        full_env["RNGSTATE_SEED"] = env["RNGSTATE_SEED"]
    result = subprocess.run(
        python_command("-c", textwrap.dedent(code), *args, env=full_env, preload=preload),
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout


# What the training runs import first, one set per framework (fewer sets, fewer preloaders:
# each costs one import of its framework per test worker).  torch's covers DCP and torchrun,
# whose workers are forked from the same preloader.
PRELOAD_TORCH = ("torch", "torch.distributed.checkpoint", "torch.distributed.run")
PRELOAD_LIGHTNING = ("lightning.pytorch",)
PRELOAD_TRANSFORMERS = ("torch", "transformers", "transformers.trainer")
PRELOAD_ACCELERATE = ("torch", "accelerate")
PRELOAD_PADDLE = ("paddle",)
PRELOAD_KERAS = ("tensorflow", "keras")  # KERAS_BACKEND=torch: ("keras",)
# Every facade's framework (Paddle before TensorFlow: the other order crashes on this machine),
# for the tests that import them all; they share a worker (xdist_group ALL_FRAMEWORKS).
PRELOAD_ALL = ("paddle", "tensorflow", "keras", "lightning.pytorch", "transformers", "accelerate")
ALL_FRAMEWORKS = "all-frameworks"


def python_command(*argv: str, env: dict[str, str] | None = None, preload: tuple[str, ...] = ()) -> list[str]:
    """``python *argv``; forked from a preloader of ``preload`` when given (tests/preloaded.py).
    ``env``: the environment the command will run with (``os.environ`` when None)."""
    if not preload or os.environ.get("RNGSTATE_TESTS_FRESH_PYTHON"):  # a cold interpreter per run
        return [sys.executable, *argv]
    return preloaded(preload, *argv, env=env)


def gpu_available() -> bool:
    """True when torch sees a CUDA device (without initializing anything else)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


F = TypeVar("F", bound=Callable[..., object])


def needs_cuda(test: F) -> F:
    """Mark a real-device test: ``gpu`` (``pytest -m gpu`` selects every one) and skipped
    without a CUDA device.  Tests of the CUDA code paths on fake devices
    (tests/backends/fake_cuda.py) carry no marker: they run everywhere, CPU CI included."""
    return pytest.mark.gpu(pytest.mark.skipif(not gpu_available(), reason="needs a CUDA device")(test))


class ResumeExample:
    """One of ``examples/resume_*.py``: each run in its own process, read by its weights hash.

    ``preload``: the framework modules the example imports (see ``python_command``).
    ``workers=None`` leaves ``--workers`` out (examples without a DataLoader); uninterrupted
    and resumed runs are cached per argument list (the checkpoint's folder changes nothing).
    """

    def __init__(self, name: str, preload: tuple[str, ...] = ()) -> None:
        self.name = name
        self.path = ROOT / "examples" / name
        self.preload = preload
        self._uninterrupted: dict[tuple[str, ...], str] = {}
        self._resumed: dict[tuple[object, ...], str] = {}

    def run(self, *args: str) -> str:
        result = subprocess.run(
            python_command(str(self.path), *args, preload=self.preload),
            capture_output=True, text=True, timeout=300, cwd=ROOT,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    @staticmethod
    def final_hash(output: str) -> str:
        match = re.search(r"final weights ([0-9a-f]{16})", output)
        assert match, output
        return match.group(1)

    @staticmethod
    def options(workers: int | None, plain: bool) -> list[str]:
        workers_option = ["--workers", str(workers)] if workers is not None else []
        return [*workers_option, *(["--plain"] if plain else [])]

    def uninterrupted(self, workers: int | None = None, plain: bool = False) -> str:
        args = tuple(self.options(workers, plain))
        if args not in self._uninterrupted:
            self._uninterrupted[args] = self.final_hash(self.run(*args))
        return self._uninterrupted[args]

    def resumed(
        self, tmp_path: Path, stop_at: int, before: int | None = None, after: int | None = None,
        plain: bool = False,
    ) -> str:
        """Stop after ``stop_at`` steps with ``before`` workers, resume with ``after``."""
        key = (stop_at, before, after, plain)
        if key not in self._resumed:
            self._resumed[key] = self._resume(tmp_path, stop_at, before, after, plain)
        return self._resumed[key]

    def _resume(
        self, tmp_path: Path, stop_at: int, before: int | None, after: int | None, plain: bool
    ) -> str:
        checkpoint = str(tmp_path / f"run{stop_at}.ckpt")
        saved = self.run("--stop-at", str(stop_at), "--checkpoint", checkpoint, *self.options(before, plain))
        assert f"checkpoint saved at step {stop_at} " in saved
        return self.final_hash(self.run("--resume", "--checkpoint", checkpoint, *self.options(after, plain)))

    def check_shown(self, tmp_path: Path, workers: tuple[int, int] | tuple[None, None] = (2, 0)) -> None:
        """The docs' ``final weights`` for this example (tests/docs/shown.py) are what it prints:
        uninterrupted, stopped at step 8 and resumed (``workers``: before, after), then both
        with ``--plain``."""
        from tests.docs.shown import shown_weights

        before, after = workers
        assert shown_weights(self.name) == [
            self.uninterrupted(before),
            self.resumed(tmp_path, 8, before=before, after=after),
            self.uninterrupted(before, plain=True),
            self.resumed(tmp_path, 8, before=before, after=before, plain=True),
        ]
