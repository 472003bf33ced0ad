"""``stateful()``: capture/restore as ``state_dict()`` / ``load_state_dict()``.

Minimal single-process version for the trainer integrations; helper H7's module (per-rank
entries, DCP, reshard) replaces this file at merge with the same API.
"""

from __future__ import annotations

from typing import Any

from rngstate import _check, fileformat
from rngstate.errors import InvalidStateError
from rngstate.snapshot import capture, restore
from rngstate.state import RNGState

FORMAT_KEY = "rngstate"
FORMAT_VERSION = 1


class RNGStateful:
    """Checkpointable view of every generator rngstate manages (see :func:`stateful`)."""

    def state_dict(self) -> dict[str, Any]:
        """``{"rngstate": 1, "world_size": 1, "rank0": <state file bytes>}``."""
        return {FORMAT_KEY: FORMAT_VERSION, "world_size": 1, "rank0": fileformat.pack(capture().to_dict())}

    def load_state_dict(self, state_dict: Any) -> None:
        """Restore a :meth:`state_dict`."""
        _check.mapping(state_dict, "RNG state dict", (FORMAT_KEY, "world_size", "rank0"))
        if state_dict[FORMAT_KEY] != FORMAT_VERSION:
            raise InvalidStateError("RNG state dict: not made by rngstate.stateful().state_dict()")
        blob = _check.blob(state_dict["rank0"], "RNG state dict.rank0")
        restore(RNGState.from_dict(fileformat.unpack(blob)))


def stateful() -> RNGStateful:
    """An object whose ``state_dict()`` / ``load_state_dict()`` capture and restore every stream.

    >>> import rngstate, random
    >>> _ = rngstate.seed_everything(0)
    >>> rng = rngstate.stateful()
    >>> checkpoint = {"rng": rng.state_dict()}
    >>> first = random.random()
    >>> rng.load_state_dict(checkpoint["rng"])
    >>> random.random() == first
    True
    """
    return RNGStateful()
