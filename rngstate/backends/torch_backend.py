"""PyTorch: the CPU default generator, every CUDA device, and ``torch.Generator`` objects.

Only used once the user has imported torch; ``decode`` checks state bytes in pure Python so a
state can be validated before torch is even imported.
"""

from __future__ import annotations

import ctypes
import logging
import os
import struct
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from rngstate import _check, backends
from rngstate.backends.base import GeneratorKind, Plain, Stream, check_material, device_pairs, single_threaded
from rngstate.derive import derived_int
from rngstate.errors import InvalidStateError, RNGStateWarning, ScopeError

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
# CUDA Philox state (CUDAGeneratorImpl::get_state): u64 seed, i64 offset.  Invariants: 16
# bytes; offset >= 0 (torch counts it up from 0) and a multiple of 4 (torch refuses others).
CUDA_STATE_SIZE = 16
_CUDA = struct.Struct("<Qq")


def _torch() -> Any:
    return sys.modules["torch"]


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


def check_cuda_state(data: bytes, where: str) -> bytes:
    """Raise InvalidStateError unless ``data`` is a CUDA Philox state torch accepts."""
    _check.blob(data, where, CUDA_STATE_SIZE)
    _seed, offset = _CUDA.unpack(data)
    if offset < 0 or offset % 4:
        raise InvalidStateError(f"{where}: Philox offset {offset} must be >= 0 and a multiple of 4")
    return data


# Fast path for scopes: a torch.Generator is {PyObject_HEAD; at::Generator cdata}, cdata holding a
# pointer to the CPUGeneratorImpl, which ends with {at::mt19937 engine_ = (u64 seed_, i32 left_,
# bool seeded_, u32 next_, u32 state_[624]); optional<float> next_float_normal_sample_;
# optional<double> next_double_normal_sample_}.  Copying those 2544 bytes costs ~0.1 us against
# ~1 us for get_state + set_state.  The layout is found and verified once on scratch generators
# (against get_state, set_state and draws), then read-checked on the default generator; if
# anything disagrees, get_state/set_state are used.  The copy cannot take the generator's
# mutex, and torch's ops draw without the GIL: a draw in another thread during the copy could
# see a torn (left, next) and read past the table.  So the copy is used only while this
# process runs a single Python thread (base.single_threaded); with a background thread (a
# prefetching loader, pin_memory), get_state/set_state take the mutex as usual.
_IMPL_POINTER = 16  # cdata's pointer, right after PyObject_HEAD on 64-bit CPython
_ENGINE_HEAD = struct.Struct("<QiBxxxI")  # seed_, left_, seeded_, next_
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


def _fresh_fields(view: memoryview) -> None:
    """What :func:`_fresh_engine` does, for one engine."""
    view[8 : _ENGINE_HEAD.size] = _FRESH_FIELDS
    view[7] &= 0x7F
    view[_ENGINE_HEAD.size + 3] |= 0x80
    view[_FLOAT_CACHE_AT:] = _NO_NORMALS


def _fresh_engine(rows: Any) -> None:
    """Make each row of raw engine images (RAW_CPU_SIZE bytes) a freshly seeded engine's:
    left 624, seeded, next 1 (draws read words 1-623 of the table before the first twist, as
    after one draw past a twist; torch refuses left 625), bit 63 of the seed clear, bit 31 of
    word 0 set, no cached normals."""
    rows[:, 8 : _ENGINE_HEAD.size] = np.frombuffer(_FRESH_FIELDS, np.uint8)
    rows[:, 7] &= 0x7F
    rows[:, _ENGINE_HEAD.size + 3] |= 0x80
    rows[:, _FLOAT_CACHE_AT:] = 0


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


_ENGINE: list[int | None] = []  # the offset of engine_, or None; filled on first use
_SCRATCH = threading.local()  # per thread (no lock to inherit held across a fork): generator, view


