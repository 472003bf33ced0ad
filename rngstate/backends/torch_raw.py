"""torch's CPU generator as raw memory: the ``get_state()`` bytes and the live engine.

Two layouts, each next to the public-API path it must equal:

* ``get_state()`` / ``set_state()`` bytes (ATen's legacy ``CPUGeneratorImplState``, 5,056
  bytes): :func:`check_cpu_state` validates them in pure Python, before torch (or a file)
  sees them, against the invariants of a state torch itself produces;
* the engine inside a live ``torch.Generator`` (the scopes' and per-sample seeding's fast
  path): a ``torch.Generator`` is ``{PyObject_HEAD; at::Generator cdata}``, cdata pointing to
  the ``CPUGeneratorImpl``, which starts with ``{vtable; refcounts; std::mutex mutex_; ...}``
  and ends with ``{at::mt19937 engine_ = (u64 seed_, i32 left_, bool seeded_, u32 next_,
  u32 state_[624]); optional<float> next_float_normal_sample_; optional<double>
  next_double_normal_sample_}``.  Copying those 2,544 bytes costs ~0.1 us against ~1 us for
  ``get_state`` + ``set_state``.

Verified at run time, once per process, on scratch generators (:func:`cpu_state_view`): the
engine is found by a distinctive seed and checked field by field against ``get_state``,
``set_state`` and draws (caches included); the mutex is the 40 bytes after the refcounts,
glibc's ``pthread_mutex_t``, seen held by a thread while that thread draws and taken and
released by ``pthread_mutex_trylock`` / ``pthread_mutex_unlock``.  Every raw copy holds that
mutex, which torch's own draws, ``get_state`` and ``set_state`` hold, so it is as safe as the
public API for every thread, torch's native ones included (``torch.jit.fork``, the inter-op
pool, extensions); a mutex that is busy sends the caller to the public path, which waits for
it.  Where anything disagrees (another torch, libc or platform) there is no view and the
callers use ``get_state`` / ``set_state``.  What a copy reads is checked against the engine's
invariants (:func:`check_engine`) before it is kept, and converted and checked in full
(:func:`legacy_cpu_state`) before it is saved.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import platform
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from zlib import crc32

import numpy as np

from rngstate import _check
from rngstate.errors import InvalidStateError

logger = logging.getLogger(__name__)

# CPUGeneratorImplState: legacy pod {i64 initial_seed, i32 left, i32 seeded, u64 next,
# u64 state[624], f64 normal_x, normal_y, normal_rho, i32 normal_is_valid, pad}, then
# f32 next_float_normal_sample, bool valid, pad.
# Invariants of a state torch produces (ATen's at::mt19937, checked by check_cpu_state):
# * seeded == 1; every word < 2**32 (the engine keeps 32-bit words);
# * a draw does ``if (--left == 0) twist(); return state[next++]``, a twist sets left = 624 and
#   next = 0, and manual_seed sets left = 1, next = 0.  So either (left, next) == (1, 0) or
#   left + next == 625 with 1 <= left <= 624.  torch itself only checks 1 <= left <= 624 and
#   next <= 624: left = next = 624 passes it and then reads 622 words past the table;
# * not the all-zero table (draws zeros forever: normal samplers never return);
# * the two "cached normal valid" flags are 0 or 1 (a bool holding 2 is undefined behaviour).
CPU_STATE_SIZE = 5056
_MT_N = 624
_CPU_HEAD = struct.Struct("<qiiQ")
_CPU_WORDS = struct.Struct(f"<{_MT_N}Q")
_NORMAL_VALID = struct.Struct("<i")
_NORMAL_VALID_OFFSET = _CPU_HEAD.size + _CPU_WORDS.size + 24
_FLOAT_VALID_OFFSET = 5052
_LITTLE_ENDIAN = sys.byteorder == "little"

def check_cpu_state(data: bytes, where: str) -> bytes:
    """Raise InvalidStateError unless ``data`` is a CPU generator state torch accepts."""
    _check.blob(data, where, CPU_STATE_SIZE)
    _seed, left, seeded, next_index = _CPU_HEAD.unpack_from(data)
    position_ok = (left, next_index) == (1, 0) or (1 <= left <= _MT_N and left + next_index == _MT_N + 1)
    if seeded != 1 or not position_ok:
        raise InvalidStateError(
            f"{where}: not a valid mt19937 state (left={left}, seeded={seeded}, next={next_index})"
        )
    words = np.frombuffer(data, dtype="<u8", count=_MT_N, offset=_CPU_HEAD.size)
    if words.max() > 0xFFFFFFFF:
        raise InvalidStateError(f"{where}: mt19937 words must fit in 32 bits")
    _check.mt19937(words, where)
    if _NORMAL_VALID.unpack_from(data, _NORMAL_VALID_OFFSET)[0] not in (0, 1):
        raise InvalidStateError(f"{where}: the cached-normal flag must be 0 or 1")
    if data[_FLOAT_VALID_OFFSET] not in (0, 1):
        raise InvalidStateError(f"{where}: the cached float-normal flag must be 0 or 1")
    return data


_IMPL_POINTER = 16  # cdata's pointer, right after PyObject_HEAD on 64-bit CPython
_ENGINE_HEAD = struct.Struct("<QiBxxxI")  # seed_, left_, seeded_, next_
_ENGINE_POSITION = struct.Struct("<iBxxxI").unpack_from  # left_, seeded_, next_ (at byte 8)
_FLOAT_CACHE = struct.Struct("<f?3x")  # optional<float>: value, engaged
_DOUBLE_CACHE = struct.Struct("<d?7x")  # optional<double>
_FLOAT_CACHE_AT = _ENGINE_HEAD.size + 4 * _MT_N + 4  # 2520: engine_ is padded to 8 bytes
_DOUBLE_CACHE_AT = _FLOAT_CACHE_AT + _FLOAT_CACHE.size  # 2528
RAW_CPU_SIZE = _DOUBLE_CACHE_AT + _DOUBLE_CACHE.size  # 2544
_FRESH_FIELDS = _ENGINE_HEAD.pack(0, _MT_N, True, 1)[8:]  # left 624, seeded, next 1: read from word 1 on
_NO_NORMALS = bytes(RAW_CPU_SIZE - _FLOAT_CACHE_AT)  # both cached normals disengaged
_LEGACY_HEAD = struct.Struct("<QiiQ")
_LEGACY_NORMAL = struct.Struct("<ddd i")  # normal_x, normal_y (the cached double), rho, valid
_LEGACY_FLOAT = struct.Struct("<f?")  # next_float_normal_sample, valid
_LEGACY_FLOAT_AT = _FLOAT_VALID_OFFSET - 4
_PROBE_SEED = 0x1D2C3B4A59687706  # distinctive bytes to find engine_.seed_ by


def fresh_fields(view: memoryview) -> None:
    """What :func:`fresh_engine` does, for one engine."""
    view[8 : _ENGINE_HEAD.size] = _FRESH_FIELDS
    view[7] &= 0x7F
    view[_ENGINE_HEAD.size + 3] |= 0x80
    view[_FLOAT_CACHE_AT:] = _NO_NORMALS


def fresh_engine(rows: Any) -> None:
    """Make each row of raw engine images (RAW_CPU_SIZE bytes) a freshly seeded engine's:
    left 624, seeded, next 1 (draws read words 1-623 of the table before the first twist, as
    after one draw past a twist; torch refuses left 625), bit 63 of the seed clear, bit 31 of
    word 0 set, no cached normals."""
    rows[:, 8 : _ENGINE_HEAD.size] = np.frombuffer(_FRESH_FIELDS, np.uint8)
    rows[:, 7] &= 0x7F
    rows[:, _ENGINE_HEAD.size + 3] |= 0x80
    rows[:, _FLOAT_CACHE_AT:] = 0


class SampleState:
    """A CPU generator state tensor whose seed and words are rewritten per sample: what the
    raw per-sample write (:func:`fresh_engine`) must equal, through ``set_state``.

    It starts as a freshly seeded generator's state (no cached normals), positioned after the
    table's first word; only the initial seed and the 624 words change per sample.
    """

    def __init__(self, torch: Any) -> None:
        self.tensor = torch.Generator().manual_seed(0).get_state()
        data = self.tensor.numpy()
        # left = 624, next = 1: as one draw after a twist, so draws read words 1-623 of the
        # table before the first twist (left = 625 would skip nothing, but torch refuses it).
        head = _CPU_HEAD.unpack_from(data)
        data[: _CPU_HEAD.size] = np.frombuffer(_CPU_HEAD.pack(head[0], _MT_N, head[2], 1), np.uint8)
        check_cpu_state(data.tobytes(), "the per-sample state")
        self._bytes = memoryview(data)  # item writes through it cost less than NumPy's
        self._words = data[_CPU_HEAD.size : _CPU_HEAD.size + _CPU_WORDS.size].view("=u8")
        self._top = _CPU_HEAD.size + (3 if sys.byteorder == "little" else 4)  # bit 31 of word 0

    def fill(self, material: bytes | memoryview) -> Any:
        """The state tensor holding the seed and table of ``material`` (TorchCPUStream's
        per-sample layout)."""
        if _LITTLE_ENDIAN:
            self._bytes[:8] = material[:8]
            self._bytes[7] &= 0x7F
        else:
            seed = int.from_bytes(material[:8], "little") & (2**63 - 1)
            self._bytes[:8] = seed.to_bytes(8, sys.byteorder)
        np.copyto(self._words, np.frombuffer(material, "<u4", _MT_N, _ENGINE_HEAD.size))  # widened to 64 bits
        self._bytes[self._top] |= 0x80
        return self.tensor


class RawCPUState:
    """The default CPU generator's engine and normal caches as raw bytes (fast path only)."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw


