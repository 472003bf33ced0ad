"""The suite's ``--dist loadgroup`` keeps each ``xdist_group`` on one worker.

Tests that share cached training runs (``EXAMPLE``), one preloader of every framework or one
docs site build rely on it; a pytest/xdist pair that drops the groups (pytest 9.2 with
xdist 3.8: pytest-dev/pytest-xdist#1386) would only make the suite slow, silently.  Here two
workers run two groups of tests that each record their worker, in a pytest of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GROUPED = """
import os, pytest

@pytest.mark.parametrize("index", range(6))
@pytest.mark.xdist_group("first")
def test_first(index):
    with open(os.path.join(os.environ["GROUPS_OUT"], f"first{index}"), "w") as out:
        out.write(os.environ["PYTEST_XDIST_WORKER"])

@pytest.mark.parametrize("index", range(6))
@pytest.mark.xdist_group("second")
def test_second(index):
    with open(os.path.join(os.environ["GROUPS_OUT"], f"second{index}"), "w") as out:
        out.write(os.environ["PYTEST_XDIST_WORKER"])
"""


@pytest.mark.slow
def test_each_group_runs_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "GROUPS_OUT": str(out)}
    command = [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup",
               "-p", "no:cacheprovider", "-c", os.devnull, "--rootdir", str(tmp_path), "test_grouped.py"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    workers = {path.name: path.read_text() for path in out.iterdir()}
    assert len(workers) == 12
    for group in ("first", "second"):
        assert len({workers[f"{group}{index}"] for index in range(6)}) == 1, workers