def cpu_state_view(generator: Any) -> memoryview | None:
    """A writable view of the raw engine and normal caches of the CPU ``generator``, or None
    where that layout is not verified.  Keep ``generator`` alive meanwhile.

    >>> import torch
    >>> view = cpu_state_view(torch.Generator())
    >>> view is None or view.nbytes == RAW_CPU_SIZE
    True
    """
    torch = _torch()
    if not _ENGINE:
        try:
            _ENGINE.append(_find_engine(torch))
        except Exception:  # a torch whose API differs: then it is not the layout checked above
            logger.info("torch: raw CPU generator layout check failed", exc_info=True)
            _ENGINE.append(None)
    offset = _ENGINE[0]
    if offset is None or type(generator) is not torch.Generator or generator.device.type != "cpu":
        return None
    address = _impl_address(generator)
    if not address:
        return None
    view = memoryview((ctypes.c_char * RAW_CPU_SIZE).from_address(address + offset)).cast("B")
    return view if _raw_matches(view.tobytes(), _to_bytes(generator.get_state())) else None


def legacy_cpu_state(raw: RawCPUState) -> bytes:
    """The get_state() bytes of a raw CPU snapshot (torch converts, through a scratch generator)."""
    view = getattr(_SCRATCH, "view", None)
    if view is None:
        generator = _torch().Generator()
        view = cpu_state_view(generator)
        if view is None:  # raw snapshots exist only where the layout was verified
            raise InvalidStateError("a raw torch CPU state needs the verified generator layout")
        _SCRATCH.generator, _SCRATCH.view = generator, view
    view[:] = raw.raw
    return _to_bytes(_SCRATCH.generator.get_state())


def _to_bytes(tensor: Any) -> bytes:
    return bytes(tensor.numpy().tobytes())


def _to_tensor(data: bytes) -> Any:
    torch = _torch()
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def cuda_device_count() -> int | None:
    """CUDA devices torch sees (counting does not initialize CUDA); None without torch."""
    torch = sys.modules.get("torch")
    return None if torch is None else int(torch.cuda.device_count())


# -- CUDA start-up ---------------------------------------------------------------------------
# torch starts CUDA lazily: ``torch.cuda._lazy_init`` runs the calls queued with
# ``torch.cuda._lazy_call`` while it holds its (non-reentrant) lock and before it sets
# ``_initialized``; the seeds queued by ``torch.manual_seed`` run after the other queued calls.
# So the CUDA stream is announced from a second call appended behind those seeds, seeds the
# generators directly (``manual_seed_all`` would re-enter ``_lazy_call``: deadlock), and never
# raises (torch would turn it into DeferredCudaCallError and CUDA would not start).


def _when_cuda_starts() -> None:
    """Queued with ``torch.cuda._lazy_call``; runs inside ``_lazy_init``."""
    cuda = _torch().cuda
    queued = getattr(cuda, "_queued_calls", None)
    if hasattr(getattr(cuda, "_tls", None), "is_initializing") and isinstance(queued, list):
        queued.append((_announce_cuda, []))  # torch iterates this list: runs after its seeds
    else:  # CUDA was already up (or torch changed its start-up): announce now
        _announce_cuda()


def _announce_cuda() -> None:
    try:
        backends.announce_started(TorchCUDAStream.name)
    except Exception as exc:  # an exception here would stop CUDA from starting
        message = (
            f"rngstate: the CUDA generators could not be brought under management when CUDA "
            f"started ({type(exc).__name__}: {exc}); CUDA random numbers are not seeded by "
            "rngstate in this process"
        )
        logger.warning(message, exc_info=True)
        warnings.warn(message, RNGStateWarning, stacklevel=2)


class _SampleState:
    """A CPU generator state tensor whose seed and words are rewritten per sample.

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


def _refuse_in_graph_capture() -> None:
    """torch's CUDA generators refuse seeding and set_state while a CUDA graph is captured."""
    if _torch().cuda.is_current_stream_capturing():
        raise ScopeError(
            "the CUDA generators cannot be read, seeded or swapped while a CUDA graph is being "
            "captured (torch.cuda.graph, make_graphed_callables): enter rng_scope and call "
            "rngstate.capture()/restore()/seed_everything() outside the captured region (random "
            "ops inside a graph advance the generator at every replay)"
        )


