"""Ranks, per-rank substreams and collective state files.

rngstate runs on the process group the user already has (``torch.distributed``; Paddle's rank
is read too) and falls back to the launcher variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``.
Collective saves move each rank's state as msgpack bytes in uint8 tensors, never through
``gather_object`` (which pickles).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

from rngstate import _check
from rngstate.derive import is_rank_part
from rngstate.errors import GroupError as GroupError  # re-exported: raised by group_rank
from rngstate.errors import RNGStateError, StateFileError
from rngstate.errors import TopologyError as TopologyError  # re-exported: it lived here before

logger = logging.getLogger(__name__)
RANK_PREFIX = "#rank"  # path component of per-rank substreams; user names cannot start with "#"


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in the job, and who said so."""

    rank: int
    world_size: int
    local_rank: int
    source: str  # "torch.distributed", "paddle.distributed", "environment" or "single process"


def _environment_int(names: tuple[str, ...], default: int) -> int:
    """The first of ``names`` set, read strictly: plain ASCII decimal digits (surrounding
    spaces allowed), as launchers write them.  ``int()`` would also take "+1", "1_0" and
    Arabic-Indic digits, which other tools (and the launcher) read differently or not at all."""
    for name in names:
        text = os.environ.get(name)
        if text is not None:
            digits = text.strip(" \t\r\n")
            if not (digits.isascii() and digits.isdigit() and len(digits) <= 9):
                raise TopologyError(
                    f"{name}={text!r} is not a rank or process count: it must be a non-negative "
                    "integer in plain decimal digits (0-9), as torchrun and paddle.distributed "
                    "write it; fix the launcher's environment"
                )
            return int(digits)
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
        from rngstate.backends import torch_distributed

        group = torch_distributed.process_group()
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
    """True for the components ``rng_scope(..., per_rank=...)`` adds (``"#rank3"``, ``"#tp.1of2"``)."""
    return is_rank_part(part)


_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def group_rank(group: Any) -> tuple[int, int]:
    """(rank of this process within ``group``, size of ``group``).

    ``group`` is a ``torch.distributed`` ``ProcessGroup``, a 1-D ``DeviceMesh``, or a pair
    ``(mesh, dim)`` naming one dimension of a mesh (``(mesh, "tp")``, or its index).  On a 2x2
    ``("dp", "tp")`` mesh, global ranks 0..3 are ``(0, 2), (1, 2), (0, 2), (1, 2)`` in ``"tp"``.

    >>> group_rank(None)
    Traceback (most recent call last):
    ...
    rngstate.errors.GroupError: ...
    """
    return _group(group)[:2]


def group_component(group: Any) -> str:
    """The path component ``rng_scope(..., per_rank=group)`` adds: ``"#tp.1of2"`` for the
    mesh dimension ``"tp"``, ``"#group.1of2"`` for a ProcessGroup or an unnamed 1-D mesh.

    The group size is part of it so that another parallel layout re-derives the substream.
    """
    rank, size, label = _group(group)
    if not _LABEL.match(label):
        raise GroupError(
            f"mesh dimension name {label!r} cannot name a substream; use letters, digits and '_'"
        )
    return f"#{label}.{rank}of{size}"


def _group(group: Any) -> tuple[int, int, str]:
    from rngstate.backends import torch_distributed

    mesh, dim = group if isinstance(group, tuple) and len(group) == 2 else (group, None)
    kind = torch_distributed.group_kind(mesh) if "torch" in sys.modules else None
    if kind == "non-member":
        raise TopologyError(
            f"global rank {rank_info().rank} is not a member of the process group (new_group gave it "
            "GroupMember.NON_GROUP_MEMBER); enter per-group scopes only on the group's members"
        )
    if kind is None or (kind == "group" and dim is not None):
        raise GroupError(
            "expected a torch.distributed ProcessGroup, a 1-D DeviceMesh or (mesh, dimension name), "
            f"got {type(group).__name__} {group!r:.80}"
        )
    if kind == "group":
        rank, size = torch_distributed.rank_in_group(mesh)
        label = "group"
    else:
        names = tuple(mesh.mesh_dim_names or ())
        if dim is None:
            if mesh.ndim != 1:
                raise GroupError(
                    f"a {mesh.ndim}-D DeviceMesh has no single rank; pass (mesh, name) with one of "
                    f"its dimensions {names or tuple(range(mesh.ndim))}"
                )
            dim = 0
        if isinstance(dim, str) and dim in names:
            index = names.index(dim)
        elif isinstance(dim, int) and not isinstance(dim, bool) and 0 <= dim < mesh.ndim:
            index = dim
        else:
            raise GroupError(
                f"the DeviceMesh has no dimension {dim!r}; its dimensions are "
                f"{names or tuple(range(mesh.ndim))}"
            )
        if mesh.get_coordinate() is None:
            raise TopologyError(
                f"global rank {rank_info().rank} is not part of the DeviceMesh {mesh!r:.120}"
            )
        rank, size = int(mesh.get_local_rank(index)), int(mesh.size(index))
        label = names[index] if names else "group"
    if not 0 <= rank < size:
        raise TopologyError(
            f"global rank {rank_info().rank} is not a member of the process group {group!r:.80}; "
            "enter per-group scopes only on the group's members"
        )
    return rank, size, label


def reshard_state(data: Any, world_size: int, rank: int) -> Any:
    """A plain state for ``rank`` of ``world_size``: per-rank and per-group substreams and
    generators are dropped, so they re-derive for the new layout; the rest is kept."""
    try:
        _check.mapping(data, "state")
        substreams = _check.mapping(data.get("substreams"), "state.substreams")
        generators = _check.mapping(data.get("generators"), "state.generators")
        metadata = _check.mapping(data.get("metadata"), "state.metadata")
    except RNGStateError as exc:
        raise StateFileError(f"cannot reshard: {exc}") from None
    keep = {p: s for p, s in substreams.items() if not any(map(is_rank_component, p.split("/")))}
    gens = {k: g for k, g in generators.items() if not any(map(is_rank_component, k.split("/")))}
    return {**data, "substreams": keep, "generators": gens,
            "metadata": {**metadata, "world_size": world_size, "rank": rank}}


__all__ = ["RankInfo", "group_rank", "rank_info"]
