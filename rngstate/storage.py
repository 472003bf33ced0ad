"""``save`` and ``load``: RNGState <-> the msgpack state file."""

from __future__ import annotations

import os

from rngstate import fileformat
from rngstate.errors import InvalidStateError, StateFileError
from rngstate.snapshot import capture
from rngstate.state import RNGState


def save(path: str | os.PathLike[str], state: RNGState | None = None) -> RNGState:
    """Write ``state`` (``None``: ``capture()`` now) to ``path`` atomically; return the state.

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
    fileformat.write_atomic(path, *fileformat.pack_parts(state._data))
    return state


def load(path: str | os.PathLike[str]) -> RNGState:
    """Read a state file (does not apply it; pass the result to :func:`rngstate.restore`).

    Any problem with the file raises :class:`~rngstate.StateFileError`.
    """
    data = fileformat.read(path, check_plain=False)  # decode() below checks every value
    try:
        return RNGState._from_owned(data)  # fileformat.read checked it is plain data
    except InvalidStateError as exc:
        raise StateFileError(
            f"{os.fspath(path)}: the file is well-formed but its state is not: {exc}"
        ) from None