def _impl_address(generator: Any) -> int:
    return ctypes.c_void_p.from_address(id(generator) + _IMPL_POINTER).value or 0


def _raw_matches(raw: bytes, legacy: bytes) -> bool:
    """True when ``raw`` (engine and caches) describes the same generator as ``legacy``."""
    seed, left, seeded, next_index = _ENGINE_HEAD.unpack_from(raw)
    if (seed, left, int(seeded), next_index) != _LEGACY_HEAD.unpack_from(legacy):
        return False
    words = np.frombuffer(raw, dtype="<u4", count=_MT_N, offset=_ENGINE_HEAD.size)
    if not np.array_equal(words, np.frombuffer(legacy, dtype="<u8", count=_MT_N, offset=_CPU_HEAD.size)):
        return False
    _x, normal, _rho, normal_valid = _LEGACY_NORMAL.unpack_from(legacy, _CPU_HEAD.size + _CPU_WORDS.size)
    cached, cached_valid = _DOUBLE_CACHE.unpack_from(raw, _DOUBLE_CACHE_AT)
    if (cached_valid, cached_valid and cached) != (bool(normal_valid), normal_valid and normal):
        return False
    float_cached, float_valid = _FLOAT_CACHE.unpack_from(raw, _FLOAT_CACHE_AT)
    legacy_float, legacy_float_valid = _LEGACY_FLOAT.unpack_from(legacy, _LEGACY_FLOAT_AT)
    legacy_pair = (legacy_float_valid, legacy_float_valid and legacy_float)
    return (float_valid, float_valid and float_cached) == legacy_pair


