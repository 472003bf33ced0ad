"""Run a snippet on N gloo ranks (subprocesses on 127.0.0.1); collect each rank's JSON ``out``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import textwrap
import time
from typing import Any

from tests.conftest import PRELOAD_TORCH, ROOT, python_command

PRELUDE = """
import json, os, sys, torch, torch.distributed as dist, rngstate
import torch.distributed.checkpoint as dcp
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
args = sys.argv[1:]
out = {}
"""
EPILOGUE = """
print("RESULT " + json.dumps(out), flush=True)
dist.barrier()
dist.destroy_process_group()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_ranks(world_size: int, body: str, *args: str, timeout: float = 90) -> list[dict[str, Any]]:
    """Run PRELUDE + ``body`` on ``world_size`` ranks; every process is ended by ``timeout``."""
    code = textwrap.dedent(PRELUDE) + textwrap.dedent(body) + textwrap.dedent(EPILOGUE)
    port = str(free_port())
    processes = []
    for rank in range(world_size):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
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
