"""NumPy's global ``RandomState`` as raw memory: the scopes' and per-sample seeding's fast path.

Layouts relied on: the legacy global's MT19937 state is ``{uint32 key[624]; int pos}`` at
``bit_generator.ctypes.state_address``, and its Gaussian cache ``{int has_gauss; double
gauss}`` sits inside the ``RandomState`` object.  Raw copies cost ~1 us against ~70 us for
``get_state`` / ``set_state``, which they must equal.

Verified at run time, once per process (:func:`gauss_offset`): the table and position against
``bit_generator.state`` of a scratch MT19937, and the Gaussian cache's offset found and checked
on a scratch ``RandomState`` against ``get_state`` and a draw; where anything disagrees there is
no offset and the stream uses the public path.  Every raw copy holds the bit generator's
``lock``, the one NumPy's own draws hold (they release the GIL), so a copy is as safe as
``set_state`` for every thread.
"""

from __future__ import annotations

import ctypes
import struct
import sys
from typing import Any
from zlib import crc32

import numpy as np

from rngstate.backends.python_raw import raw_view

MT_TABLE_BYTES = 624 * 4  # an MT19937 table
MT_RAW_SIZE = MT_TABLE_BYTES + 4  # the table, then pos
LITTLE_ENDIAN = sys.byteorder == "little"
GAUSS_RAW = struct.Struct("=i4xd")
_MT_POS = struct.Struct("=i")
# pos 1: the next draws read words 1-623, then twist; word 0, whose top bit is forced (never the
# all-zero table), is never output: read at pos 0 it biased the first draw.
FRESH_TABLE = _MT_POS.pack(1)
NO_GAUSS = GAUSS_RAW.pack(0, 0.0)


def _find_gauss_offset() -> int | None:
    probe = np.random.RandomState(np.random.MT19937(1))
    key = np.arange(624, dtype=np.uint32)
    base = id(probe)
    size = type(probe).__basicsize__
    for has_gauss, gauss in ((1, 0.1234567890123), (0, -98765.4321)):
        probe.set_state(("MT19937", key, 7, has_gauss, gauss))
        memory = ctypes.string_at(base, size)
        offset = memory.find(struct.pack("=d", gauss)) - 8
        if offset < 0 or GAUSS_RAW.unpack_from(memory, offset) != (has_gauss, gauss):
            return None
    written = GAUSS_RAW.pack(1, 2.5)
    ctypes.memmove(base + offset, written, GAUSS_RAW.size)
    state = probe.get_state(legacy=False)
    if (state["has_gauss"], state["gauss"]) != (1, 2.5) or probe.standard_normal() != 2.5:
        return None
    return offset


def _mt_layout_verified() -> bool:
    probe = np.random.MT19937(5)
    raw = ctypes.string_at(probe.ctypes.state_address, MT_RAW_SIZE)
    state = probe.state["state"]
    return raw == state["key"].astype("=u4").tobytes() + _MT_POS.pack(state["pos"])


def gauss_offset() -> int | None:
    """The Gaussian cache's offset in a ``RandomState`` where both layouts are verified."""
    return _find_gauss_offset() if _mt_layout_verified() else None


def views(random_state: Any, offset: int) -> tuple[memoryview, memoryview]:
    """Writable views of ``random_state``'s MT19937 table and pos, and of its Gaussian cache;
    keep ``random_state`` and its bit generator alive meanwhile."""
    address = random_state._bit_generator.ctypes.state_address
    mt_view = memoryview((ctypes.c_char * MT_RAW_SIZE).from_address(address)).cast("B")
    return mt_view, raw_view(random_state, offset, GAUSS_RAW.size)


class RawSnapshot:
    """The global MT19937 state and Gaussian cache as raw bytes (fast path only)."""

    __slots__ = ("gauss", "mt")

    def __init__(self, mt: bytes, gauss: bytes) -> None:
        self.mt = mt
        self.gauss = gauss

    def as_state(self) -> dict[str, Any]:
        """The ``get_state(legacy=False)`` dict this snapshot equals."""
        has_gauss, gauss = GAUSS_RAW.unpack(self.gauss)
        key = np.frombuffer(self.mt, dtype="=u4", count=624).copy()
        pos = _MT_POS.unpack_from(self.mt, MT_TABLE_BYTES)[0]
        return {"bit_generator": "MT19937", "state": {"key": key, "pos": pos},
                "has_gauss": has_gauss, "gauss": gauss}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RawSnapshot:
        """From a validated legacy MT19937 state dict."""
        mt = np.ascontiguousarray(state["state"]["key"], dtype="=u4").tobytes()
        gauss = GAUSS_RAW.pack(state["has_gauss"], state["gauss"])
        return cls(mt + _MT_POS.pack(state["state"]["pos"]), gauss)


def fingerprint_bytes(mt: bytes, gauss: bytes) -> bytes:
    """The bytes a step trace fingerprints of a table and pos (``mt``) and a Gaussian cache
    (``gauss``, GAUSS_RAW): all of them but the cache's padding."""
    return mt + gauss[:4] + gauss[8:]


def crc_pieces(views: tuple[memoryview, memoryview]) -> tuple[memoryview, memoryview, memoryview]:
    """The slices of the raw ``views`` whose CRC-32, one after the other, is that of their
    :func:`fingerprint_bytes` (made once per pair of views)."""
    mt_view, gauss_view = views
    return mt_view, gauss_view[:4], gauss_view[8:]


def pieces_crc(pieces: tuple[memoryview, memoryview, memoryview]) -> int:
    """``zlib.crc32`` of :func:`fingerprint_bytes` of the views, read in place (the caller
    holds the lock; under 5 KiB a piece, so CPython keeps the GIL meanwhile)."""
    mt, gauss_head, gauss_tail = pieces
    return crc32(gauss_tail, crc32(gauss_head, crc32(mt)))


def state_fingerprint_bytes(state: dict[str, Any]) -> bytes | None:
    """:func:`fingerprint_bytes` of a ``get_state(legacy=False)`` dict (None unless MT19937)."""
    if state.get("bit_generator") != "MT19937":
        return None
    inner = state["state"]
    mt = np.ascontiguousarray(inner["key"], dtype="=u4").tobytes() + _MT_POS.pack(inner["pos"])
    return fingerprint_bytes(mt, GAUSS_RAW.pack(state["has_gauss"], state["gauss"]))


def write_table(views: tuple[memoryview, memoryview], table: bytes | memoryview) -> None:
    """A whole fresh table into the raw views, as ``set_state(("MT19937", words, 1, 0, 0.0))``
    with word 0's top bit set would (caller holds the lock)."""
    mt_view, gauss_view = views
    mt_view[:MT_TABLE_BYTES] = table
    mt_view[3] |= 0x80  # the top byte of word 0 (little-endian)
    mt_view[MT_TABLE_BYTES:] = FRESH_TABLE
    gauss_view[:] = NO_GAUSS