class TorchCPUStream(Stream):
    """``torch.default_generator``: ``torch.rand``, dropout and init on CPU."""

    name = "torch.cpu"
    framework = "torch"
    _generator: Any = None  # the generator _view points into, kept alive (set by _raw)
    _view: memoryview | None = None
    _sample_state: _SampleState | None = None  # per-sample seeding's state tensor (made on first use)

    def on_activate(self) -> None:
        torch = _torch()
        if not torch.cuda.is_initialized() and not torch.cuda._is_in_bad_fork():
            torch.cuda._lazy_call(_when_cuda_starts)  # the CUDA stream starts with CUDA

    def seed(self, seed: int) -> None:
        torch = _torch()
        if torch.cuda.is_initialized():
            _refuse_in_graph_capture()  # torch.manual_seed seeds the CUDA generators too
        torch.manual_seed(seed)  # also (lazily) seeds every CUDA device, like users expect

    def seed_derived(self, material: bytes) -> None:
        _torch().default_generator.manual_seed(derived_int(material, 63))

    # Laid out like the engine and its caches (RAW_CPU_SIZE bytes): the initial seed at bytes
    # 0-7, a whole mt19937 table at 20-2515; the other bytes stand where the engine's
    # positions and cached normals go, so that a sample block rewritten once (sample_writer)
    # is one copy per sample.
    sample_material = RAW_CPU_SIZE

    def seed_from_material(self, material: bytes | memoryview) -> None:
        """Give ``torch.default_generator`` a whole mt19937 table from the material, as the
        rngstate loaders do per sample: ``torch.initial_seed()`` bytes 0-7 (little-endian, top
        bit cleared), the 624 words bytes 20-2515 (little-endian uint32, the first one's top
        bit set: never the all-zero table), read from word 1 on before any twist.
        ``manual_seed`` keeps only 32 bits of its seed (ATen's mt19937 seeds from ``seed &
        0xffffffff``): among 77,000 samples, two share a seed with even odds.  Written straight
        into the engine when the scopes' raw view is verified and no other thread runs, else
        into a state tensor of torch's own making applied with ``set_state`` (~1.3 us); the
        same state either way.
        """
        check_material(material, self.sample_material)
        generator = sys.modules["torch"].default_generator
        view = self._view if generator is self._generator else self._raw()
        if view is not None and single_threaded():
            view[:] = material
            _fresh_fields(view)
            return
        filler = self._sample_state
        if filler is None:
            filler = self._sample_state = _SampleState(_torch())
        _torch().default_generator.set_state(filler.fill(material))

    def sample_writer(self, block: memoryview, start: int, stride: int) -> Callable[[int], None]:
        """Per sample one copy of the engine (~0.3 us), the block's positions, seed and word-0
        bits and caches rewritten beforehand for all its samples."""
        view = self._raw()
        if view is None:
            return super().sample_writer(block, start, stride)
        _fresh_engine(np.frombuffer(block, np.uint8).reshape(-1, stride)[:, start : start + RAW_CPU_SIZE])
        generator, torch, end, seed = self._generator, _torch(), start + RAW_CPU_SIZE, self.seed_from_material

        def write(base: int) -> None:
            if single_threaded() and torch.default_generator is generator:
                view[:] = block[base + start : base + end]
            else:  # another thread may draw: set_state takes the generator's mutex
                seed(block[base + start : base + end])

        return write

    def _raw(self) -> memoryview | None:
        generator = _torch().default_generator
        if generator is not self._generator:
            self._view = cpu_state_view(generator)
            self._generator = generator  # keeps what the view points into alive
        return self._view

    def get_state(self) -> Any:
        generator = sys.modules["torch"].default_generator
        view = self._view if generator is self._generator else self._raw()
        if view is not None and single_threaded():  # a raw copy (~0.2 us against ~0.9 us)
            return RawCPUState(view.tobytes())
        return generator.get_state()

    def set_state(self, snapshot: Any) -> None:
        generator = sys.modules["torch"].default_generator
        if type(snapshot) is RawCPUState:
            view = self._view if generator is self._generator else self._raw()
            if view is not None and single_threaded():
                view[:] = snapshot.raw
                return
            snapshot = legacy_cpu_state(snapshot)
        if not isinstance(snapshot, _torch().Tensor):
            snapshot = _to_tensor(snapshot)
        generator.set_state(snapshot)

    def exchange_material(self, material: bytes | memoryview) -> Any:
        generator = sys.modules["torch"].default_generator
        view = self._view if generator is self._generator else self._raw()
        if view is None or len(material) != self.sample_material or not single_threaded():
            return super().exchange_material(material)
        previous = RawCPUState(view.tobytes())
        view[:] = material
        _fresh_fields(view)
        return previous

    def exchange(self, snapshot: Any) -> Any:
        generator = sys.modules["torch"].default_generator
        # The scope hot path: _raw() inlined for the generator it last saw.
        view = self._view if generator is self._generator else self._raw()
        if view is None or not single_threaded():  # others may draw without the GIL
            previous = generator.get_state()
        else:
            previous = RawCPUState(view.tobytes())
            if type(snapshot) is RawCPUState:
                view[:] = snapshot.raw
                return previous
        if type(snapshot) is RawCPUState:
            snapshot = legacy_cpu_state(snapshot)
        generator.set_state(snapshot if not isinstance(snapshot, bytes) else _to_tensor(snapshot))
        return previous

    def encode(self, snapshot: Any) -> Plain:
        if type(snapshot) is RawCPUState:
            return legacy_cpu_state(snapshot)
        return snapshot if isinstance(snapshot, bytes) else _to_bytes(snapshot)

    def decode(self, plain: Plain, where: str) -> Any:
        return check_cpu_state(plain, where)

    def metadata(self) -> dict[str, Plain]:
        torch = _torch()
        meta: dict[str, Plain] = {"torch": str(torch.__version__)}
        if torch.cuda.is_initialized():
            meta["cuda_devices"] = [
                torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
            ]
        return meta


