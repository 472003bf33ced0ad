"""rngstate.stateful() under torch.distributed.checkpoint on 2 and 4 gloo ranks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.distributed.ranks import run_ranks

pytestmark = pytest.mark.slow

DRAWS = """
import random
rngstate.seed_everything(5)
def draws():
    values = torch.rand(2).tolist() + [random.random()]
    with rngstate.rng_scope("shared"):
        values += torch.rand(2).tolist()
    with rngstate.rng_scope("noise", per_rank=True):
        values += torch.rand(2).tolist()
    return values
with rngstate.rng_scope("noise", per_rank=True):  # what a per-rank substream starts with
    out["fresh_noise"] = torch.rand(2).tolist()
"""

SAVE = DRAWS + """
mode, path = args
for _ in range(rank + 1):  # each rank's streams stand somewhere else: a swap would show
    draws()
if mode == "async":
    future = dcp.async_save({"rng": rngstate.stateful()}, checkpoint_id=path)
    out["after"] = [draws() for _ in range(3)]  # captured at the call, not when written
    future.result()
else:
    dcp.save({"rng": rngstate.stateful()}, checkpoint_id=path)
    out["after"] = [draws() for _ in range(3)]
"""

LOAD = DRAWS + """
mode, path = args
draws()  # wander off: the load must bring the saved state back
if mode == "strict":
    dcp.load({"rng": rngstate.stateful()}, checkpoint_id=path)
    out["after"] = [draws() for _ in range(3)]
else:  # another world size: the strict load fails clearly, reshard=True re-derives
    try:
        dcp.load({"rng": rngstate.stateful()}, checkpoint_id=path)
        out["error"] = None
    except BaseException as exc:  # DCP's CheckpointException is a BaseException
        out["error"] = f"{type(exc).__name__}: {exc}"
    dcp.load({"rng": rngstate.stateful(reshard=True)}, checkpoint_id=path)
    out["after"] = [draws() for _ in range(3)]
"""


def saved_keys(path: Path) -> list[str]:
    from torch.distributed.checkpoint.filesystem import FileSystemReader

    return sorted(FileSystemReader(str(path)).read_metadata().state_dict_metadata)


@pytest.mark.parametrize(("world_size", "mode", "resized"), [(2, "sync", 4), (4, "sync", 2), (2, "async", 0)])
def test_each_rank_continues_exactly(tmp_path: Path, world_size: int, mode: str, resized: int) -> None:
    path = str(tmp_path / "ckpt")
    saved = run_ranks(world_size, SAVE, mode, path)
    # One distinct key per rank: DCP's de-duplication of equal keys cannot drop or merge states.
    assert saved_keys(tmp_path / "ckpt") == sorted(
        ["rng.rngstate", "rng.world_size"] + [f"rng.rank{r}" for r in range(world_size)]
    )
    loaded = run_ranks(world_size, LOAD, "strict", path)
    assert [r["after"] for r in loaded] == [r["after"] for r in saved]
    assert len({str(r["after"]) for r in saved}) == world_size  # every rank had its own state
    if resized:  # the same checkpoint under another world size
        check_resized(saved, run_ranks(resized, LOAD, "resize", path))


def check_resized(saved: list[dict[str, Any]], resized: list[dict[str, Any]]) -> None:
    for result in resized:
        if len(resized) > len(saved):  # DCP itself refuses: the new ranks have no key in the checkpoint
            assert "CheckpointException" in result["error"] and f"rng.rank{len(saved)}" in result["error"]
        else:
            assert result["error"].startswith(f"TopologyError: the RNG state was saved by {len(saved)} ranks")
            assert "reshard=True" in result["error"]
        # reshard=True: global streams and the shared substream continue from rank 0's entry,
        # the per-rank substream restarts from its derivation for the new rank.
        for step, (mine, reference) in enumerate(zip(result["after"], saved[0]["after"], strict=True)):
            assert mine[:5] == reference[:5]
            if step == 0:
                assert mine[5:] == result["fresh_noise"]
    assert len({str(r["fresh_noise"]) for r in resized}) == len(resized)
