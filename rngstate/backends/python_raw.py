"""Python's ``random.Random`` as raw memory: the scopes' and per-sample seeding's fast path.

Layout relied on: CPython's ``_random.Random`` is ``{PyObject_HEAD; int index; uint32
state[624]}``; copying those 2,500 bytes costs ~0.4 us against ~11 us for ``getstate`` /
``setstate``, which they must equal.  Verified at run time, once per process
(:func:`state_view`), against ``getstate``, a raw copy read back and a draw; where anything
disagrees there is no view and the callers use ``getstate`` / ``setstate``.

A copy is atomic only because ``random``'s C methods run holding the GIL throughout: on a
free-threaded CPython (``Py_GIL_DISABLED``) they lock the object instead, which a copy cannot
take, so there the raw copies are off.
"""

from __future__ import annotations

import ctypes
import random
import struct
import sys
import sysconfig
from typing import Any

WORDS = 624
RAW_OFFSET = 16  # after PyObject_HEAD (refcount, type) on 64-bit CPython
RAW_SIZE = 4 + 4 * WORDS
INDEX = struct.Struct("=i")
_RAW_WORDS = struct.Struct(f"={WORDS}I")


def raw_from_state(internal: tuple[int, ...]) -> bytes:
    """Raw bytes (index, then the words) of ``getstate()[1]``."""
    return INDEX.pack(internal[WORDS]) + _RAW_WORDS.pack(*internal[:WORDS])


def state_from_raw(raw: bytes) -> tuple[int, ...]:
    """``getstate()[1]`` of raw bytes."""
    return (*_RAW_WORDS.unpack_from(raw, 4), INDEX.unpack_from(raw)[0])


def raw_view(owner: object, offset: int, size: int) -> memoryview:
    """A writable view of ``size`` bytes at ``id(owner) + offset``; copying through it costs
    ~0.1 us against ~0.4 us for a ctypes call.  The caller must keep ``owner`` alive."""
    return memoryview((ctypes.c_char * size).from_address(id(owner) + offset)).cast("B")


def free_threaded() -> bool:
    """True on a free-threaded CPython build (whether or not the GIL is on right now)."""
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def _raw_layout_verified() -> bool:
    if sys.implementation.name != "cpython" or ctypes.sizeof(ctypes.c_void_p) != 8 or free_threaded():
        return False
    if type(random._inst) is not random.Random or random.Random.__basicsize__ < RAW_OFFSET + RAW_SIZE:
        return False
    probe, target = random.Random(12345), random.Random(0)
    probe.random()
    if ctypes.string_at(id(probe) + RAW_OFFSET, RAW_SIZE) != raw_from_state(probe.getstate()[1]):
        return False
    ctypes.memmove(id(target) + RAW_OFFSET, ctypes.string_at(id(probe) + RAW_OFFSET, RAW_SIZE), RAW_SIZE)
    return target.getstate() == (3, probe.getstate()[1], None) and target.random() == probe.random()


_LAYOUT_OK: list[bool] = []  # filled on first use: the layout check allocates


def state_view(rng: random.Random) -> memoryview | None:
    """A writable view of the raw state of ``rng`` (int32 index, then the 624 words, native
    byte order), or None where that layout is not verified.  Keep ``rng`` alive meanwhile.

    >>> import random
    >>> view = state_view(random.Random(0))
    >>> view is None or view.nbytes == 2500
    True
    """
    if not _LAYOUT_OK:
        _LAYOUT_OK.append(_raw_layout_verified())
    if not _LAYOUT_OK[0] or type(rng) is not random.Random:
        return None
    return raw_view(rng, RAW_OFFSET, RAW_SIZE)


def install_state(rng: random.Random, snapshot: Any) -> None:
    """Make ``rng`` hold a python-stream snapshot: ``(raw bytes, gauss_next)`` or a getstate()
    tuple (the slow path, where no raw view exists)."""
    if len(snapshot) == 2:
        rng.setstate((3, state_from_raw(snapshot[0]), snapshot[1]))
    else:
        rng.setstate(snapshot)