class TorchCUDAStream(Stream):
    """Every CUDA device's default generator; active once CUDA is initialized.

    Works from inside ``torch.cuda._lazy_init`` (CUDA starting, ``is_initialized()`` still
    False): it touches only ``torch.cuda.default_generators``, never torch's queued calls.
    """

    name = "torch.cuda"
    framework = "torch"

    def is_active(self) -> bool:
        torch = sys.modules.get("torch")
        # False in a child forked after CUDA started: CUDA cannot be used there at all.
        return torch is not None and torch.cuda.is_initialized()

    def device_count(self) -> int | None:
        return cuda_device_count()

    def _generators(self) -> Any:
        _refuse_in_graph_capture()
        return _torch().cuda.default_generators

    def seed(self, seed: int) -> None:
        for generator in self._generators():  # what manual_seed_all does, without _lazy_call
            generator.manual_seed(seed)

    def seed_derived(self, material: bytes) -> None:
        for generator in self._generators():
            generator.manual_seed(derived_int(material, 63))

    def get_state(self) -> Any:
        return [generator.get_state() for generator in self._generators()]

    def set_state(self, snapshot: Any) -> None:
        for generator, state in device_pairs(self._generators(), snapshot, "CUDA device"):
            generator.set_state(state if not isinstance(state, bytes) else _to_tensor(state))

    def encode(self, snapshot: Any) -> Plain:
        return [state if isinstance(state, bytes) else _to_bytes(state) for state in snapshot]

    def decode(self, plain: Plain, where: str) -> Any:
        devices = _check.sequence(plain, where)
        return [check_cuda_state(state, f"{where}[{i}]") for i, state in enumerate(devices)]


class TorchGeneratorKind(GeneratorKind):
    """``torch.Generator`` objects on any device (e.g. ``DataLoader(generator=...)``)."""

    kind = "torch.Generator"
    framework = "torch"

    def matches(self, obj: object) -> bool:
        torch = sys.modules.get("torch")
        return torch is not None and isinstance(obj, torch.Generator)

    def seed_derived(self, obj: Any, material: bytes) -> None:
        if obj.device.type == "cuda":
            _refuse_in_graph_capture()
        obj.manual_seed(derived_int(material, 63))

    def get_state(self, obj: Any) -> Any:
        if obj.device.type == "cuda":
            _refuse_in_graph_capture()
        return {"device": str(obj.device), "state": obj.get_state()}

    def set_state(self, obj: Any, snapshot: Any) -> None:
        if obj.device.type == "cuda":
            _refuse_in_graph_capture()
        if str(obj.device).split(":")[0] != snapshot["device"].split(":")[0]:
            raise InvalidStateError(
                f"cannot restore a {snapshot['device']} generator state into a generator on "
                f"{obj.device}; create it on the same kind of device"
            )
        state = snapshot["state"]
        obj.set_state(state if not isinstance(state, bytes) else _to_tensor(state))

    def encode(self, snapshot: Any) -> Plain:
        state = snapshot["state"]
        data = state if isinstance(state, bytes) else _to_bytes(state)
        return {"device": snapshot["device"], "state": data}

    def decode(self, plain: Plain, where: str) -> Any:
        _check.mapping(plain, where, ("device", "state"))
        device = _check.text(plain["device"], f"{where}.device")
        if device == "cpu":
            state = check_cpu_state(plain["state"], f"{where}.state")
        elif device.startswith("cuda"):
            state = check_cuda_state(plain["state"], f"{where}.state")
        else:
            raise InvalidStateError(f"{where}.device: {device!r} generators are not supported")
        return {"device": device, "state": state}