_ENGAGED = (b"\x00", b"\x01")
_LEGACY_WORDS_AT = _CPU_HEAD.size
_LEGACY_NORMAL_AT = _CPU_HEAD.size + _CPU_WORDS.size


def engine_fingerprint_bytes(raw: bytes) -> bytes:
    """The bytes a step trace fingerprints of a raw engine image: every field of the state
    (seed, left, seeded, next, the table, each cached normal that is engaged) and none of the
    padding or stale cache values; what :func:`legacy_fingerprint_bytes` gives of the same
    generator's ``get_state()`` bytes."""
    float_valid, double_valid = raw[_FLOAT_CACHE_AT + 4], raw[_DOUBLE_CACHE_AT + 8]
    return b"".join((
        raw[:13], raw[16 : _ENGINE_HEAD.size + 4 * _MT_N], _ENGAGED[float_valid & 1],
        raw[_FLOAT_CACHE_AT : _FLOAT_CACHE_AT + 4] if float_valid else b"", _ENGAGED[double_valid & 1],
        raw[_DOUBLE_CACHE_AT : _DOUBLE_CACHE_AT + 8] if double_valid else b"",
    ))


def engine_pieces(view: memoryview) -> tuple[memoryview, ...]:
    """The slices of an engine view that :func:`engine_crc` reads (made once per view)."""
    return (view, view[:13], view[16 : _ENGINE_HEAD.size + 4 * _MT_N],
            view[_FLOAT_CACHE_AT : _FLOAT_CACHE_AT + 4], view[_DOUBLE_CACHE_AT : _DOUBLE_CACHE_AT + 8])


