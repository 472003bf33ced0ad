"""Each diagnosis on the Diagnostics page is printed by a real, broken job in examples/diagnose/,
and the page shows what the script prints."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PRELOAD_TORCH, ROOT, python_command

DOCS = [ROOT / "docs" / name for name in ("diagnostics.md", "cli.md", "exact-resume.md")]
CAUSES = {
    "resume_identical": (0, None, None, "identical: 12 steps compared"),
    "nondeterministic_kernel": (1, 1, "the loss", "loss differs: a nondeterministic kernel — try "
                                "`rngstate.deterministic()`"),
    "drew_after_restore": (1, 9, "the random streams", "torch.cpu differs at step 9 (the first step after "
                           "B's resume): something drew between restore and the first step"),
    "loader_not_loaded": (1, 9, "the batch", "batch order differs at position 0 of epoch 1 (the first step "
                          "after B's resume): the loader's state was not loaded"),
}


def _documented(script: str) -> list[str]:
    """Every block the docs say this script printed (Diagnostics, Command line, Exact resume)."""
    marker = rf"<!-- printed by examples/diagnose/{script}\.py -->\n```console\n(.*?)```"
    blocks = [block for doc in DOCS for block in re.findall(marker, doc.read_text(), re.S)]
    assert blocks, f"the docs show no output of {script}.py"
    return blocks


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(CAUSES))
def test_each_broken_job_is_diagnosed_at_the_right_step(tmp_path: Path, script: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RNGSTATE_SEED", None)
    path = ROOT / "examples" / "diagnose" / f"{script}.py"
    # The script runs job.py with sys.executable: those runs are forked from the preloader too.
    done = subprocess.run(python_command(str(path), str(tmp_path), env=env, preload=PRELOAD_TORCH),
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    status, step, where, cause = CAUSES[script]
    out = done.stdout
    assert out.rstrip().endswith(f"exit {status}")
    if step is not None:
        assert f"first difference at step {step}, in {where}\n" in out
    assert cause in out
    for shown in _documented(script):
        if script == "nondeterministic_kernel":  # its losses change from run to run, by design
            out, shown = (re.sub(r"loss     != .*", "loss     != ...", text) for text in (out, shown))
        assert shown == out
