"""``stateful()``: capture/restore as ``state_dict()`` / ``load_state_dict()``.

For checkpoint engines that call those two methods: ``torch.distributed.checkpoint`` (DCP,
a ``Stateful`` on every rank), accelerate's ``register_for_checkpointing``, ``torch.save``
dicts read with ``weights_only=True``.  The state dict is plain data::

    {"rngstate": 1, "world_size": 4, "rank2": b"<this rank's state file bytes>"}

Each rank keys its own state by its rank.  DCP keeps one copy of keys that several ranks
save, so a key shared by all ranks would keep one rank's state and drop the others; with
``"rank<r>"`` every rank's entry is a distinct key, and on load each rank asks for its own.
``world_size`` (equal on every rank) lets a load under another world size fail clearly.
The entry is the msgpack state file (checksummed, never pickled) as one ``bytes`` leaf, so
the structure DCP sees on load does not depend on which substreams exist.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from rngstate import _check, fileformat
from rngstate.distributed import TopologyError, rank_info, reshard_state
from rngstate.errors import InvalidStateError, RNGStateError, StateFileError
from rngstate.snapshot import capture, restore
from rngstate.state import RNGState

logger = logging.getLogger(__name__)
FORMAT_KEY = "rngstate"
FORMAT_VERSION = 1
# One spelling per rank: "rank0", never "rank000" (two keys for one rank, the last winning);
# at most 10 digits (a 5000-digit key would fail inside int()).
_ENTRY = re.compile(r"rank(0|[1-9][0-9]{0,9})\Z")


class RNGStateful:
    """Checkpointable view of every generator rngstate manages (see :func:`stateful`)."""

    def __init__(self, *, strict: bool = True, reshard: bool = False) -> None:
        self.strict = strict
        self.reshard = reshard

    def state_dict(self) -> dict[str, Any]:
        """This rank's state: ``{"rngstate": 1, "world_size": N, "rank<r>": bytes}``.

        With ``reshard=True`` the dict only asks for rank 0's entry (what ``dcp.load`` needs
        to know); such an object cannot save.
        """
        info = rank_info()
        if self.reshard:  # a load request: DCP replaces the value with the saved one
            return {FORMAT_KEY: FORMAT_VERSION, "world_size": info.world_size, "rank0": b""}
        blob = fileformat.pack(capture().to_dict())
        return {FORMAT_KEY: FORMAT_VERSION, "world_size": info.world_size, f"rank{info.rank}": blob}

    def load_state_dict(self, state_dict: Any) -> None:
        """Restore this rank's entry of ``state_dict`` (from :meth:`state_dict`, any rank's)."""
        saved_world, entries = _entries(state_dict)
        live = rank_info()
        if self.reshard:
            if saved_world == live.world_size:
                raise TopologyError(
                    f"the RNG state was saved by {saved_world} ranks, as many as this job has: load it "
                    "with rngstate.stateful() (reshard=True would give every rank rank 0's streams)"
                )
            if 0 not in entries:
                raise TopologyError("the RNG state dict holds no entry for rank 0, which reshard=True needs")
            data = reshard_state(_unpack(entries[0], 0), live.world_size, live.rank)
        else:
            if live.rank not in entries:
                held = ", ".join(map(str, sorted(entries)))
                raise TopologyError(
                    f"the RNG state dict holds rank(s) {held} of {saved_world}; rank {live.rank} of "
                    f"{live.world_size} has no entry. Save on every rank (dcp.save, or "
                    "rngstate.save(path) which is collective); after a world size change, load "
                    "with rngstate.stateful(reshard=True)"
                )
            if saved_world != live.world_size:
                raise TopologyError(
                    f"the RNG state was saved by {saved_world} ranks and is loaded by "
                    f"{live.world_size}; per-rank streams would not continue. Load with "
                    "rngstate.stateful(reshard=True) to re-derive per-rank substreams for this world size"
                )
            data = _unpack(entries[live.rank], live.rank)
        try:
            state = RNGState.from_dict(data)
        except InvalidStateError as exc:
            raise InvalidStateError(f"the RNG state of rank {live.rank}: {exc}") from None
        restore(state, strict=self.strict)
        logger.debug("rank %d of %d restored its RNG state", live.rank, live.world_size)

    def __repr__(self) -> str:
        return f"RNGStateful(strict={self.strict}, reshard={self.reshard})"


def _entries(state_dict: Any) -> tuple[int, dict[int, Any]]:
    """Check the layout; return (saved world size, {rank: entry})."""
    try:
        _check.mapping(state_dict, "RNG state dict")
        version = state_dict.get(FORMAT_KEY)
        if type(version) is not int or version != FORMAT_VERSION:  # not True, 1.0 or an array
            raise InvalidStateError(
                f"RNG state dict: {FORMAT_KEY}={_check.show(version)}, expected {FORMAT_VERSION} (an "
                "int); not made by rngstate.stateful().state_dict() (or by a newer rngstate)"
            )
        world = _check.integer(state_dict.get("world_size"), "RNG state dict.world_size", 1, 2**31)
        entries: dict[int, Any] = {}
        for key, value in state_dict.items():
            if key in (FORMAT_KEY, "world_size"):
                continue
            match = _ENTRY.match(key) if isinstance(key, str) else None
            if match is None or int(match.group(1)) >= world:
                raise InvalidStateError(
                    f"RNG state dict: unexpected key {_check.show(key)} (expected rank0..rank{world - 1}, "
                    "in plain digits without leading zeros)"
                )
            entries[int(match.group(1))] = value
    except RNGStateError as exc:
        raise InvalidStateError(str(exc)) from None
    return world, entries


def _unpack(entry: Any, rank: int) -> Any:
    if type(entry) is bytes and not entry:
        raise StateFileError(
            f"the RNG state entry of rank {rank} is empty: it was saved by a stateful(reshard=True), "
            "which only loads; save with rngstate.stateful()"
        )
    if not isinstance(entry, bytes):
        raise StateFileError(f"the RNG state entry of rank {rank} is a {type(entry).__name__}, not bytes")
    try:
        return fileformat.unpack(entry)
    except StateFileError as exc:
        raise StateFileError(f"the RNG state entry of rank {rank}: {exc}") from None


def stateful(*, strict: bool = True, reshard: bool = False) -> RNGStateful:
    """An object whose ``state_dict()`` / ``load_state_dict()`` capture and restore every stream.

    ``strict`` is :func:`rngstate.restore`'s.  ``reshard=True`` is for loading only, under
    another world size than the save: every rank starts from rank 0's entry and per-rank
    substreams re-derive for the new layout.

    >>> import rngstate, random
    >>> _ = rngstate.seed_everything(0)
    >>> rng = rngstate.stateful()
    >>> checkpoint = {"rng": rng.state_dict()}
    >>> first = random.random()
    >>> rng.load_state_dict(checkpoint["rng"])
    >>> random.random() == first
    True
    """
    return RNGStateful(strict=strict, reshard=reshard)


__all__ = ["RNGStateful", "stateful"]
