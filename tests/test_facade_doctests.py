"""The docstring examples of the facades that import a heavy framework, run in their own
process (see the root ``conftest.py``: the test processes never import them at collection)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from conftest import FACADE_DOCTESTS  # noqa: E402  (the root conftest, not tests/conftest)
from tests.conftest import ALL_FRAMEWORKS, PRELOAD_ALL, python_command  # noqa: E402


@pytest.mark.slow
@pytest.mark.xdist_group(ALL_FRAMEWORKS)
def test_facade_docstring_examples() -> None:
    env = {**os.environ, "RNGSTATE_FACADE_DOCTESTS": "1"}
    options = ["-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-o", "addopts=--doctest-modules"]
    command = python_command("-m", "pytest", *options, *FACADE_DOCTESTS, env=env, preload=PRELOAD_ALL)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert " passed" in done.stdout.splitlines()[-1]
