"""examples/distributed_tp_dcp.py under torchrun: 4 processes, 2x2 mesh, DCP resume mid-epoch."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PRELOAD_TORCH, ROOT, python_command


def torchrun(tmp_path: Path, *args: str) -> list[str]:
    example = str(ROOT / "examples" / "distributed_tp_dcp.py")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("RNGSTATE_SEED", None)
    command = python_command("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4", example,
                             "--checkpoint", str(tmp_path / "ckpt"), *args, env=env, preload=PRELOAD_TORCH)
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return sorted(re.findall(r"rank \d: (?:saved after step \d+|final weights [0-9a-f]{16})", result.stdout))


@pytest.mark.slow
def test_tensor_parallel_dcp_resume_matches_the_uninterrupted_run(tmp_path: Path) -> None:
    lines = torchrun(tmp_path, "--save-at", "6")  # checkpoints mid-epoch and trains on
    assert [line for line in lines if "saved" in line] == [f"rank {r}: saved after step 6" for r in range(4)]
    uninterrupted = [line for line in lines if "final" in line]
    assert len(uninterrupted) == 4 and len({line.split()[-1] for line in uninterrupted}) == 1
    assert torchrun(tmp_path, "--resume") == uninterrupted  # new processes, every rank