def engine_crc(pieces: tuple[memoryview, ...]) -> int:
    """``zlib.crc32(engine_fingerprint_bytes(view))`` of :func:`engine_pieces`, read in place
    (the caller holds the mutex).  Every piece is under 5 KiB, which CPython's ``crc32`` reads
    without releasing the GIL, as ``tobytes`` would: no other thread runs Python meanwhile."""
    view, head, table, float_cache, double_cache = pieces
    float_valid, double_valid = view[_FLOAT_CACHE_AT + 4], view[_DOUBLE_CACHE_AT + 8]
    crc = crc32(_ENGAGED[float_valid & 1], crc32(table, crc32(head)))
    if float_valid:
        crc = crc32(float_cache, crc)
    crc = crc32(_ENGAGED[double_valid & 1], crc)
    return crc32(double_cache, crc) if double_valid else crc


def legacy_fingerprint_bytes(legacy: bytes) -> bytes:
    """:func:`engine_fingerprint_bytes` of the generator whose ``get_state()`` bytes (a valid
    state, CPU_STATE_SIZE bytes) are ``legacy``."""
    seed, left, seeded, next_index = _LEGACY_HEAD.unpack_from(legacy)
    words = np.frombuffer(legacy, dtype="<u8", count=_MT_N, offset=_LEGACY_WORDS_AT).astype("<u4")
    _x, normal, _rho, normal_valid = _LEGACY_NORMAL.unpack_from(legacy, _LEGACY_NORMAL_AT)
    float_cached, float_valid = _LEGACY_FLOAT.unpack_from(legacy, _LEGACY_FLOAT_AT)
    return b"".join((
        struct.pack("<QiB", seed, left, seeded & 1), struct.pack("<I", next_index & 0xFFFFFFFF),
        words.tobytes(), _ENGAGED[bool(float_valid)],
        struct.pack("<f", float_cached) if float_valid else b"", _ENGAGED[bool(normal_valid)],
        struct.pack("<d", normal) if normal_valid else b"",
    ))


def _find_engine(torch: Any) -> int | None:
    """The offset of engine_ in a CPUGeneratorImpl, or None where the layout above is not what
    this torch has."""
    if sys.implementation.name != "cpython" or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    if sys.byteorder != "little" or torch.Generator.__basicsize__ < _IMPL_POINTER + 8:
        return None
    probe, target = torch.Generator(), torch.Generator()  # scratch generators
    probe.manual_seed(_PROBE_SEED)
    address, target_address = _impl_address(probe), _impl_address(target)
    if not address or address % 8 or not target_address or target_address == address:
        return None
    # engine_ follows GeneratorImpl's fields (vtable, counts, mutex, key set, device): well
    # within the first 512 bytes of an object of more than 2.5 KB.
    offset = ctypes.string_at(address, 512).find(struct.pack("<Q", _PROBE_SEED))
    if offset < 0 or offset % 8:
        return None
    view = memoryview((ctypes.c_char * RAW_CPU_SIZE).from_address(address + offset)).cast("B")
    target_view = memoryview((ctypes.c_char * RAW_CPU_SIZE).from_address(target_address + offset)).cast("B")
    if _ENGINE_HEAD.unpack_from(view) != (_PROBE_SEED, 1, True, 0):  # what manual_seed leaves
        return None
    torch.rand(1000, generator=probe)  # past a twist: every field holds something
    torch.randn(1, dtype=torch.float64, generator=probe)  # fills the cached double
    if not _raw_matches(view.tobytes(), _to_bytes(probe.get_state())):
        return None
    if not _DOUBLE_CACHE.unpack_from(view, _DOUBLE_CACHE_AT)[1]:
        return None  # the double cache must be proven in place: the copy ends with it
    # torch's ops rarely fill the float cache: write one and read it back through get_state.
    _FLOAT_CACHE.pack_into(view, _FLOAT_CACHE_AT, 1.5, True)
    if not _raw_matches(view.tobytes(), _to_bytes(probe.get_state())):
        return None
    target.manual_seed(1)
    target_view[:] = view
    expected = _to_bytes(probe.get_state())
    if _to_bytes(target.get_state()) != expected:
        return None
    for generator in (probe, target):  # the same draws afterwards, caches included
        generator.set_state(torch.frombuffer(bytearray(expected), dtype=torch.uint8))
    for _ in range(2):  # the cached double first, then past a twist
        if not torch.equal(torch.randn(3, dtype=torch.float64, generator=probe),
                           torch.randn(3, dtype=torch.float64, generator=target)):
            return None
        if not torch.equal(torch.rand(700, generator=probe), torch.rand(700, generator=target)):
            return None
    return offset



