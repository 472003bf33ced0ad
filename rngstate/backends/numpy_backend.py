"""NumPy: the legacy global ``np.random``, ``np.random.Generator`` and ``RandomState`` objects.

NumPy accepts some impossible states without complaint (an MT19937 ``pos`` of 10**6 reads
outside its key array), so every field is range-checked here before NumPy sees it.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from rngstate import _check
from rngstate.backends import numpy_raw
from rngstate.backends.base import GeneratorKind, Plain, Stream, check_material
from rngstate.backends.numpy_raw import (
    FRESH_TABLE,
    LITTLE_ENDIAN,
    MT_RAW_SIZE,
    MT_TABLE_BYTES,
    NO_GAUSS,
    RawSnapshot,
    fingerprint_bytes,
    state_fingerprint_bytes,
    write_table,
)
from rngstate.derive import derived_int
from rngstate.errors import InvalidStateError

_U128 = 2**128 - 1
_U32 = 2**32 - 1
_DOUBLE = struct.Struct(">d")

# bit generator -> ({field of state["state"]: spec}, {top-level field: spec})
# spec: ("array", little-endian dtype, length) or ("int", low, high)
# Invariants (what NumPy produces; decode_bit_generator_state refuses everything else):
# * MT19937: 624 uint32 words and pos in [0, 624] (624: twist before the next draw); not the
#   all-zero table, which draws zeros forever (legacy standard_normal would never return);
# * PCG64, PCG64DXSM: 128-bit state and increment, the increment odd;
# * Philox: 4 x u64 counter, 2 x u64 key, 4 x u64 output buffer, buffer_pos in [0, 4]
#   (4: buffer used up); SFC64: 4 x u64 words;
# * all but MT19937: has_uint32 0 or 1 and a uint32 uinteger (the half-used 64-bit draw);
# * legacy (RandomState, global): has_gauss 0 or 1, gauss any double;
# * the bit generator type must be the live object's (a RandomState's C generator cannot be
#   swapped; only the global switches, through np.random.set_bit_generator).
_SCHEMAS: dict[str, tuple[dict[str, tuple[Any, ...]], dict[str, tuple[Any, ...]]]] = {
    "MT19937": ({"key": ("array", "<u4", 624), "pos": ("int", 0, 624)}, {}),
    "PCG64": (
        {"state": ("int", 0, _U128), "inc": ("int", 0, _U128)},
        {"has_uint32": ("int", 0, 1), "uinteger": ("int", 0, _U32)},
    ),
    "PCG64DXSM": (
        {"state": ("int", 0, _U128), "inc": ("int", 0, _U128)},
        {"has_uint32": ("int", 0, 1), "uinteger": ("int", 0, _U32)},
    ),
    "Philox": (
        {"counter": ("array", "<u8", 4), "key": ("array", "<u8", 2)},
        {
            "buffer": ("array", "<u8", 4),
            "buffer_pos": ("int", 0, 4),
            "has_uint32": ("int", 0, 1),
            "uinteger": ("int", 0, _U32),
        },
    ),
    "SFC64": (
        {"state": ("array", "<u8", 4)},
        {"has_uint32": ("int", 0, 1), "uinteger": ("int", 0, _U32)},
    ),
}
_LEGACY = {"has_gauss": ("int", 0, 1), "gauss": ("double",)}
logger = logging.getLogger(__name__)


def _encode_field(value: Any, spec: tuple[Any, ...]) -> Plain:
    if spec[0] == "array":
        return np.ascontiguousarray(value, dtype=spec[1]).tobytes()
    if spec[0] == "double":
        return _DOUBLE.pack(float(value))
    return int(value)


def _decode_field(value: Any, spec: tuple[Any, ...], where: str) -> Any:
    if spec[0] == "array":
        size = np.dtype(spec[1]).itemsize * spec[2]
        return np.frombuffer(_check.blob(value, where, size), dtype=spec[1]).astype(spec[1][1:])
    if spec[0] == "double":
        return _DOUBLE.unpack(_check.blob(value, where, 8))[0]
    return _check.integer(value, where, spec[1], spec[2])


def _fields(name: str, legacy: bool) -> tuple[dict[str, tuple[Any, ...]], dict[str, tuple[Any, ...]]]:
    inner, outer = _SCHEMAS[name]
    return inner, {**outer, **_LEGACY} if legacy else outer


def encode_bit_generator_state(state: dict[str, Any], legacy: bool) -> Plain:
    """Plain form of a ``bit_generator.state`` dict (plus the Gaussian cache when ``legacy``)."""
    name = state["bit_generator"]
    if name not in _SCHEMAS:
        raise InvalidStateError(
            f"NumPy bit generator {name!r} is not supported; use one of {sorted(_SCHEMAS)}"
        )
    inner, outer = _fields(name, legacy)
    plain: dict[str, Plain] = {"bit_generator": name}
    plain["state"] = {key: _encode_field(state["state"][key], spec) for key, spec in inner.items()}
    plain.update({key: _encode_field(state[key], spec) for key, spec in outer.items()})
    return plain


def decode_bit_generator_state(plain: Plain, where: str, legacy: bool) -> dict[str, Any]:
    """Validate the plain form and return the dict NumPy's setters take."""
    _check.mapping(plain, where)
    name = _check.text(plain.get("bit_generator"), f"{where}.bit_generator", _SCHEMAS)
    inner, outer = _fields(name, legacy)
    _check.mapping(plain, where, ("bit_generator", "state", *outer))
    _check.mapping(plain["state"], f"{where}.state", inner)
    state: dict[str, Any] = {"bit_generator": name}
    state["state"] = {
        key: _decode_field(plain["state"][key], spec, f"{where}.state.{key}")
        for key, spec in inner.items()
    }
    state.update(
        {key: _decode_field(plain[key], spec, f"{where}.{key}") for key, spec in outer.items()}
    )
    if name == "MT19937":
        _check.mt19937(state["state"]["key"], f"{where}.state.key")
    elif name in ("PCG64", "PCG64DXSM") and not state["state"]["inc"] & 1:
        # NumPy always makes the increment odd; an even one can pin the LCG to one value.
        raise InvalidStateError(f"{where}.state.inc: a {name} increment must be odd")
    return state


