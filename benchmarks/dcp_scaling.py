"""How ``rngstate.stateful()`` in ``torch.distributed.checkpoint`` (DCP) grows with world size.

    python benchmarks/dcp_scaling.py

Part 1 runs real gloo process groups of 2, 4 and 8 ranks on this machine.  Each rank holds the
same kind of state as ``benchmarks/distributed_scaling.py`` (python, numpy, torch and 10
substreams) and times ``dcp.save`` / ``dcp.load`` of ``{"rng": rngstate.stateful()}``, next to the
peer measured in the same processes: ``rngstate.save(path, sharded=True)`` / ``rngstate.load``.
Bytes per rank are the sizes of the files DCP wrote.  Part 2 runs what DCP's coordinator does
alone for 10 to 10,000 ranks (de-duplicate and merge the ranks' save plans, write the
``.metadata`` file through DCP's own writer) and what every rank does on load (read that
metadata), with the exact plans ``stateful()`` produces, to extrapolate where the processes
cannot be run; next to it, the peers' rank-0 work in the same run: the single collective file
(pack, write, fsync every rank's state) and the index of a sharded save.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

WORKER = """
import json, os, sys, time, torch, torch.distributed as dist, rngstate
import torch.distributed.checkpoint as dcp
dist.init_process_group("gloo")
rank = dist.get_rank()
directory = sys.argv[1]
rngstate.seed_everything(0)
for i in range(10):
    with rngstate.rng_scope(f"layer{i}"):
        torch.nn.Linear(8, 8)
def timed(action):
    action()  # warm-up
    dist.barrier()
    start = time.perf_counter()
    for _ in range(5):
        action()
    dist.barrier()
    return (time.perf_counter() - start) / 5
checkpoint, path = directory + "/dcp", directory + "/rng.state"
times = {
    "dcp_save": timed(lambda: dcp.save({"rng": rngstate.stateful()}, checkpoint_id=checkpoint)),
    "dcp_load": timed(lambda: dcp.load({"rng": rngstate.stateful()}, checkpoint_id=checkpoint)),
    "sharded_save": timed(lambda: rngstate.save(path, sharded=True)),
    "sharded_load": timed(lambda: rngstate.restore(rngstate.load(path))),
}
times["entry"] = len(rngstate.stateful().state_dict()[f"rank{rank}"])  # rngstate's own bytes
print(json.dumps(times), flush=True)
dist.barrier()
dist.destroy_process_group()
"""


def run_world(world_size: int, directory: Path) -> dict[str, float]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": str(world_size),
           "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(WORKER), str(directory)], text=True,
                         env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}, stdout=subprocess.PIPE)
        for rank in range(world_size)
    ]
    try:
        results = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    # The slowest rank is the save's time: every rank waits for it in the final collective.
    return {key: max(result[key] for result in results) for key in results[0]}


def coordinator(world_size: int, directory: Path, entry_bytes: int) -> tuple[float, int, float]:
    """(seconds to plan and write metadata, metadata bytes, seconds to read it) for ``world_size``."""
    from torch.distributed.checkpoint._dedup_save_plans import dedup_save_plans
    from torch.distributed.checkpoint.default_planner import create_default_global_save_plan
    from torch.distributed.checkpoint.filesystem import FileSystemReader, FileSystemWriter, _StorageInfo
    from torch.distributed.checkpoint.metadata import MetadataIndex
    from torch.distributed.checkpoint.planner import SavePlan, WriteItem, WriteItemType
    from torch.distributed.checkpoint.storage import WriteResult

    def item(key: str) -> WriteItem:
        return WriteItem(index=MetadataIndex(key), type=WriteItemType.BYTE_IO)

    # What each rank's stateful().state_dict() turns into: two keys shared by all, one of its own.
    plans = [SavePlan([item("rng.rngstate"), item("rng.world_size"), item(f"rng.rank{r}")])
             for r in range(world_size)]
    start = time.perf_counter()
    global_plans, metadata = create_default_global_save_plan(dedup_save_plans(plans))
    results = [[WriteResult(index=i.index, size_in_bytes=entry_bytes,
                            storage_data=_StorageInfo(f"__{r}_0.distcp", 0, entry_bytes)) for i in plan.items]
               for r, plan in enumerate(global_plans)]
    target = directory / f"coordinator{world_size}"
    writer = FileSystemWriter(str(target))
    writer.set_up_storage_writer(True)
    target.mkdir()
    writer.finish(metadata, results)
    planned = time.perf_counter() - start
    size = (target / ".metadata").stat().st_size
    start = time.perf_counter()
    read = FileSystemReader(str(target)).read_metadata()
    assert len(read.state_dict_metadata) == world_size + 2
    return planned, size, time.perf_counter() - start


def one_rank_blob() -> bytes:
    """One rank's state file: python, numpy, torch and 10 substreams, as in Part 1."""
    import torch

    import rngstate
    from rngstate import fileformat

    rngstate.seed_everything(0)
    for i in range(10):
        with rngstate.rng_scope(f"layer{i}"):
            torch.nn.Linear(8, 8)
    return fileformat.pack(rngstate.capture().to_dict())