# std::mutex on glibc: a pthread_mutex_t of 40 bytes, all zero while unlocked, whose first words
# are {int __lock; unsigned __count; int __owner (the holder's thread id)}.
_MUTEX_AT = 16  # in the CPUGeneratorImpl: after the vtable pointer and the refcounts
_MUTEX_SIZE = 40
_MUTEX_HEAD = struct.Struct("=iIi")
_UNLOCKED = bytes(_MUTEX_SIZE)


def _pthread() -> tuple[Callable[[int], int], Callable[[int], int]] | None:
    """(trylock, unlock) of glibc, called holding the GIL (PyDLL: no release and re-take, and
    never blocking), or None off 64-bit glibc Linux."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.PyDLL(None)
    functions = []
    for name in ("pthread_mutex_trylock", "pthread_mutex_unlock"):
        function = getattr(libc, name)
        function.argtypes, function.restype = [ctypes.c_void_p], ctypes.c_int
        functions.append(function)
    return functions[0], functions[1]


_LOCKS = _pthread() if ctypes.sizeof(ctypes.c_void_p) == 8 else None


def _busy(address: Any) -> int:
    return errno.EBUSY


# The hot paths call these two directly (a wrapper costs a tenth of a microsecond a call):
# raw_trylock(mutex) is 0 when it took the mutex (never waits), raw_unlock(mutex) releases it; callers
# release in a ``finally`` before anything else.  Without glibc no mutex is ever verified.
raw_trylock: Callable[[Any], int] = _LOCKS[0] if _LOCKS is not None else _busy
raw_unlock: Callable[[Any], int] = _LOCKS[1] if _LOCKS is not None else _busy


def trylock(address: Any) -> bool:
    """Take the generator mutex at ``address`` if it is free (never waits); True when taken."""
    return raw_trylock(address) == 0


def unlock(address: Any) -> None:
    """Release a mutex :func:`trylock` took."""
    raw_unlock(address)


def _find_mutex(torch: Any, probe: Any, impl: int) -> int | None:
    """The address of ``probe``'s mutex where the layout above is this torch's, else None."""
    if _LOCKS is None:
        return None
    at = impl + _MUTEX_AT
    if ctypes.string_at(at, _MUTEX_SIZE) != _UNLOCKED:
        return None
    stop = threading.Event()

    def draw() -> None:  # torch holds the mutex of the generator it draws from
        while not stop.is_set():
            torch.rand(100_000, generator=probe)

    drawer = threading.Thread(target=draw, name="rngstate-torch-mutex-check", daemon=True)
    drawer.start()
    held, deadline = False, time.monotonic() + 2.0
    try:  # the GIL passes to the drawer every 5 ms: it soon draws while this loop looks
        while not held and time.monotonic() < deadline and drawer.is_alive():
            lock, _count, owner = _MUTEX_HEAD.unpack(ctypes.string_at(at, _MUTEX_HEAD.size))
            held = lock != 0 and owner == drawer.native_id
    finally:
        stop.set()
        drawer.join()
    if not held or ctypes.string_at(at, _MUTEX_SIZE) != _UNLOCKED or not trylock(at):
        return None
    try:
        lock, _count, owner = _MUTEX_HEAD.unpack(ctypes.string_at(at, _MUTEX_HEAD.size))
        ours = lock == 1 and owner == threading.get_native_id() and raw_trylock(at) == errno.EBUSY
    finally:
        unlock(at)
    return at if ours and ctypes.string_at(at, _MUTEX_SIZE) == _UNLOCKED else None


def check_engine(raw: bytes) -> bytes:
    """Raise InvalidStateError unless the raw engine ``raw`` is at a position torch's draws
    can reach (what :func:`check_cpu_state` checks of the same fields), else return it."""
    left, seeded, next_index = _ENGINE_POSITION(raw, 8)  # on every scope exit: kept lean
    if seeded and ((0 < left <= _MT_N and left + next_index == _MT_N + 1) or (left == 1 and next_index == 0)):
        return raw
    raise InvalidStateError(
        f"torch's CPU generator holds an impossible state (left={left}, seeded={int(seeded)}, "
        f"next={next_index}): something wrote it without the generator's mutex; reseed it "
        "(torch.manual_seed) or restore a saved state"
    )


class RawView:
    """A verified generator's engine (``view``, RAW_CPU_SIZE bytes) and mutex address (a
    ``c_void_p``: converted once, not per call); keep ``generator`` alive meanwhile (this
    object does)."""

    __slots__ = ("generator", "mutex", "pieces", "view")

    def __init__(self, generator: Any, view: memoryview, mutex: int) -> None:
        self.generator, self.view, self.mutex = generator, view, ctypes.c_void_p(mutex)
        self.pieces = engine_pieces(view)  # what a step trace reads of it


_LAYOUT: list[tuple[int, int] | None] = []  # (engine offset, mutex offset), or None; on first use
_SCRATCH = threading.local()  # per thread (no lock to inherit held across a fork): a RawView


def _find_layout(torch: Any) -> tuple[int, int] | None:
    engine = _find_engine(torch)
    if engine is None:
        return None
    probe = torch.Generator()
    impl = _impl_address(probe)
    mutex = _find_mutex(torch, probe, impl)
    return None if mutex is None else (engine, mutex - impl)


def cpu_state_view(generator: Any) -> RawView | None:
    """The raw engine and mutex of the CPU ``generator``, or None where that layout is not
    verified (then use ``get_state`` / ``set_state``).

    >>> import torch
    >>> raw = cpu_state_view(torch.Generator())
    >>> raw is None or raw.view.nbytes == RAW_CPU_SIZE
    True
    """
    torch = sys.modules["torch"]
    if not _LAYOUT:
        try:
            _LAYOUT.append(_find_layout(torch))
        except Exception:  # a torch whose API differs: then it is not the layout checked above
            logger.info("torch: raw CPU generator layout check failed", exc_info=True)
            _LAYOUT.append(None)
        if _LAYOUT[0] is None:
            logger.info("torch: raw CPU generator copies unavailable, using get_state/set_state")
    layout = _LAYOUT[0]
    if layout is None or type(generator) is not torch.Generator or generator.device.type != "cpu":
        return None
    address = _impl_address(generator)
    if not address:
        return None
    view = memoryview((ctypes.c_char * RAW_CPU_SIZE).from_address(address + layout[0])).cast("B")
    mutex = address + layout[1]
    legacy = _to_bytes(generator.get_state())  # takes the mutex: not while this holds it
    if not trylock(mutex):
        return None  # busy: the caller takes the public path
    try:
        raw = view.tobytes()
    finally:
        unlock(mutex)
    # A draw in between (another thread) makes them differ: then the public path, this time.
    return RawView(generator, view, mutex) if _raw_matches(raw, legacy) else None


def legacy_cpu_state(raw: RawCPUState) -> bytes:
    """The get_state() bytes of a raw CPU snapshot, checked in full (torch converts, through a
    scratch generator no other thread knows of)."""
    scratch = getattr(_SCRATCH, "raw", None)
    if scratch is None:
        scratch = cpu_state_view(sys.modules["torch"].Generator())
        if scratch is None:  # raw snapshots exist only where the layout was verified
            raise InvalidStateError("a raw torch CPU state needs the verified generator layout")
        _SCRATCH.raw = scratch
    scratch.view[:] = check_engine(raw.raw)
    return check_cpu_state(_to_bytes(scratch.generator.get_state()), "torch's CPU generator state")


def _to_bytes(tensor: Any) -> bytes:
    return bytes(tensor.numpy().tobytes())