def _seed_sequence(material: bytes) -> np.random.SeedSequence:
    return np.random.SeedSequence(derived_int(material, 128))


def _set_random_state(random_state: np.random.RandomState, snapshot: dict[str, Any]) -> None:
    """Apply a validated legacy state.  A RandomState's bit generator is fixed in C when the
    object is built: assigning ``random_state._bit_generator`` only rebinds a Python attribute
    while the C generator keeps pointing into the old object's memory, which then gets freed
    (draws from freed memory, heap corruption).  So a state of another bit generator type is
    installed into the global through NumPy's own ``np.random.set_bit_generator``, and refused
    for a tracked RandomState."""
    name = snapshot["bit_generator"]
    live = type(random_state._bit_generator).__name__
    if live != name:
        if random_state is not np.random.mtrand._rand:
            raise InvalidStateError(
                f"cannot restore a {name} state into a RandomState using {live}; create it "
                f"with the same bit generator: np.random.RandomState(np.random.{name}())"
            )
        switch = getattr(np.random, "set_bit_generator", None)
        if switch is None:
            raise InvalidStateError(
                f"the state's np.random uses {name}; NumPy {np.__version__} cannot switch the "
                "global's bit generator (np.random.set_bit_generator needs NumPy >= 1.25)"
            )
        bit_generator = getattr(np.random, name)()
        bit_generator.state = snapshot
        switch(bit_generator)  # the global's documented switch
    random_state.set_state(snapshot)


def _seed_random_state(random_state: np.random.RandomState, material: bytes) -> None:
    bit_generator = type(random_state._bit_generator)(_seed_sequence(material))
    random_state.set_state({**bit_generator.state, "has_gauss": 0, "gauss": 0.0})


_mtrand = np.random.mtrand  # holds the global RandomState, ``_rand``


