"""Python's ``random``: the global generator and ``random.Random`` objects."""

from __future__ import annotations

import logging
import random
import struct
import sys
from collections.abc import Callable
from typing import Any
from zlib import crc32

from rngstate import _check
from rngstate.backends.base import GeneratorKind, Plain, Stream, check_material
from rngstate.backends.python_raw import INDEX, install_state, raw_from_state, state_from_raw, state_view
from rngstate.derive import derived_int

_WORDS = 624
_MT_FORMAT = struct.Struct(f"<{_WORDS}I")
_DOUBLE = struct.Struct(">d")
_PyState = tuple[Any, ...]  # (3, (624 words..., pos), gauss_next)
logger = logging.getLogger(__name__)

_LITTLE_ENDIAN = sys.byteorder == "little"  # raw words then equal the file's "<u4" bytes
# Index 1: the next draws read words 1-623, then twist.  Word 0's top bit is forced to 1 (never
# the all-zero table) as init_by_array does; read at index 0 it would bias the first output
# (bit 31 of the untempered word always set), so it is never output, as after random.seed.
_FRESH_TABLE = INDEX.pack(1)


def _encode(state: _PyState) -> Plain:
    version, internal, gauss_next = state
    return {
        "version": version,
        "mt": _MT_FORMAT.pack(*internal[:_WORDS]),
        "pos": internal[_WORDS],
        # No empty bytes anywhere: torch.load(weights_only=True) cannot unpickle b"".
        "has_gauss": int(gauss_next is not None),
        "gauss": _DOUBLE.pack(0.0 if gauss_next is None else gauss_next),
    }


# Invariants (random.setstate's own checks plus ours): version 3; 624 uint32 words; pos in
# [0, 624] (624: twist before the next draw, which is where seeding leaves it); not the all-zero
# table (zeros forever: normalvariate would loop); has_gauss 0 or 1, gauss any double.
def _decode(plain: Plain, where: str) -> _PyState:
    _check.mapping(plain, where, ("version", "mt", "pos", "has_gauss", "gauss"))
    version = _check.integer(plain["version"], f"{where}.version", 3, 3)
    words = _MT_FORMAT.unpack(_check.blob(plain["mt"], f"{where}.mt", _MT_FORMAT.size))
    _check.mt19937(words, f"{where}.mt")
    pos = _check.integer(plain["pos"], f"{where}.pos", 0, _WORDS)
    has_gauss = _check.integer(plain["has_gauss"], f"{where}.has_gauss", 0, 1)
    gauss = _DOUBLE.unpack(_check.blob(plain["gauss"], f"{where}.gauss", 8))[0]
    return (version, (*words, pos), gauss if has_gauss else None)


