"""rng_scope(per_rank=group) on a 2x2 (dp x tp) DeviceMesh of 4 gloo processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.distributed.ranks import run_ranks

BODY = """
from torch.distributed.device_mesh import init_device_mesh
mode, path = args
mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
rngstate.seed_everything(9)
def draws():
    with rngstate.rng_scope("dropout", per_rank=(mesh, "tp")):
        tp = torch.rand(3).tolist()
    with rngstate.rng_scope("replica", per_rank=mesh["dp"]):
        dp = torch.rand(2).tolist()
    with rngstate.rng_scope("group", per_rank=mesh.get_group("tp")):  # a plain ProcessGroup
        group = torch.rand(2).tolist()
    return {"tp": tp, "dp": dp, "group": group}
if mode == "save":
    out["first"] = draws()
    dcp.save({"rng": rngstate.stateful()}, checkpoint_id=path + "/dcp")
    rngstate.save(path + "/rng.state", sharded=True)
    out["after"] = [draws() for _ in range(2)]
    out["paths"] = sorted(p for p in rngstate.capture().substreams)
else:
    draws()
    rngstate.restore(rngstate.load(path + "/rng.state"))
    out["file"] = [draws() for _ in range(2)]
    dcp.load({"rng": rngstate.stateful()}, checkpoint_id=path + "/dcp")
    out["dcp"] = [draws() for _ in range(2)]
"""


@pytest.mark.slow
def test_tp_substreams_differ_within_tp_and_match_across_dp(tmp_path: Path) -> None:
    saved = run_ranks(4, BODY, "save", str(tmp_path))
    first = [r["first"] for r in saved]  # global rank r sits at (dp, tp) = (r // 2, r % 2)
    assert first[0]["tp"] == first[2]["tp"] != first[1]["tp"] == first[3]["tp"]
    assert first[0]["group"] == first[2]["group"] != first[1]["group"]
    assert first[0]["dp"] == first[1]["dp"] != first[2]["dp"] == first[3]["dp"]
    assert first[0]["tp"] != first[0]["group"]
    assert saved[1]["paths"] == ["dropout/#tp.1of2", "group/#group.1of2", "replica/#dp.0of2"]
    assert saved[2]["paths"] == ["dropout/#tp.0of2", "group/#group.0of2", "replica/#dp.1of2"]
    loaded = run_ranks(4, BODY, "load", str(tmp_path))
    for before, after in zip(saved, loaded, strict=True):
        assert after["file"] == before["after"] and after["dcp"] == before["after"]


ERRORS = """
from torch.distributed.device_mesh import init_device_mesh
from rngstate.distributed import GroupError, TopologyError, group_rank
rngstate.seed_everything(1)
def error(group):
    try:
        with rngstate.rng_scope("x", per_rank=group) as scope:
            return scope.path
    except (GroupError, TopologyError) as exc:
        return f"{type(exc).__name__}: {exc}"
mesh = init_device_mesh("cpu", (2,), mesh_dim_names=("tp-x",))
only_rank_0 = dist.new_group([0])
out["world"] = group_rank(dist.group.WORLD)
out["index"] = group_rank((mesh, 0))
out["bad_name"] = error(mesh)
out["no_dim"] = error((mesh, "pp"))
out["member"] = error(only_rank_0)
"""


@pytest.mark.slow
def test_group_errors_on_two_ranks() -> None:
    results = run_ranks(2, ERRORS, "-", "-")
    for rank, result in enumerate(results):
        assert result["world"] == result["index"] == [rank, 2]
        assert result["bad_name"].startswith("GroupError: mesh dimension name 'tp-x' cannot name a substream")
        assert result["no_dim"].startswith("GroupError: the DeviceMesh has no dimension 'pp'")
    assert results[0]["member"] == "x/#group.0of1"
    assert results[1]["member"].startswith("TopologyError: global rank 1 is not a member of the process")
