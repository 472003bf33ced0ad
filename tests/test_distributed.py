"""Ranks, per-rank scopes and collective files with torch.distributed (gloo, CPU processes)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

import rngstate
from rngstate.derive import split_path
from rngstate.distributed import GroupError, RankInfo, group_rank, is_rank_component, rank_info, reshard_state
from rngstate.errors import RNGStateWarning, ScopeError, TopologyError
from tests.conftest import PRELOAD_TORCH, ROOT, python_command
from tests.distributed.ranks import rendezvous_file

PRELUDE = """
import json, os, sys, torch, torch.distributed as dist, rngstate
from rngstate.distributed import rank_info
from rngstate.errors import TopologyError
dist.init_process_group("gloo", init_method=os.environ["RNGSTATE_TEST_STORE"],
                        rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
rank, world = dist.get_rank(), dist.get_world_size()
path = sys.argv[1]
mode = sys.argv[2]
out = {}
def model():
    with rngstate.rng_scope("model"):
        return torch.nn.Linear(4, 4)
def step(net):
    with rngstate.rng_scope("dropout", per_rank=True):
        mask = torch.rand(4)
    return (net.weight.sum() * mask.sum() + torch.rand(1)).item()
"""


def run_ranks(world_size: int, body: str, *args: str) -> list[dict[str, object]]:
    """Run PRELUDE + body on ``world_size`` gloo ranks; return each rank's printed JSON."""
    store = rendezvous_file()
    code = (textwrap.dedent(PRELUDE) + textwrap.dedent(body)
            + "\nprint(json.dumps(out), flush=True)\ndist.barrier()\ndist.destroy_process_group()\n")
    processes = []
    for rank in range(world_size):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RNGSTATE_TEST_STORE": store,
               "RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank)}
        env.pop("RNGSTATE_SEED", None)
        command = python_command("-c", code, *args, env=env, preload=PRELOAD_TORCH)
        processes.append(subprocess.Popen(command, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=240)
        assert process.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    return results


SCOPES = """
rngstate.seed_everything(7)
net = model()
out["init"] = net.weight.flatten().tolist()
out["steps"] = [step(net) for _ in range(3)]
info = rank_info()
out["info"] = [info.rank, info.world_size, info.source]
"""


@pytest.mark.slow
def test_shared_init_and_per_rank_streams() -> None:
    first = run_ranks(3, SCOPES, "-", "-")
    assert [r["info"] for r in first] == [[i, 3, "torch.distributed"] for i in range(3)]
    assert first[0]["init"] == first[1]["init"] == first[2]["init"]  # no broadcast needed
    assert len({json.dumps(r["steps"]) for r in first}) == 3  # per-rank dropout differs
    assert [r["steps"] for r in run_ranks(3, SCOPES, "-", "-")] == [r["steps"] for r in first]


RESUME = """
rngstate.seed_everything(11)
net = model()
if mode == "resume":
    rngstate.restore(rngstate.load(path))
else:
    for _ in range(2):
        step(net)
    rngstate.save(path, sharded=(mode == "sharded"))
out["after"] = [step(net) for _ in range(3)]
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["single", "sharded"])
def test_collective_save_kill_and_restore(tmp_path: Path, mode: str) -> None:
    path = str(tmp_path / "rng.state")
    uninterrupted = run_ranks(2, RESUME, path, mode)
    resumed = run_ranks(2, RESUME, path, "resume")  # new processes: the first ones have exited
    assert [r["after"] for r in resumed] == [r["after"] for r in uninterrupted]
    assert uninterrupted[0]["after"] != uninterrupted[1]["after"]
    files = sorted(os.listdir(tmp_path))
    shards = [f"rng.state.rank{r:05d}-of-00002" for r in range(2)]
    expected = ["rng.state"] + (shards if mode == "sharded" else [])
    assert files == expected
    state = rngstate.load(path, rank=1)
    assert state.metadata["rank"] == 1 and state.metadata["world_size"] == 2


RESHARD = """
rngstate.seed_everything(11)
net = model()
if mode == "strict":
    try:
        rngstate.restore(rngstate.load(path))
        out["error"] = None
    except TopologyError as exc:
        out["error"] = str(exc)
else:
    rngstate.restore(rngstate.load(path, reshard=True))
    out["after"] = [step(net) for _ in range(2)]
    with rngstate.rng_scope("dropout", per_rank=True):
        out["fresh"] = torch.rand(2).tolist()
"""


@pytest.mark.slow
def test_world_size_change(tmp_path: Path) -> None:
    path = str(tmp_path / "rng.state")
    run_ranks(3, RESUME, path, "single")
    strict = run_ranks(2, RESHARD, path, "strict")
    assert all("of 3" in r["error"] for r in strict)  # type: ignore[operator]
    assert all("reshard=True" in r["error"] for r in strict)  # type: ignore[operator]
    resharded = run_ranks(2, RESHARD, path, "reshard")
    assert resharded[0]["after"] != resharded[1]["after"]
    # The per-rank substream restarted from its derivation for the new rank.
    reference = run_ranks(2, """
rngstate.seed_everything(11)
with rngstate.rng_scope("dropout", per_rank=True):
    torch.rand(4); torch.rand(4)
    out["fresh"] = torch.rand(2).tolist()
""", "-", "-")
    assert [r["fresh"] for r in resharded] == [r["fresh"] for r in reference]


def test_rank_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert rank_info() == RankInfo(2, 4, 0, "environment")
    monkeypatch.setenv("RANK", "9")
    with pytest.raises(TopologyError, match="outside"):
        rank_info()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(TopologyError, match="not a rank"):
        rank_info()


@pytest.mark.parametrize("name", ["RANK", "WORLD_SIZE", "LOCAL_RANK"])
@pytest.mark.parametrize("text", ["+1", "1_0", "\u0661", "-0", "1.0", "", "12345678901"])
def test_launcher_variables_are_read_strictly(monkeypatch: pytest.MonkeyPatch, name: str, text: str) -> None:
    # Issue 25: int() took "+1", "1_0" and Arabic-Indic digits.
    monkeypatch.setenv("WORLD_SIZE", "16")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv(name, text)
    with pytest.raises(TopologyError, match=f"{name}=.* plain decimal digits"):
        rank_info()
    monkeypatch.setenv(name, " 3\n")  # what a shell may leave around is fine
    assert getattr(rank_info(), name.lower()) == 3


def test_per_rank_scope_uses_environment_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    rngstate.seed_everything(1)
    values = []
    for rank in ("0", "1", "0"):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", rank)
        rngstate.seed_everything(1)
        with rngstate.rng_scope("noise", per_rank=True) as scope:
            values.append(rngstate.derive_seed(scope.path))
            assert scope.path == f"noise/#rank{rank}"
    assert values[0] == values[2] != values[1]


def test_reserved_names() -> None:
    with pytest.raises(ScopeError, match="reserved"):
        rngstate.rng_scope("#private")


def test_restore_on_another_rank_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    rngstate.seed_everything(1)
    state = rngstate.capture()
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(TopologyError, match="rank 0 of 2"):
        rngstate.restore(state)
    with pytest.warns(RNGStateWarning, match="rank 0 of 2"):
        rngstate.restore(state, strict=False)


def torchrun(tmp_path: Path, *args: str) -> list[str]:
    # OMP_NUM_THREADS=1: what torchrun gives its workers anyway (here set for the launcher too).
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("RNGSTATE_SEED", None)
    command = python_command("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             str(ROOT / "examples" / "distributed_torchrun.py"),
                             "--checkpoint", str(tmp_path / "ckpt"), *args, env=env, preload=PRELOAD_TORCH)
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    # Both ranks share one stdout pipe, so lines may interleave: pick the messages out.
    return sorted(re.findall(r"rank \d: (?:saved after step \d+|final weights [0-9a-f]{16}|samples [0-9,]+)",
                             result.stdout))


@pytest.mark.slow
def test_ddp_loader_stopped_mid_epoch_and_resumed_under_torchrun(tmp_path: Path) -> None:
    lines = torchrun(tmp_path)
    uninterrupted = [line for line in lines if "final weights" in line]
    samples = [[int(i) for i in line.split()[-1].split(",")] for line in lines if "samples" in line]
    # Each epoch (20 samples per rank) the two ranks load disjoint halves of the 40 samples.
    for epoch in range(2):
        shards = [set(seen[epoch * 20:(epoch + 1) * 20]) for seen in samples]
        assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == set(range(40))
    assert samples[0][:20] != samples[0][20:]  # the order changes with the epoch
    # Step 7 is the third of the five batches of epoch 1: stopped mid-epoch, workers running.
    saved = torchrun(tmp_path, "--stop-at", "7")
    assert saved == ["rank 0: saved after step 7", "rank 1: saved after step 7"]
    resumed = [line for line in torchrun(tmp_path, "--resume", "--workers", "0") if "final weights" in line]
    assert resumed == uninterrupted
    assert len(set(line.split()[-1] for line in uninterrupted)) == 1  # DDP keeps ranks in sync


def test_per_rank_takes_a_group_not_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    rngstate.seed_everything(1)
    scope = rngstate.rng_scope("noise", per_rank="tp")
    with pytest.raises(GroupError, match="ProcessGroup, a 1-D DeviceMesh or .mesh, dimension name."):
        scope.__enter__()
    assert isinstance(GroupError("x"), TypeError)
    with pytest.raises(GroupError):
        group_rank(("mesh", "tp"))
    with rngstate.rng_scope("noise", per_rank=None) as plain:  # None, like False: not per rank
        assert plain.path == "noise"


def test_group_components_are_reserved_and_reshard_drops_them() -> None:
    assert split_path("dropout/#tp.1of2") == ("dropout", "#tp.1of2")
    assert all(map(is_rank_component, ["#rank3", "#tp.1of2", "#group.0of8", "#dp_shard.3of4"]))
    for bad in ["#tp1of2", "#tp.1", "#.1of2", "#tp.1of2x", "#rank"]:
        assert not is_rank_component(bad)
        with pytest.raises(ScopeError, match="reserved"):
            rngstate.rng_scope(f"a/{bad}")
    rngstate.seed_everything(1)
    for name in ("shared", "dropout/#tp.1of2", "noise/#rank1"):
        with rngstate.rng_scope(name):
            pass
    data = reshard_state(rngstate.capture().to_dict(), 4, 2)
    assert list(data["substreams"]) == ["shared"]
    assert (data["metadata"]["world_size"], data["metadata"]["rank"]) == (4, 2)


class FakeGroup:
    def __init__(self, bound: object) -> None:
        self.bound_device_id = bound


def nccl(monkeypatch: pytest.MonkeyPatch, devices: int, current: int, bound: object = None) -> list[object]:
    """The real device choice with only what needs CUDA (and an NCCL group) faked."""
    import torch

    from rngstate.backends import torch_distributed

    calls: list[object] = []
    monkeypatch.setattr(torch.distributed, "get_backend", lambda group=None: "nccl")
    monkeypatch.setattr(torch.distributed.distributed_c10d, "_get_default_group", lambda: FakeGroup(bound))
    monkeypatch.setattr(torch.distributed, "barrier", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: devices)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current)
    calls.append(torch_distributed.collective_device())
    torch_distributed.barrier()
    return calls


def test_nccl_collectives_use_the_local_rank_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setenv("LOCAL_RANK", "2")
    # set_device never called: every rank's current device is cuda:0; the local rank decides.
    assert nccl(monkeypatch, 4, 0) == [torch.device("cuda", 2), {"device_ids": [2]}]
    # The user chose a device, or bound the group to one: that wins.
    assert nccl(monkeypatch, 4, 3) == [torch.device("cuda", 3), {"device_ids": [3]}]
    bound = torch.device("cuda", 1)
    assert nccl(monkeypatch, 4, 0, bound) == [bound, {"device_ids": [1]}]
    # One visible device per process (CUDA_VISIBLE_DEVICES set by the launcher): cuda:0.
    assert nccl(monkeypatch, 1, 0) == [torch.device("cuda", 0), {"device_ids": [0]}]


def test_a_plain_file_loads_only_for_the_rank_and_world_size_that_saved_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 25: a file saved by a 1-process job loaded for rank=5 without a word.
    rngstate.seed_everything(0)
    path = tmp_path / "rng.state"
    rngstate.save(path)  # one process: rank 0 of 1
    assert rngstate.load(path) == rngstate.load(path, rank=0)
    with pytest.raises(TopologyError, match="rank 0 of 1 but is loaded for rank 5 .*reshard=True"):
        rngstate.load(path, rank=5)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(TopologyError, match="rank 0 of 1 but is loaded for rank 2 of 4"):
        rngstate.load(path)
    resharded = rngstate.load(path, reshard=True)
    assert (resharded.metadata["world_size"], resharded.metadata["rank"]) == (4, 2)
    rngstate.save(path)  # rank 2 of 4
    assert rngstate.load(path).metadata["rank"] == 2
    monkeypatch.setenv("WORLD_SIZE", "8")
    with pytest.raises(TopologyError, match="rank 2 of 4 but is loaded for rank 2 of 8"):
        rngstate.load(path)
    monkeypatch.delenv("WORLD_SIZE")
    assert rngstate.load(path).metadata["rank"] == 2  # a single process inspecting it
