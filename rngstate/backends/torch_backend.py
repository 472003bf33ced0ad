"""PyTorch: the CPU default generator, every CUDA device, and ``torch.Generator`` objects.

Only used once the user has imported torch; ``decode`` checks state bytes in pure Python so a
state can be validated before torch is even imported.
"""

from __future__ import annotations

import logging
import struct
import sys
import warnings
from collections.abc import Callable
from typing import Any
from zlib import crc32

import numpy as np

from rngstate import _check, backends
from rngstate.backends.base import GeneratorKind, Plain, Stream, check_material, device_pairs
from rngstate.backends.torch_raw import (
    RAW_CPU_SIZE,
    RawCPUState,
    RawView,
    SampleState,
    check_cpu_state,
    check_engine,
    cpu_state_view,
    engine_crc,
    engine_fingerprint_bytes,
    fresh_engine,
    fresh_fields,
    legacy_cpu_state,
    legacy_fingerprint_bytes,
)
from rngstate.backends.torch_raw import raw_trylock as _trylock  # 0: taken
from rngstate.backends.torch_raw import raw_unlock as _unlock
from rngstate.derive import derived_int
from rngstate.errors import InvalidStateError, RNGStateWarning, ScopeError

logger = logging.getLogger(__name__)

# CUDA Philox state (CUDAGeneratorImpl::get_state): u64 seed, i64 offset.  Invariants: 16
# bytes; offset >= 0 (torch counts it up from 0) and a multiple of 4 (torch refuses others).
CUDA_STATE_SIZE = 16
_CUDA = struct.Struct("<Qq")


def _torch() -> Any:
    return sys.modules["torch"]