class PythonStream(Stream):
    """The generator behind ``random.random()``, ``random.shuffle`` and friends.

    Snapshots are ``(raw bytes, gauss_next)`` on the verified fast path
    (:mod:`rngstate.backends.python_raw`; off on free-threaded CPython), else getstate() tuples.
    """

    name = "python"
    framework = "random"

    def __init__(self) -> None:
        self._fast = state_view(random.Random()) is not None
        self._instance: random.Random | None = None  # kept alive while _view points into it
        self._view = memoryview(b"")
        if not self._fast:
            logger.info("python random: raw state copy unavailable, using getstate/setstate")

    def is_active(self) -> bool:
        return True

    def seed(self, seed: int) -> None:
        random.seed(seed)

    def seed_derived(self, material: bytes) -> None:
        random.seed(derived_int(material, 128))

    # A whole MT19937 table at bytes 4-2499; bytes 0-3 stand where random's index goes, so
    # that a sample block rewritten once (sample_writer) is copied over index and table at once.
    sample_material = 4 + _WORDS * 4 + 4

    def seed_from_material(self, material: bytes | memoryview) -> None:
        """Give ``random`` a whole MT19937 table from the material, as the rngstate loaders do
        per sample: the state ``setstate((3, (*words, 1), None))`` with ``words`` the 624
        little-endian uint32 at bytes 4-2499, the first one's top bit set (what
        ``init_by_array`` does: never the all-zero table).  Index 1: the next draws read words
        1-623 of the table, as random as a twist's output, so no twist comes first; word 0,
        whose top bit is forced, is never output (its lower bits never matter).
        Writing the table costs ~0.3 us against ~3.5 us for ``random.seed`` of 128 bits plus
        ~0.5 us for its twist.  An instance other than ``random.Random`` behind the module
        functions is seeded with ``random.seed`` of bytes 4-19.

        >>> import random
        >>> PythonStream().seed_from_material(bytes(4) + bytes(range(256)) * 9 + bytes(196))
        >>> random.getstate()[1][1], random.getstate()[1][624]
        (117835012, 1)
        """
        check_material(material, self.sample_material)
        instance = random._inst
        table = material[4 : 4 + _MT_FORMAT.size]
        view = self._view if instance is self._instance else self._raw()
        if view and _LITTLE_ENDIAN:
            view[4:] = table
            view[7] |= 0x80  # the top byte of word 0 (little-endian)
            view[:4] = _FRESH_TABLE
            instance.gauss_next = None  # type: ignore[attr-defined]
        elif type(instance) is random.Random:
            words = _MT_FORMAT.unpack(table)
            instance.setstate((3, (words[0] | 0x80000000, *words[1:], 1), None))
        else:
            random.seed(derived_int(bytes(table[:16]), 128))

    def sample_writer(self, block: memoryview, start: int, stride: int) -> Callable[[int], None]:
        """Per sample one copy of 2,500 bytes over index and table (~0.3 us), the block's index
        and word-0 bits rewritten beforehand for all its samples."""
        instance, view = random._inst, self._raw() if _LITTLE_ENDIAN else None
        if view is None:
            return super().sample_writer(block, start, stride)
        import numpy as np  # the block is NumPy's (rngstate.data.seeding): already imported

        slots = np.frombuffer(block, np.uint8).reshape(-1, stride)[:, start : start + self.sample_material]
        slots[:, :4] = np.frombuffer(_FRESH_TABLE, np.uint8)  # index 1
        slots[:, 7] |= 0x80  # the top byte of word 0
        end, size, seed = start + view.nbytes, self.sample_material, self.seed_from_material

        def write(base: int) -> None:
            if random._inst is instance:
                view[:] = block[base + start : base + end]
                instance.gauss_next = None  # type: ignore[attr-defined]
            else:  # the sample replaced random's instance
                seed(block[base + start : base + start + size])

        return write

    def _raw(self) -> memoryview | None:
        instance = random._inst  # the instance behind random.random() & co.
        if instance is not self._instance:
            view = state_view(instance) if self._fast else None
            self._view = memoryview(b"") if view is None else view
            self._instance = instance
        return self._view if self._view.nbytes else None

    # get_state, set_state and exchange run per batch and per scope, in caches the user's code
    # has just cooled: _raw() is inlined for the instance they last saw.
    def get_state(self) -> Any:
        instance = random._inst
        view = self._view if instance is self._instance else self._raw()
        if view:
            return (view.tobytes(), instance.gauss_next)  # type: ignore[attr-defined]
        return random.getstate()

    def set_state(self, snapshot: Any) -> None:
        instance = random._inst
        view = self._view if instance is self._instance else self._raw()
        if view and len(snapshot) == 2:
            view[:] = snapshot[0]
            instance.gauss_next = snapshot[1]  # type: ignore[attr-defined]
        else:
            install_state(instance, snapshot)

    def exchange(self, snapshot: Any) -> Any:
        instance = random._inst
        view = self._view if instance is self._instance else self._raw()
        if view and len(snapshot) == 2:
            previous = (view.tobytes(), instance.gauss_next)  # type: ignore[attr-defined]
            view[:] = snapshot[0]
            instance.gauss_next = snapshot[1]  # type: ignore[attr-defined]
            return previous
        return super().exchange(snapshot)

    exchange_outer = exchange  # nothing to leave out on entry: one call, not two

    def exchange_material(self, material: bytes | memoryview) -> Any:
        instance = random._inst
        view = self._view if instance is self._instance else self._raw()
        if not view or not _LITTLE_ENDIAN or len(material) != self.sample_material:
            return super().exchange_material(material)
        previous = (view.tobytes(), instance.gauss_next)  # type: ignore[attr-defined]
        view[:] = material[: view.nbytes]  # index and table, as seed_from_material leaves them:
        view[:4] = _FRESH_TABLE
        view[7] |= 0x80
        instance.gauss_next = None  # type: ignore[attr-defined]
        return previous

    def encode(self, snapshot: Any) -> Plain:
        if len(snapshot) == 2 and _LITTLE_ENDIAN:  # raw: int32 index, then the words
            raw, gauss_next = snapshot
            return {
                "version": 3,
                "mt": raw[4:],
                "pos": INDEX.unpack_from(raw)[0],
                "has_gauss": int(gauss_next is not None),
                "gauss": _DOUBLE.pack(0.0 if gauss_next is None else gauss_next),
            }
        if len(snapshot) == 2:
            snapshot = (3, state_from_raw(snapshot[0]), snapshot[1])
        return _encode(snapshot)

    # The raw layout (int32 index, then the 624 words, native order), then the cached Gaussian
    # (8 bytes, only when there is one): a copy of 2,500 bytes, the live state as it lies.
    def state_bytes(self) -> bytes | None:
        instance = random._inst
        view = self._view if instance is self._instance else self._raw()
        if view:
            gauss = instance.gauss_next  # type: ignore[attr-defined]
            return view.tobytes() if gauss is None else view.tobytes() + _DOUBLE.pack(gauss)
        return self.snapshot_bytes(random.getstate())

    def state_crc(self) -> int | None:
        instance = random._inst
        view = self._view if instance is self._instance else self._raw()
        if not view:
            return super().state_crc()
        # Read in place under the GIL: a crc32 of under 5 KiB does not release it.
        gauss = instance.gauss_next  # type: ignore[attr-defined]
        return crc32(view) if gauss is None else crc32(_DOUBLE.pack(gauss), crc32(view))

    def snapshot_bytes(self, snapshot: Any) -> bytes | None:
        raw: bytes | None
        if len(snapshot) == 2:
            raw, gauss = snapshot
        else:
            try:
                version, internal, gauss = snapshot
                raw = raw_from_state(internal) if version == 3 and len(internal) == _WORDS + 1 else None
            except (TypeError, ValueError, struct.error):  # another generator's getstate()
                raw = None
            if raw is None:
                return None
        return raw if gauss is None else raw + _DOUBLE.pack(gauss)

    def decode(self, plain: Plain, where: str) -> Any:
        if not (self._fast and _LITTLE_ENDIAN):
            return _decode(plain, where)
        # Same checks as _decode, without building a 625-int tuple: every 32-bit word is valid
        # and the index was range-checked, so the raw copy is safe.
        _check.mapping(plain, where, ("version", "mt", "pos", "has_gauss", "gauss"))
        _check.integer(plain["version"], f"{where}.version", 3, 3)
        words = _check.blob(plain["mt"], f"{where}.mt", _MT_FORMAT.size)
        _check.mt19937(words, f"{where}.mt")  # little-endian words, as the fast path needs
        pos = _check.integer(plain["pos"], f"{where}.pos", 0, _WORDS)
        has_gauss = _check.integer(plain["has_gauss"], f"{where}.has_gauss", 0, 1)
        gauss = _DOUBLE.unpack(_check.blob(plain["gauss"], f"{where}.gauss", 8))[0]
        return (INDEX.pack(pos) + words, gauss if has_gauss else None)

    def metadata(self) -> dict[str, Plain]:
        return {"python": sys.version.split()[0]}


class PythonRandomKind(GeneratorKind):
    """``random.Random`` objects the user owns."""

    kind = "python.Random"
    framework = "random"

    def matches(self, obj: object) -> bool:
        return isinstance(obj, random.Random)

    def seed_derived(self, obj: Any, material: bytes) -> None:
        obj.seed(derived_int(material, 128))

    def get_state(self, obj: Any) -> Any:
        return obj.getstate()

    def set_state(self, obj: Any, snapshot: Any) -> None:
        obj.setstate(snapshot)

    def encode(self, snapshot: Any) -> Plain:
        return _encode(snapshot)

    def decode(self, plain: Plain, where: str) -> Any:
        return _decode(plain, where)
