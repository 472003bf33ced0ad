"""How collective state files and save time grow with world size.

    python benchmarks/distributed_scaling.py

Part 1 runs real gloo process groups of 2-4 ranks on this machine and times a collective
``rngstate.save`` (single file and sharded).  Part 2 times what rank 0 alone does for 10 to
10,000 ranks (pack the gathered per-rank bytes, write, fsync) with copies of a real per-rank
state, and the index of a sharded save, to extrapolate where the gather itself cannot be run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

import rngstate
from rngstate import fileformat

WORKER = """
import json, sys, time, torch, torch.distributed as dist, rngstate
dist.init_process_group("gloo")
rngstate.seed_everything(0)
for i in range(10):
    with rngstate.rng_scope(f"layer{i}"):
        torch.nn.Linear(8, 8)
times = {}
for sharded in (False, True):
    rngstate.save(sys.argv[1], sharded=sharded)          # warm-up
    dist.barrier(); start = time.perf_counter()
    for _ in range(5):
        rngstate.save(sys.argv[1], sharded=sharded)
    times["sharded" if sharded else "single"] = (time.perf_counter() - start) / 5
print(json.dumps(times))
"""


def gloo_save_times(world_size: int, directory: Path) -> dict[str, float]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WORKER), str(directory / f"w{world_size}.state")],
            env={**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(rank),
                 "WORLD_SIZE": str(world_size)},
            stdout=subprocess.PIPE, text=True)
        for rank in range(world_size)
    ]
    results = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in processes]
    return results[0]


def one_rank_blob() -> bytes:
    rngstate.seed_everything(0)
    for i in range(10):
        with rngstate.rng_scope(f"layer{i}"):
            torch.nn.Linear(8, 8)
    return b"".join(fileformat.pack_parts(rngstate.capture().to_dict()))


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        print("Part 1: collective save with gloo on this machine (seconds per save, rank 0)")
        print("| ranks | single file | sharded |\n|---|---|---|")
        for world_size in (2, 3, 4):
            times = gloo_save_times(world_size, directory)
            print(f"| {world_size} | {times['single']:.4f} | {times['sharded']:.4f} |")
        blob = one_rank_blob()
        print(f"\nPart 2: rank 0's own work, per-rank state {len(blob):,} bytes "
              "(python, numpy, torch + 10 substreams)")
        print("| ranks | single file size | pack+write+fsync | sharded index size | index write |")
        print("|---|---|---|---|---|")
        for world_size in (10, 100, 1000, 10000):
            data = {"rngstate_collective": 1, "world_size": world_size, "ranks": [blob] * world_size}
            start = time.perf_counter()
            fileformat.write_atomic(directory / "c.state", *fileformat.pack_parts(data))
            single = time.perf_counter() - start
            size = (directory / "c.state").stat().st_size
            shards = [{"file": f"c.state.rank{r:05d}-of-{world_size:05d}", "digest": bytes(32)}
                      for r in range(world_size)]
            start = time.perf_counter()
            fileformat.write_atomic(directory / "i.state", *fileformat.pack_parts(
                {"rngstate_collective": 1, "world_size": world_size, "shards": shards}))
            index = time.perf_counter() - start
            index_size = (directory / "i.state").stat().st_size
            print(f"| {world_size:,} | {size / 1e6:,.1f} MB | {single:.3f} s | {index_size / 1e3:,.1f} KB "
                  f"| {index:.4f} s |")


if __name__ == "__main__":
    main()