def check_cuda_state(data: bytes, where: str) -> bytes:
    """Raise InvalidStateError unless ``data`` is a CUDA Philox state torch accepts."""
    _check.blob(data, where, CUDA_STATE_SIZE)
    _seed, offset = _CUDA.unpack(data)
    if offset < 0 or offset % 4:
        raise InvalidStateError(f"{where}: Philox offset {offset} must be >= 0 and a multiple of 4")
    return data


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
    """``torch.default_generator``: ``torch.rand``, dropout and init on CPU.

    Snapshots are :class:`~rngstate.backends.torch_raw.RawCPUState` where the raw layout is
    verified (copies holding the generator's mutex, :mod:`rngstate.backends.torch_raw`), else
    ``get_state()`` tensors; a busy mutex sends one call to the public path, which waits.
    """

    name = "torch.cpu"
    framework = "torch"
    _generator: Any = None  # the generator _engine was looked up for (by _raw)
    _engine: RawView | None = None
    _sample_state: SampleState | None = None  # per-sample seeding's state tensor (made on first use)

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
        into the engine (holding its mutex) where the raw layout is verified, else into a
        state tensor of torch's own making applied with ``set_state`` (~1.3 us); the same
        state either way.
        """
        check_material(material, self.sample_material)
        generator = sys.modules["torch"].default_generator
        engine = self._engine if generator is self._generator else self._raw()
        if engine is not None and not _trylock(engine.mutex):
            try:
                engine.view[:] = material
                fresh_fields(engine.view)
            finally:
                _unlock(engine.mutex)
            return
        filler = self._sample_state
        if filler is None:
            filler = self._sample_state = SampleState(_torch())
        generator.set_state(filler.fill(material))

    def sample_writer(self, block: memoryview, start: int, stride: int) -> Callable[[int], None]:
        """Per sample one copy of the engine under its mutex (~0.3 us plus the lock), the
        block's positions, seed and word-0 bits and caches rewritten beforehand for all its
        samples."""
        engine = self._raw()
        if engine is None:
            return super().sample_writer(block, start, stride)
        fresh_engine(np.frombuffer(block, np.uint8).reshape(-1, stride)[:, start : start + RAW_CPU_SIZE])
        torch, end, seed = _torch(), start + RAW_CPU_SIZE, self.seed_from_material
        generator, view, mutex = engine.generator, engine.view, engine.mutex

        def write(base: int) -> None:
            if torch.default_generator is generator and not _trylock(mutex):
                try:
                    view[:] = block[base + start : base + end]
                finally:
                    _unlock(mutex)
            else:  # busy, or replaced: set_state waits for the mutex
                seed(block[base + start : base + end])

        return write

    def _raw(self) -> RawView | None:
        generator = _torch().default_generator
        if generator is not self._generator:
            self._engine = cpu_state_view(generator)
            # Looked up once per generator where the layout is verified and the view matched
            # (else again next time: a draw by another thread may have come in between).
            if self._engine is not None or cpu_state_view(_torch().Generator()) is None:
                self._generator = generator
        return self._engine

    def get_state(self) -> Any:
        generator = sys.modules["torch"].default_generator
        engine = self._engine if generator is self._generator else self._raw()
        if engine is not None and not _trylock(engine.mutex):  # a raw copy (~0.2 us plus the lock)
            try:
                raw = engine.view.tobytes()
            finally:
                _unlock(engine.mutex)
            return RawCPUState(check_engine(raw))
        return generator.get_state()

    def set_state(self, snapshot: Any) -> None:
        generator = sys.modules["torch"].default_generator
        if type(snapshot) is RawCPUState:
            engine = self._engine if generator is self._generator else self._raw()
            if engine is not None and not _trylock(engine.mutex):
                try:
                    engine.view[:] = snapshot.raw
                finally:
                    _unlock(engine.mutex)
                return
            snapshot = legacy_cpu_state(snapshot)
        if not isinstance(snapshot, _torch().Tensor):
            snapshot = _to_tensor(snapshot)
        generator.set_state(snapshot)

    def exchange_material(self, material: bytes | memoryview) -> Any:
        generator = sys.modules["torch"].default_generator
        engine = self._engine if generator is self._generator else self._raw()
        if engine is None or len(material) != self.sample_material or _trylock(engine.mutex):
            return super().exchange_material(material)
        try:
            previous = engine.view.tobytes()
            engine.view[:] = material
            fresh_fields(engine.view)
        finally:
            _unlock(engine.mutex)
        return RawCPUState(check_engine(previous))

    def exchange(self, snapshot: Any) -> Any:
        previous = self.exchange_outer(snapshot)
        if type(previous) is RawCPUState:
            check_engine(previous.raw)  # kept as the scope's substream: a position torch can reach
        return previous

    # The scope hot path: install a raw snapshot under the generator's mutex and keep the
    # engine bytes it replaced; the public path when there is no raw view or the mutex is busy.
    def exchange_outer(self, snapshot: Any) -> Any:
        # Not checked here: the outer state goes back into this generator at exit, or through
        # encode() (legacy_cpu_state checks it in full) if captured meanwhile.
        generator = sys.modules["torch"].default_generator
        engine = self._engine if generator is self._generator else self._raw()  # _raw() inlined
        if engine is None or type(snapshot) is not RawCPUState or _trylock(engine.mutex):
            previous = self.get_state()
            self.set_state(snapshot)
            return previous
        view = engine.view
        try:
            previous = view.tobytes()
            view[:] = snapshot.raw
        finally:
            _unlock(engine.mutex)
        return RawCPUState(previous)

    def encode(self, snapshot: Any) -> Plain:
        if type(snapshot) is RawCPUState:
            return legacy_cpu_state(snapshot)  # checked in full before it is saved
        return snapshot if isinstance(snapshot, bytes) else _to_bytes(snapshot)

    # The engine's fields, read raw holding its mutex (~1 us; get_state makes a tensor of
    # 5 KB), or converted from get_state's bytes: the same bytes either way.
    def state_bytes(self) -> bytes | None:
        generator = sys.modules["torch"].default_generator
        engine = self._engine if generator is self._generator else self._raw()
        if engine is not None and not _trylock(engine.mutex):
            try:
                raw = engine.view.tobytes()
            finally:
                _unlock(engine.mutex)
            return engine_fingerprint_bytes(raw)
        return legacy_fingerprint_bytes(_to_bytes(generator.get_state()))

    def state_crc(self) -> int | None:
        generator = sys.modules["torch"].default_generator
        engine = self._engine if generator is self._generator else self._raw()
        if engine is not None and not _trylock(engine.mutex):
            try:
                return engine_crc(engine.pieces)
            finally:
                _unlock(engine.mutex)
        return crc32(legacy_fingerprint_bytes(_to_bytes(generator.get_state())))

    def snapshot_bytes(self, snapshot: Any) -> bytes | None:
        if type(snapshot) is RawCPUState:
            return engine_fingerprint_bytes(snapshot.raw)
        return legacy_fingerprint_bytes(snapshot if isinstance(snapshot, bytes) else _to_bytes(snapshot))

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