def rngstate_files(world_size: int, directory: Path, blob: bytes) -> tuple[float, int, float]:
    """(rank 0's single-file save, its size, rank 0's sharded index save) for ``world_size``."""
    from rngstate import fileformat

    start = time.perf_counter()
    data = {"rngstate_collective": 1, "world_size": world_size, "ranks": [blob] * world_size}
    fileformat.write_atomic(directory / "single.state", *fileformat.pack_parts(data))
    single = time.perf_counter() - start
    size = (directory / "single.state").stat().st_size
    (directory / "single.state").unlink()
    names = [f"i.state.rank{r:05d}-of-{world_size:05d}" for r in range(world_size)]
    shards = [{"file": name, "digest": bytes(32)} for name in names]
    start = time.perf_counter()
    index = {"rngstate_collective": 1, "world_size": world_size, "shards": shards}
    fileformat.write_atomic(directory / "i.state", *fileformat.pack_parts(index))
    return single, size, time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        print("Part 1: gloo on this machine, seconds per call (slowest rank); DCP vs rngstate sharded files")
        print("| ranks | DCP save | sharded save | ratio | DCP load | sharded load | ratio | state entry "
              "| DCP data file per rank | .metadata |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        entry = 0
        for world_size in (2, 4, 8):
            run = directory / f"w{world_size}"
            run.mkdir()
            t = run_world(world_size, run)
            files = sorted((run / "dcp").iterdir())
            data = [f.stat().st_size for f in files if f.suffix == ".distcp"]
            assert len(data) == world_size
            entry = int(statistics.mean(data))
            metadata = (run / "dcp" / ".metadata").stat().st_size
            print(f"| {world_size} | {t['dcp_save']:.4f} s | {t['sharded_save']:.4f} s "
                  f"| {t['dcp_save'] / t['sharded_save']:.1f}x | {t['dcp_load']:.4f} s "
                  f"| {t['sharded_load']:.4f} s | {t['dcp_load'] / t['sharded_load']:.1f}x "
                  f"| {int(t['entry']):,} B | {min(data):,}-{max(data):,} B | {metadata:,} B |")
        print(f"\nPart 2: rank 0 alone (plans of stateful(), {entry:,}-byte entries) vs rngstate's files")
        print("| ranks | DCP plan + write .metadata | .metadata size | read .metadata (every rank, on load) "
              "| single file pack+write+fsync | single file size | sharded index write |")
        print("|---|---|---|---|---|---|---|")
        blob = one_rank_blob()
        for world_size in (10, 100, 1000, 10000):
            planned, size, read = coordinator(world_size, directory, entry)
            single, single_size, index = rngstate_files(world_size, directory, blob)
            print(f"| {world_size:,} | {planned:.3f} s | {size / 1e3:,.1f} KB | {read:.3f} s "
                  f"| {single:.3f} s | {single_size / 1e6:,.1f} MB | {index:.4f} s |")


if __name__ == "__main__":
    main()