def new_generator(device: str) -> Any:
    """A fresh ``torch.Generator`` on ``device`` (the caller asked for torch explicitly)."""
    import torch

    return torch.Generator(device=device)


# -- torch.distributed: rank detection and byte collectives (no pickling: gather_object pickles) --


def process_group() -> tuple[int, int] | None:
    """(rank, world size) of an initialized default process group, else None."""
    if "torch.distributed" not in sys.modules:
        return None
    dist = _torch().distributed
    if not (dist.is_available() and dist.is_initialized()):
        return None
    return int(dist.get_rank()), int(dist.get_world_size())


def group_kind(obj: object) -> str | None:
    """``"group"`` for a ProcessGroup, ``"mesh"`` for a DeviceMesh, ``"non-member"`` for what
    ``new_group`` returns on ranks outside the group, else None."""
    if "torch.distributed" not in sys.modules or not _torch().distributed.is_available():
        return None
    dist = _torch().distributed
    if isinstance(obj, dist.ProcessGroup):
        return "group"
    if type(obj) is int and obj == dist.GroupMember.NON_GROUP_MEMBER:
        return "non-member"
    device_mesh = sys.modules.get("torch.distributed.device_mesh")  # imported by init_device_mesh
    if device_mesh is not None and isinstance(obj, device_mesh.DeviceMesh):
        return "mesh"
    return None


def rank_in_group(group: Any) -> tuple[int, int]:
    """(rank, size) of this process in ``group``; rank -1 if it is not a member."""
    dist = _torch().distributed
    if not dist.is_initialized():
        return -1, 0
    return int(dist.get_rank(group)), int(dist.get_world_size(group))


def _local_rank() -> int:
    text = os.environ.get("LOCAL_RANK", "")
    return int(text) if text.isdigit() else 0


def collective_device() -> Any:
    """The device collectives of the default group use: NCCL moves only CUDA tensors.

    The group's bound device, else the current device if the user chose it (``set_device``), else the local
    rank's device: ranks that never called ``set_device`` all sit on ``cuda:0`` (NCCL then
    fails with a duplicate GPU or hangs).
    """
    torch = _torch()
    if torch.distributed.get_backend() != "nccl":
        return torch.device("cpu")
    bound = getattr(torch.distributed.distributed_c10d._get_default_group(), "bound_device_id", None)
    if bound is not None:  # init_process_group(device_id=...): the user said so
        return bound
    current = torch.cuda.current_device()
    if current != 0 or torch.cuda.device_count() <= 1:
        return torch.device("cuda", current)
    return torch.device("cuda", _local_rank() % torch.cuda.device_count())


def gather_bytes(payload: bytes, destination: int = 0) -> list[bytes] | None:
    """Gather every rank's ``payload`` on ``destination`` (others get None), as uint8 tensors."""
    torch = _torch()
    dist = torch.distributed
    device = collective_device()
    world_size = dist.get_world_size()
    size = torch.tensor([len(payload)], dtype=torch.int64, device=device)
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world_size)]
    dist.all_gather(sizes, size)
    lengths = [int(s.item()) for s in sizes]
    buffer = torch.zeros(max(lengths), dtype=torch.uint8, device=device)
    if payload:
        buffer[: len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(device)
    if dist.get_rank() != destination:
        dist.gather(buffer, dst=destination)
        return None
    gathered = [torch.empty_like(buffer) for _ in range(world_size)]
    dist.gather(buffer, gathered, dst=destination)
    return [bytes(t[:n].cpu().numpy().tobytes()) for t, n in zip(gathered, lengths, strict=True)]


def barrier() -> None:
    """Wait for every rank of the default process group (on NCCL, on this rank's device)."""
    device = collective_device()
    if device.type == "cuda":  # without device_ids NCCL guesses the device and may pick cuda:0
        _torch().distributed.barrier(device_ids=[device.index])
    else:
        _torch().distributed.barrier()
