"""Shared fixtures: every test starts with a fresh rngstate runtime."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from rngstate.runtime import RUNTIME

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fresh_runtime() -> Iterator[None]:
    """Forget root seed, substreams and tracked generators before and after each test."""
    RUNTIME.__init__()  # type: ignore[misc]
    saved = os.environ.get("RNGSTATE_SEED")
    yield
    RUNTIME.__init__()  # type: ignore[misc]
    if saved is None:
        os.environ.pop("RNGSTATE_SEED", None)
    else:
        os.environ["RNGSTATE_SEED"] = saved


def run_python(code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run ``code`` in a fresh interpreter (project on sys.path); return stdout, fail on error."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    full_env.pop("RNGSTATE_SEED", None)
    if env and "RNGSTATE_SEED" in env:
        full_env["RNGSTATE_SEED"] = env["RNGSTATE_SEED"]
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout


def gpu_available() -> bool:
    """True when torch sees a CUDA device (without initializing anything else)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
