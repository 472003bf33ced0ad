"""Run a snippet on N gloo ranks (subprocesses on 127.0.0.1); collect each rank's JSON ``out``."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import textwrap
import time
from typing import Any

from tests.conftest import PRELOAD_TORCH, ROOT, python_command

PRELUDE = """
import json, os, sys, torch, torch.distributed as dist, rngstate
import torch.distributed.checkpoint as dcp
dist.init_process_group("gloo", init_method=os.environ["RNGSTATE_TEST_STORE"],
                        rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
rank, world = dist.get_rank(), dist.get_world_size()
args = sys.argv[1:]
out = {}
"""
EPILOGUE = """
print("RESULT " + json.dumps(out), flush=True)
dist.barrier()
dist.destroy_process_group()
"""


def rendezvous_file() -> str:
    """A fresh ``file://`` rendezvous for one job's ranks.  Not a TCP port picked beforehand:
    between picking a free port and rank 0 binding it, a test running beside this one may take
    it, and the ranks then meet the wrong store and wait until the timeout."""
    return "file://" + os.path.join(tempfile.mkdtemp(prefix="rngstate-ranks-"), "store")


def run_ranks(world_size: int, body: str, *args: str, timeout: float = 90) -> list[dict[str, Any]]:
    """Run PRELUDE + ``body`` on ``world_size`` ranks; every process is ended by ``timeout``."""
    code = textwrap.dedent(PRELUDE) + textwrap.dedent(body) + textwrap.dedent(EPILOGUE)
    store = rendezvous_file()
    processes = []
    for rank in range(world_size):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RNGSTATE_TEST_STORE": store,
               "RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
               "LOCAL_WORLD_SIZE": str(world_size), "OMP_NUM_THREADS": "1"}
        env.pop("RNGSTATE_SEED", None)
        command = python_command("-c", code, *args, env=env, preload=PRELOAD_TORCH)
        processes.append(subprocess.Popen(command, env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    deadline = time.monotonic() + timeout
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=max(1.0, deadline - time.monotonic())))
    finally:
        for process in processes:  # a rank that failed leaves the others waiting in a collective
            if process.poll() is None:
                process.kill()
                process.communicate()
    results = []
    for rank, (process, (stdout, stderr)) in enumerate(zip(processes, outputs, strict=True)):
        assert process.returncode == 0, f"rank {rank} failed ({process.returncode}):\n{stderr[-3000:]}"
        line = [text for text in stdout.splitlines() if text.startswith("RESULT ")][-1]
        results.append(json.loads(line[len("RESULT "):]))
    return results
