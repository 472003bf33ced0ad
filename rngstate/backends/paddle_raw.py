"""Paddle's CPU generator states read as raw memory: what a step trace fingerprints.

``GeneratorState.__getstate__`` writes the ``std::mt19937_64`` engine as text, handed over as a
list of 6,000-odd byte values (~30 us), which ``encode`` parses (~100 us): far too slow for a
step trace, which fingerprints the CPU generator at every step.  A ``GeneratorState`` returned
by ``Generator.get_state()`` is a private copy (Paddle takes the generator's mutex to make it;
no other thread sees it), so its memory can be read without any lock.  Layouts relied on
(pybind11 and libstdc++ on 64-bit little-endian CPython):

* the Python object holds a pointer to its C++ value right after ``PyObject_HEAD``, and its
  holder (pybind11's default ``unique_ptr``) the same pointer right after it;
* the value is ``{int64 device; uint64 seed; uint64 offset; shared_ptr<mt19937_64> engine}``,
  the engine made by ``make_shared`` (right after its control block);
* the engine is ``{uint64 words[312]; size_t pos}``.

Verified at run time, once per process (:func:`layout_verified`), on states of a scratch
``Generator`` (never the user's) against ``__getstate__``: seeded, after a draw, past a twist.
Where anything disagrees (another Paddle, pybind11 or platform) there is no raw path and the
caller fingerprints ``encode``'s form of the same fields.  :func:`state_bytes` is
:data:`HEAD` of (device, seed, offset), the 312 words and the position, little-endian: what
:func:`fields_bytes` gives of the same state's plain fields.
"""

from __future__ import annotations

import ctypes
import logging
import struct
import sys
from typing import Any

logger = logging.getLogger(__name__)

MT_WORDS = 312
HEAD = struct.Struct("<qQQ")  # device, seed, offset
_ENGINE = struct.Struct(f"<{MT_WORDS}QQ")  # the words, then pos
_POINTERS = struct.Struct("<QQ")
_VALUE_AT = 16  # after PyObject_HEAD: the value pointer, then the holder's
_CONTROL_SIZE = 16  # a shared_ptr's control block: vtable pointer, use and weak counts
_VERIFIED: list[bool] = []
_STATE_TYPE: list[Any] = [None]  # paddle's GeneratorState, once verified


def fields_bytes(device: int, seed: int, offset: int, mt: bytes, pos: int) -> bytes:
    """The fingerprinted bytes of a state given as plain fields (``mt``: 312 little-endian
    uint64 words)."""
    return HEAD.pack(device, seed, offset) + mt + struct.pack("<Q", pos)


def state_bytes(state: Any) -> bytes | None:
    """The fingerprinted bytes of a ``GeneratorState`` that ``Generator.get_state()`` returned
    (a private copy), read in place; None where the layout is not verified or the state has no
    engine (a GPU state)."""
    if not (_VERIFIED[0] if _VERIFIED else layout_verified()) or type(state) is not _STATE_TYPE[0]:
        return None
    return _read(state)


def _read(state: Any) -> bytes | None:
    value, holder = _POINTERS.unpack(ctypes.string_at(id(state) + _VALUE_AT, _POINTERS.size))
    if not value or value != holder:
        return None
    head = ctypes.string_at(value, HEAD.size + _POINTERS.size)
    engine, control = _POINTERS.unpack_from(head, HEAD.size)
    # make_shared puts the engine right after its control block: a pointer pair that does
    # not look like that is not this layout's shared_ptr (or a GPU state's empty one).
    if not control or engine != control + _CONTROL_SIZE:
        return None
    return head[: HEAD.size] + ctypes.string_at(engine, _ENGINE.size)


def layout_verified() -> bool:
    """Whether raw reads of ``GeneratorState`` objects give what ``__getstate__`` says, checked
    once per process on a scratch generator."""
    if not _VERIFIED:
        try:
            _VERIFIED.append(_verify())
        except Exception:  # another Paddle whose API differs: then not the layout above
            logger.info("paddle: raw generator state check failed", exc_info=True)
            _VERIFIED.append(False)
        if not _VERIFIED[0]:
            logger.info("paddle: raw generator state reads unavailable, parsing __getstate__")
    return _VERIFIED[0]


def _verify() -> bool:
    if sys.implementation.name != "cpython" or sys.byteorder != "little":
        return False
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        return False
    core = sys.modules["paddle"].base.core
    if core.GeneratorState.__basicsize__ < _VALUE_AT + _POINTERS.size:
        return False
    _STATE_TYPE[0] = core.GeneratorState  # the only type read raw
    scratch = core.Generator()
    scratch.manual_seed(20251208)
    for draws in (0, 1, 400):  # seeded, mid-table, past a twist
        for _ in range(draws):
            scratch.random()
        state = scratch.get_state()
        fields = state.__getstate__()
        if len(fields) != 4 or int(fields[0]) != -1:
            return False
        # Before any engine read: the value pointer must be one the holder repeats, and its
        # head must be the fields __getstate__ reports (else the layout is not the one above).
        value, holder = _POINTERS.unpack(ctypes.string_at(id(state) + _VALUE_AT, _POINTERS.size))
        if not value or value != holder:
            return False
        expected_head = HEAD.pack(int(fields[0]), int(fields[1]) & (2**64 - 1), int(fields[2]))
        if ctypes.string_at(value, HEAD.size) != expected_head:
            return False  # checked before _read follows the engine pointer after it
        words = [int(token) for token in bytes(fields[3]).split(b" ")]
        if len(words) != MT_WORDS + 1 or _read(state) != expected_head + _ENGINE.pack(*words):
            return False
    return True
