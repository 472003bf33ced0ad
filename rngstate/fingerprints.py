"""Short, stable hashes of random state, for logs and checks: :func:`fingerprint` of the live
(or a captured) state and :func:`plain_fingerprint` of one stream's plain data.  Both are
re-exported by :mod:`rngstate.diagnostics` (and ``fingerprint`` by ``rngstate``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from rngstate.errors import DiagnosticsError
from rngstate.state import RNGState

FINGERPRINT_LENGTH = 12  # hex digits: 48 bits, plenty to tell runs apart in a log


def plain_fingerprint(plain: Any, length: int = FINGERPRINT_LENGTH) -> str:
    """Short BLAKE2b hex digest of plain data (a stream's encoded state), stable across processes.

    >>> plain_fingerprint({"a": 1})
    'ff55ea807b11'
    """
    from rngstate.fileformat import pack  # canonical bytes: sorted keys, big ints wrapped

    return hashlib.blake2b(pack(plain), digest_size=16).hexdigest()[:length]


def fingerprint(state: RNGState | None = None) -> str:
    """A short hash of every stream, substream, tracked generator and the root seed.

    ``state=None`` fingerprints the live state (``capture()`` now).  Equal states give equal
    fingerprints in every process; metadata (versions, determinism switches) is not included.
    Log it every N steps: two runs that drift apart show it at the first differing line.

    >>> import rngstate
    >>> _ = rngstate.seed_everything(7)
    >>> a = rngstate.fingerprint(); _ = rngstate.seed_everything(7)
    >>> a == rngstate.fingerprint() and len(a)
    12
    """
    if state is None:
        from rngstate.snapshot import capture

        state = capture()
    if not isinstance(state, RNGState):
        raise DiagnosticsError(f"fingerprint() takes an RNGState or None, got {type(state).__name__}")
    return state.digest().hex()[:FINGERPRINT_LENGTH]


__all__ = ["FINGERPRINT_LENGTH", "fingerprint", "plain_fingerprint"]
