"""Runs ``examples/trainer_*.py`` trainings, each in its own process, read by their weights hash."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import ROOT, python_command


class TrainerExample:
    """One ``examples/trainer_*.py`` script; uninterrupted runs are cached per option list."""

    def __init__(self, name: str, preload: tuple[str, ...] = ()) -> None:
        """``preload``: the framework modules the script imports (see ``python_command``)."""
        self.path = ROOT / "examples" / name
        self.preload = preload
        self._reference: dict[tuple[str, ...], str] = {}

    def run(self, *args: str) -> str:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("RNGSTATE_SEED", None)
        result = subprocess.run(
            python_command(str(self.path), "--run", *args, env=env, preload=self.preload),
            capture_output=True, text=True, timeout=600, cwd=ROOT, env=env,
        )
        assert result.returncode == 0, result.stderr[-4000:]
        return result.stdout

    def final(self, *args: str) -> str:
        output = self.run(*args)
        match = re.search(r"final weights ([0-9a-f]{16})", output)
        assert match, output
        return match.group(1)

    def reference(self, *args: str, checkpoint: bool = False) -> str:
        """The uninterrupted run's weights, trained once per option list; ``checkpoint``: the
        script needs ``--checkpoint <folder>`` (a fresh one: its path changes nothing)."""
        key = (*args, "--checkpoint") if checkpoint else args
        if key not in self._reference:
            with tempfile.TemporaryDirectory() as folder:
                self._reference[key] = self.final(*args, *(("--checkpoint", folder) if checkpoint else ()))
        return self._reference[key]

    def interrupted(self, folder: Path, stop_at: int, *args: str) -> None:
        output = self.run("--stop-at", str(stop_at), "--checkpoint", str(folder), *args)
        assert f"checkpoint saved at step {stop_at}" in output, output
