"""The per-sample seed material's source: a 32-byte key stretched into an addressable run of
random bytes (NumPy's PCG64DXSM), and the scope roots read back out of it."""

from __future__ import annotations

import os
import threading

import numpy as np

from rngstate.backends.numpy_raw import LITTLE_ENDIAN


class Expander:
    """Stretches a 32-byte key into an addressable run of random bytes.

    ``expand(key, start, words)`` is the 64-bit outputs number ``start`` to
    ``start + words - 1`` of PCG64DXSM started from state ``key[:16]`` and increment
    ``key[16:]`` made odd (both little-endian, set through NumPy's ``state`` setter;
    ``advance`` jumps to ``start`` in O(log start)), as a writable little-endian buffer of the
    caller's.  PCG64DXSM is NumPy's recommended PCG; about 2 ns a word here.  The generator
    stays where the last run ended, so a run continued (the next samples of an epoch) costs
    neither the state setter nor a jump.

    >>> Expander().expand(bytes(32), 3, 1).hex()
    '4adff0d176ea3852'
    """

    def __init__(self) -> None:
        self._bits = np.random.PCG64DXSM(0)
        self._at: tuple[bytes, int] | None = None  # (key, next output) where _bits stands
        self._lock = threading.Lock()  # setting, jumping and drawing must not interleave
        if hasattr(os, "register_at_fork"):  # a worker forked while another thread held it
            os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._at = None  # the forking thread may have been between setting and drawing

    def expand(self, key: bytes, start: int, words: int) -> memoryview:
        """``words`` 64-bit outputs of the run of ``key`` from output ``start`` on, as bytes."""
        bits = self._bits
        with self._lock:
            at = self._at
            if at is None or at[1] > start or at[0] != key:
                bits.state = {"bit_generator": "PCG64DXSM",
                              "state": {"state": int.from_bytes(key[:16], "little"),
                                        "inc": int.from_bytes(key[16:32], "little") | 1},
                              "has_uint32": 0, "uinteger": 0}
                at = (key, 0)
            if start > at[1]:
                bits.advance(start - at[1])
            raw = bits.random_raw(words)
            self._at = (key, start + words)
        if not LITTLE_ENDIAN:
            raw = raw.astype("<u8")
        return memoryview(raw.data).cast("B")


def big_endian_words(block: memoryview, offset: int, stride: int) -> list[int]:
    """The big-endian uint32 at ``offset`` of each ``stride``-byte row of ``block``.

    >>> big_endian_words(memoryview(bytes(range(16))), 2, 8)
    [33752069, 168496141]
    """
    rows = np.frombuffer(block, np.uint8).reshape(-1, stride)
    return rows[:, offset : offset + 4].copy().view(">u4").ravel().tolist()  # type: ignore[no-any-return]