class NumpyStream(Stream):
    """The global legacy ``np.random`` (``np.random.rand``, ``np.random.shuffle``, ...).

    Snapshots are :class:`~rngstate.backends.numpy_raw.RawSnapshot` where the raw layout is
    verified (copies holding the bit generator's lock, :mod:`rngstate.backends.numpy_raw`),
    else ``get_state(legacy=False)`` dicts.
    """

    name = "numpy"
    framework = "numpy"

    def __init__(self) -> None:
        self._gauss_offset = numpy_raw.gauss_offset()
        # The objects the views point into, kept alive while the views exist.
        self._owners: tuple[Any, Any] = (None, None)
        self._views: tuple[memoryview, memoryview] | None = None
        self._pieces: Any = None  # numpy_raw.crc_pieces of the views: what a step trace reads
        if self._gauss_offset is None:
            logger.info("numpy: raw state copy unavailable, using get_state/set_state")

    def _raw(self) -> tuple[memoryview, memoryview] | None:
        """Views of the global MT19937 state and Gaussian cache, or None (slow path).  Copies
        through them hold the bit generator's lock (``self._owners[1].lock``)."""
        random_state = np.random.mtrand._rand
        bit_generator = random_state._bit_generator
        if self._owners[0] is not random_state or self._owners[1] is not bit_generator:
            self._owners = (random_state, bit_generator)
            self._views = None
            if self._gauss_offset is not None and type(bit_generator) is np.random.MT19937:
                self._views = numpy_raw.views(random_state, self._gauss_offset)
                self._pieces = numpy_raw.crc_pieces(self._views)
        return self._views

    def is_active(self) -> bool:
        return True

    def seed(self, seed: int) -> None:
        try:
            np.random.seed(seed)
        except TypeError:  # the global uses a non-MT19937 bit generator: it cannot legacy-seed
            _seed_random_state(np.random.mtrand._rand, seed.to_bytes(16, "big"))

    def seed_derived(self, material: bytes) -> None:
        _seed_random_state(np.random.mtrand._rand, material)

    # A whole MT19937 table, then 8 bytes that stand where its pos goes, so that a sample
    # block rewritten once (sample_writer) is copied over table and pos at once.
    sample_material = MT_TABLE_BYTES + 8

    def seed_from_material(self, material: bytes | memoryview) -> None:
        """Give the global generator a whole MT19937 table from the material, as the rngstate
        loaders do per sample: the state ``set_state(("MT19937", words, 1, 0, 0.0))`` with
        ``words`` the first 2,496 bytes as little-endian uint32, the first one's top bit set
        (what ``init_by_array`` does: never the all-zero table); pos 1, as in Python's stream:
        words 1-623 are read before any twist, word 0 (its top bit forced) never is.
        Writing the table costs ~0.4 us against ~8 us for ``np.random.seed`` of 128 bits.  A
        global that is not MT19937 (``np.random.set_bit_generator``) gets :meth:`seed_derived`
        of the first 32 bytes.

        >>> import numpy as np
        >>> stream = NumpyStream()
        >>> stream.seed_from_material(bytes(range(256)) * 9 + bytes(200))
        >>> state = np.random.get_state(legacy=False)
        >>> int(state["state"]["key"][1]), state["state"]["pos"]
        (117835012, 1)
        """
        check_material(material, self.sample_material)
        table = material[:MT_TABLE_BYTES]
        random_state, owners = _mtrand._rand, self._owners
        owned = random_state is owners[0] and random_state._bit_generator is owners[1]
        views = self._views if owned else self._raw()
        if views is not None and LITTLE_ENDIAN:
            with self._owners[1].lock:
                write_table(views, table)
            return
        if type(random_state._bit_generator) is not np.random.MT19937:
            self.seed_derived(bytes(table[:32]))
            return
        words = np.frombuffer(table, "<u4")
        words = words.astype(np.uint32)
        words[0] |= 0x80000000
        _set_random_state(random_state, {"bit_generator": "MT19937",
                                         "state": {"key": words, "pos": 1},
                                         "has_gauss": 0, "gauss": 0.0})

    def sample_writer(self, block: memoryview, start: int, stride: int) -> Callable[[int], None]:
        """Per sample one copy of 2,500 bytes over table and pos (~0.3 us) and the Gaussian
        cache cleared, the block's word-0 bits and pos rewritten beforehand for all its samples."""
        views = self._raw() if LITTLE_ENDIAN else None
        if views is None:
            return super().sample_writer(block, start, stride)
        slots = np.frombuffer(block, np.uint8).reshape(-1, stride)[:, start : start + self.sample_material]
        slots[:, 3] |= 0x80  # the top byte of word 0
        slots[:, MT_TABLE_BYTES:MT_RAW_SIZE] = np.frombuffer(FRESH_TABLE, np.uint8)  # pos 1
        (mt_view, gauss_view), (random_state, bit_generator) = views, self._owners
        mtrand, end, lock = np.random.mtrand, start + MT_RAW_SIZE, bit_generator.lock
        size, seed = self.sample_material, self.seed_from_material

        def write(base: int) -> None:
            if mtrand._rand is not random_state or random_state._bit_generator is not bit_generator:
                seed(block[base + start : base + start + size])  # the sample swapped the global
            else:
                lock.acquire()  # not `with`: its two method calls cost as much as the copies
                try:
                    mt_view[:] = block[base + start : base + end]
                    gauss_view[:] = NO_GAUSS
                finally:
                    lock.release()

        return write

    # seed_from_material, get_state, set_state and the exchanges run per sample, per batch and
    # per scope, in caches the user's code has just cooled: _raw() is inlined for the objects
    # they last saw (3 us a batch measured).
    def get_state(self) -> Any:
        random_state, owners = _mtrand._rand, self._owners
        owned = random_state is owners[0] and random_state._bit_generator is owners[1]
        views = self._views if owned else self._raw()
        if views is None:
            return random_state.get_state(legacy=False)
        lock = self._owners[1].lock
        lock.acquire()  # not `with` (here and below): its two method calls cost more than the copies
        try:
            mt, gauss = views[0].tobytes(), views[1].tobytes()
        finally:
            lock.release()
        return RawSnapshot(mt, gauss)  # not under the lock: see exchange()

    def set_state(self, snapshot: Any) -> None:
        if type(snapshot) is RawSnapshot:
            random_state, owners = _mtrand._rand, self._owners
            owned = random_state is owners[0] and random_state._bit_generator is owners[1]
            views = self._views if owned else self._raw()
            if views is not None:
                lock = self._owners[1].lock
                lock.acquire()
                try:
                    views[0][:], views[1][:] = snapshot.mt, snapshot.gauss
                finally:
                    lock.release()
                return
            snapshot = snapshot.as_state()
        _set_random_state(_mtrand._rand, snapshot)

    def exchange_material(self, material: bytes | memoryview) -> Any:
        random_state, owners = _mtrand._rand, self._owners
        owned = random_state is owners[0] and random_state._bit_generator is owners[1]
        views = self._views if owned else self._raw()
        if views is None or not LITTLE_ENDIAN or len(material) != self.sample_material:
            return super().exchange_material(material)
        lock = self._owners[1].lock
        lock.acquire()
        try:
            mt, gauss = views[0].tobytes(), views[1].tobytes()
            write_table(views, material[:MT_TABLE_BYTES])
        finally:
            lock.release()
        return RawSnapshot(mt, gauss)  # not under the lock: see exchange()

    def exchange(self, snapshot: Any) -> Any:
        # The scope hot path: both raw copies under the bit generator's lock.
        random_state, (owner, bit_generator) = _mtrand._rand, self._owners
        if random_state is owner and random_state._bit_generator is bit_generator:
            views = self._views
        else:
            views = self._raw()
            bit_generator = self._owners[1]
        if views is not None and type(snapshot) is RawSnapshot:
            mt_view, gauss_view = views
            lock = bit_generator.lock
            lock.acquire()
            try:
                mt, gauss = mt_view.tobytes(), gauss_view.tobytes()
                mt_view[:] = snapshot.mt
                gauss_view[:] = snapshot.gauss
            finally:
                lock.release()
            # Made after the lock is released: a RawSnapshot is tracked by the cyclic collector,
            # so making one may run a collection, whose finalizers may draw from np.random (the
            # lock is not reentrant: they would wait for ever).  Plain bytes never collect.
            return RawSnapshot(mt, gauss)
        return super().exchange(snapshot)

    exchange_outer = exchange  # nothing to leave out on entry: one call, not two

    def encode(self, snapshot: Any) -> Plain:
        if type(snapshot) is RawSnapshot:
            snapshot = snapshot.as_state()
        return encode_bit_generator_state(snapshot, legacy=True)

    # The MT19937 table and pos, then the Gaussian cache (has_gauss, gauss), as raw copies hold
    # them; None for a global of another bit generator.
    def state_crc(self) -> int | None:
        random_state, owners = _mtrand._rand, self._owners
        owned = random_state is owners[0] and random_state._bit_generator is owners[1]
        views = self._views if owned else self._raw()
        if views is None:
            return super().state_crc()
        lock = self._owners[1].lock  # _raw() may just have replaced the owners
        lock.acquire()  # without `with`: half the cost, right after a training step
        try:
            return numpy_raw.pieces_crc(self._pieces)
        finally:
            lock.release()

    def state_bytes(self) -> bytes | None:
        random_state, owners = _mtrand._rand, self._owners
        owned = random_state is owners[0] and random_state._bit_generator is owners[1]
        views = self._views if owned else self._raw()
        if views is None:
            return state_fingerprint_bytes(random_state.get_state(legacy=False))
        with self._owners[1].lock:
            mt, gauss = views[0].tobytes(), views[1].tobytes()
        return fingerprint_bytes(mt, gauss)

    def snapshot_bytes(self, snapshot: Any) -> bytes | None:
        if type(snapshot) is RawSnapshot:
            return fingerprint_bytes(snapshot.mt, snapshot.gauss)
        return state_fingerprint_bytes(snapshot)

    def decode(self, plain: Plain, where: str) -> Any:
        state = decode_bit_generator_state(plain, where, legacy=True)
        if self._gauss_offset is not None and state["bit_generator"] == "MT19937":
            return RawSnapshot.from_state(state)  # validated: pos in [0, 624]
        return state

    def metadata(self) -> dict[str, Plain]:
        return {"numpy": np.__version__}


