"""Ranks, per-rank substreams and collective state files.

rngstate runs on the process group the user already has (``torch.distributed``; Paddle's rank
is read too) and falls back to the launcher variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``.
Collective saves move each rank's state as msgpack bytes in uint8 tensors, never through
``gather_object`` (which pickles).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

from rngstate.errors import RNGStateError

logger = logging.getLogger(__name__)
RANK_PREFIX = "#rank"  # path component of per-rank substreams; user names cannot start with "#"


class TopologyError(RNGStateError):
    """The state was saved with another world size or rank than the live job has."""


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in the job, and who said so."""

    rank: int
    world_size: int
    local_rank: int
    source: str  # "torch.distributed", "paddle.distributed", "environment" or "single process"


def _environment_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        text = os.environ.get(name)
        if text is not None:
            try:
                return int(text)
            except ValueError:
                raise TopologyError(f"{name}={text!r} is not an integer") from None
    return default


def _paddle_group() -> tuple[int, int] | None:
    paddle = sys.modules.get("paddle")
    distributed = getattr(paddle, "distributed", None) if paddle is not None else None
    if distributed is None or not getattr(distributed, "is_initialized", lambda: False)():
        return None
    return int(distributed.get_rank()), int(distributed.get_world_size())


def rank_info() -> RankInfo:
    """Rank and world size from an initialized process group, else the launcher's variables.

    >>> rank_info().world_size >= 1
    True
    """
    local_rank = _environment_int(("LOCAL_RANK",), 0)
    if "torch" in sys.modules:
        from rngstate.backends import torch as torch_backend

        group = torch_backend.process_group()
        if group is not None:
            return RankInfo(group[0], group[1], local_rank, "torch.distributed")
    group = _paddle_group()
    if group is not None:
        return RankInfo(group[0], group[1], local_rank, "paddle.distributed")
    world_size = _environment_int(("WORLD_SIZE", "PADDLE_TRAINERS_NUM"), 0)
    if world_size:
        rank = _environment_int(("RANK", "PADDLE_TRAINER_ID"), 0)
        if not 0 <= rank < world_size:
            raise TopologyError(f"RANK={rank} is outside [0, WORLD_SIZE={world_size})")
        return RankInfo(rank, world_size, local_rank, "environment")
    return RankInfo(0, 1, 0, "single process")


def rank_component() -> str:
    """The path component that makes a scope per-rank (``"#rank3"``)."""
    return f"{RANK_PREFIX}{rank_info().rank}"


def is_rank_component(part: str) -> bool:
    """True for the component ``rng_scope(..., per_rank=True)`` adds."""
    return part.startswith(RANK_PREFIX) and part[len(RANK_PREFIX) :].isdigit()


def group_rank(group: Any) -> tuple[int, int]:
    """(rank within ``group``, size of ``group``) for a ``torch.distributed`` ProcessGroup or a
    1-D DeviceMesh (``mesh["dp"]``): what a loader shards by under tensor parallelism.

    >>> import rngstate.distributed
    >>> rngstate.distributed.group_rank(None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    rngstate.distributed.TopologyError: group_rank: expected a torch.distributed ProcessGroup ...
    """
    torch_dist = sys.modules.get("torch.distributed")
    mesh_module = sys.modules.get("torch.distributed.device_mesh")
    mesh_type = getattr(mesh_module, "DeviceMesh", None)
    if mesh_type is not None and isinstance(group, mesh_type):
        if group.ndim != 1:
            raise TopologyError(
                f"group_rank: the DeviceMesh has {group.ndim} dimensions; pass one, e.g. mesh['dp']"
            )
        group = group.get_group()
    process_group = getattr(torch_dist, "ProcessGroup", None)
    if process_group is None or not isinstance(group, process_group):
        raise TopologyError(
            "group_rank: expected a torch.distributed ProcessGroup or a 1-D DeviceMesh, "
            f"got {type(group).__name__ if group is not None else None}"
        )
    assert torch_dist is not None
    rank, size = int(torch_dist.get_rank(group)), int(torch_dist.get_world_size(group))
    if rank < 0:
        raise TopologyError("group_rank: this process is not a member of the group")
    return rank, size
