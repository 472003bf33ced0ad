"""Loaders under tensor parallelism: shard by a process group or a 1-D DeviceMesh (the data
parallel dimension), so every tensor-parallel rank of a replica reads the same batches."""

from __future__ import annotations

import json

import pytest

from rngstate.distributed import TopologyError, group_rank
from tests.conftest import run_python

TWO_RANKS_ONE_REPLICA = """
import json, os, sys, tempfile
import torch, torch.distributed as dist, torch.multiprocessing as mp

def work(rank, store_dir):
    import rngstate, rngstate.torch
    from torch.distributed.device_mesh import init_device_mesh
    dist.init_process_group("gloo", init_method=f"file://{store_dir}/store", rank=rank, world_size=2)
    mesh = init_device_mesh("cpu", (1, 2), mesh_dim_names=("dp", "tp"))  # 1 replica x 2 TP ranks
    rngstate.seed_everything(0)
    data = torch.arange(8.0)
    by_mesh = rngstate.torch.DataLoader(data, 2, True, name="tp", group=mesh["dp"])
    by_group = rngstate.torch.DataLoader(data, 2, True, name="tp", group=mesh["dp"].get_group())
    by_rank = rngstate.torch.DataLoader(data, 2, True, name="tp")
    sampler = rngstate.ResumableSampler(8, name="tp", group=mesh["tp"])
    result = {
        "mesh": [b.tolist() for b in by_mesh], "group": [b.tolist() for b in by_group],
        "rank": [b.tolist() for b in by_rank], "sampler": [sampler.rank, sampler.world_size],
    }
    with open(f"{store_dir}/{rank}.json", "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()

if __name__ == "__main__":
    store_dir = tempfile.mkdtemp()
    mp.start_processes(work, args=(store_dir,), nprocs=2, start_method="spawn")
    print(json.dumps([json.load(open(f"{store_dir}/{r}.json")) for r in range(2)]))
"""


@pytest.mark.slow
def test_two_tensor_parallel_ranks_read_the_same_batches(tmp_path: object) -> None:
    script = tmp_path / "tp.py"  # type: ignore[operator]
    script.write_text(TWO_RANKS_ONE_REPLICA)
    output = run_python(f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')", timeout=240)
    rank0, rank1 = json.loads(output.strip().splitlines()[-1])
    assert rank0["mesh"] == rank1["mesh"] == rank0["group"] == rank1["group"]
    assert sorted(x for batch in rank0["mesh"] for x in batch) == list(range(8))  # whole epoch
    assert rank0["rank"] != rank1["rank"]  # by global rank they would split the data
    assert (rank0["sampler"], rank1["sampler"]) == ([0, 2], [1, 2])


def test_group_rank_rejects_what_is_not_a_group() -> None:
    with pytest.raises(TopologyError, match="ProcessGroup, a 1-D DeviceMesh"):
        group_rank("dp")