class NumpyGeneratorKind(GeneratorKind):
    """``np.random.Generator`` objects (state lives in their bit generator)."""

    kind = "numpy.Generator"
    framework = "numpy"

    def matches(self, obj: object) -> bool:
        return isinstance(obj, np.random.Generator)

    def seed_derived(self, obj: Any, material: bytes) -> None:
        obj.bit_generator.state = type(obj.bit_generator)(_seed_sequence(material)).state

    def get_state(self, obj: Any) -> Any:
        return obj.bit_generator.state

    def set_state(self, obj: Any, snapshot: Any) -> None:
        if type(obj.bit_generator).__name__ != snapshot["bit_generator"]:
            raise InvalidStateError(
                f"cannot restore a {snapshot['bit_generator']} state into a Generator using "
                f"{type(obj.bit_generator).__name__}; create it with the same bit generator"
            )
        obj.bit_generator.state = snapshot

    def encode(self, snapshot: Any) -> Plain:
        return encode_bit_generator_state(snapshot, legacy=False)

    def decode(self, plain: Plain, where: str) -> Any:
        return decode_bit_generator_state(plain, where, legacy=False)


class NumpyRandomStateKind(GeneratorKind):
    """``np.random.RandomState`` objects, Gaussian cache included."""

    kind = "numpy.RandomState"
    framework = "numpy"

    def matches(self, obj: object) -> bool:
        return isinstance(obj, np.random.RandomState)

    def seed_derived(self, obj: Any, material: bytes) -> None:
        _seed_random_state(obj, material)

    def get_state(self, obj: Any) -> Any:
        return obj.get_state(legacy=False)

    def set_state(self, obj: Any, snapshot: Any) -> None:
        _set_random_state(obj, snapshot)

    def encode(self, snapshot: Any) -> Plain:
        return encode_bit_generator_state(snapshot, legacy=True)

    def decode(self, plain: Plain, where: str) -> Any:
        return decode_bit_generator_state(plain, where, legacy=True)
