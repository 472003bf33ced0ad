"""``save`` and ``load``: RNGState <-> the msgpack state file, collective under a process group.

Under an initialized ``torch.distributed`` group with more than one rank, ``save`` is
collective: each rank's complete state file travels to rank 0 as bytes in a uint8 tensor and
rank 0 writes one file ``{"rngstate_collective": 1, "world_size": N, "ranks": [file bytes...]}``
atomically while the others wait.  ``sharded=True`` instead writes one file per rank next to
``path`` and an index at ``path`` (``"shards": [{"file", "digest"}]``), so no rank holds every
rank's state.  ``load`` on each rank picks that rank's entry.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from rngstate import _check, fileformat
from rngstate.distributed import TopologyError, rank_info, reshard_state
from rngstate.errors import InvalidStateError, StateFileError
from rngstate.snapshot import capture
from rngstate.state import RNGState

COLLECTIVE = "rngstate_collective"


def _group() -> tuple[int, int] | None:
    from rngstate.backends import torch_distributed

    group = torch_distributed.process_group() if "torch" in sys.modules else None
    return group if group is not None and group[1] > 1 else None


def shard_path(path: str | os.PathLike[str], rank: int, world_size: int) -> Path:
    """Where rank ``rank`` writes its shard of a sharded save to ``path``."""
    target = Path(path)
    return target.with_name(f"{target.name}.rank{rank:05d}-of-{world_size:05d}")


def save(
    path: str | os.PathLike[str], state: RNGState | None = None, *, sharded: bool = False
) -> RNGState:
    """Write ``state`` (``None``: ``capture()`` now) to ``path`` atomically; return the state.

    Under a torch.distributed process group this is collective: call it on every rank.

    >>> import rngstate, tempfile, os
    >>> _ = rngstate.seed_everything(0)
    >>> path = os.path.join(tempfile.mkdtemp(), "rng.state")
    >>> saved = rngstate.save(path)
    >>> rngstate.load(path) == saved
    True
    """
    if state is None:
        state = capture()
    if not isinstance(state, RNGState):
        raise InvalidStateError(f"save() takes an RNGState or None, got {type(state).__name__}")
    parts = fileformat.pack_parts(state._data)
    group = _group()
    if group is None:
        fileformat.write_atomic(path, *parts)
        return state
    from rngstate.backends import torch_distributed

    rank, world_size = group
    blob = b"".join(parts)
    if sharded:
        shard = shard_path(path, rank, world_size)
        fileformat.write_atomic(shard, blob)
        digests = torch_distributed.gather_bytes(hashlib.blake2b(blob, digest_size=32).digest())
        index: dict[str, Any] | None = None
        if digests is not None:
            names = [shard_path(path, r, world_size).name for r in range(world_size)]
            shards = [{"file": n, "digest": d} for n, d in zip(names, digests, strict=True)]
            index = {COLLECTIVE: 1, "world_size": world_size, "shards": shards}
    else:
        blobs = torch_distributed.gather_bytes(blob)
        index = None if blobs is None else {COLLECTIVE: 1, "world_size": world_size, "ranks": blobs}
    try:
        if index is not None:
            fileformat.write_atomic(path, *fileformat.pack_parts(index))
    finally:
        torch_distributed.barrier()  # nobody reads the file before rank 0 has replaced it
    return state


def load(path: str | os.PathLike[str], *, rank: int | None = None, reshard: bool = False) -> RNGState:
    """Read a state file (does not apply it; pass the result to :func:`rngstate.restore`).

    For a collective file, returns the entry of ``rank`` (default: this process's rank).
    ``reshard=True`` adapts a collective state to a job with another world size: each rank takes
    its own entry (rank 0's if it has none) and every per-rank substream restarts from its
    derivation for the new rank.  Any problem with the file raises
    :class:`~rngstate.StateFileError`.
    """
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 0):
        raise TopologyError(f"load(rank=...) takes a rank: an int >= 0, got {_check.show(rank)}")
    data = fileformat.read(path, check_plain=False)  # decode() below checks every value
    if isinstance(data, dict) and COLLECTIVE in data:
        return _load_collective(path, data, rank, reshard)
    metadata = data.get("metadata") if isinstance(data, dict) else None
    if isinstance(metadata, dict):  # else _from_data refuses the file
        saved = (metadata.get("world_size", 1), metadata.get("rank", 0))
        wanted = _check_topology(path, saved, rank, reshard)
        if reshard:
            data = reshard_state(data, rank_info().world_size, wanted)
    return _from_data(path, data)


def _check_topology(
    path: str | os.PathLike[str], saved: tuple[Any, Any], rank: int | None, reshard: bool
) -> int:
    """The rank to load for; TopologyError where the file was saved by another rank or world
    size (in a job, or for an explicit ``rank``) and ``reshard`` is off.  A single process
    loading without ``rank`` (inspecting, diffing) is told at ``restore`` instead."""
    live = rank_info()
    wanted = live.rank if rank is None else rank
    in_job = live.world_size > 1
    if reshard or not (in_job or rank is not None):
        return wanted
    if saved[1] == wanted and (not in_job or saved[0] == live.world_size):
        return wanted
    raise TopologyError(
        f"{os.fspath(path)} holds the state of rank {saved[1]} of {saved[0]} but is loaded for "
        f"rank {wanted} of {live.world_size if in_job else '?'}: per-rank streams would not "
        "continue. Load with reshard=True to re-derive per-rank substreams for this job"
    )


def _from_data(path: str | os.PathLike[str], data: Any) -> RNGState:
    try:
        return RNGState._from_owned(data)
    except InvalidStateError as exc:
        raise StateFileError(
            f"{os.fspath(path)}: the file is well-formed but its state is not: {exc}"
        ) from None


def _load_collective(
    path: str | os.PathLike[str], data: dict[str, Any], rank: int | None, reshard: bool
) -> RNGState:
    live = rank_info()
    wanted = live.rank if rank is None else rank
    try:
        entries = "shards" if "shards" in data else "ranks"
        _check.mapping(data, "collective", (COLLECTIVE, "world_size", entries))
        world_size = _check.integer(data["world_size"], "collective.world_size", 1, 2**31)
        items = _check.sequence(data[entries], f"collective.{entries}", world_size)
    except InvalidStateError as exc:
        raise StateFileError(f"{os.fspath(path)}: bad collective file: {exc}") from None
    if wanted >= world_size and not reshard:
        raise TopologyError(
            f"{os.fspath(path)} holds {world_size} ranks; rank {wanted} has no entry. Load with "
            "reshard=True to re-derive per-rank streams for a job of another size"
        )
    index = wanted if wanted < world_size else 0
    _check_topology(path, (world_size, index), rank, reshard)
    blob: bytes | bytearray
    if entries == "shards":
        blob = _read_shard(path, items[index], index)
    else:
        blob = _check_blob(path, items[index], index)
    state_data = fileformat.unpack(blob, check_plain=False)
    if reshard:
        state_data = reshard_state(state_data, live.world_size, wanted)
    return _from_data(path, state_data)


def _check_blob(path: str | os.PathLike[str], blob: Any, index: int) -> bytes:
    if not isinstance(blob, bytes):
        raise StateFileError(f"{os.fspath(path)}: entry of rank {index} is not bytes")
    return blob


def _read_shard(path: str | os.PathLike[str], entry: Any, index: int) -> bytes | bytearray:
    try:
        _check.mapping(entry, f"shards[{index}]", ("file", "digest"))
        name = _check.text(entry["file"], f"shards[{index}].file")
        digest = _check.blob(entry["digest"], f"shards[{index}].digest", 32)
    except InvalidStateError as exc:
        raise StateFileError(f"{os.fspath(path)}: bad shard index: {exc}") from None
    if not name or "\0" in name or os.sep in name or (os.altsep and os.altsep in name) or name in (".", ".."):
        raise StateFileError(f"{os.fspath(path)}: shard name {name!r} must be a plain file name")
    shard = Path(path).with_name(name)
    blob = fileformat.read_bytes(shard)  # a regular file of bounded size, like the index
    if hashlib.blake2b(blob, digest_size=32).digest() != digest:
        raise StateFileError(f"shard {os.fspath(shard)!r} does not match its index (corrupt or replaced)")
    return blob
