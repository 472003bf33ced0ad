"""PaddlePaddle: the default CPU generator and every GPU device's default generator.

Paddle keeps a generator's state in a ``GeneratorState`` whose ``__getstate__()`` is
``(device, seed, offset, engine)``, ``engine`` being the text form of a ``std::mt19937_64``
(312 decimal words and the position, space separated) as a list of byte values.  Paddle 3.x
builds with CUDA/HIP/XPU/custom devices before the engine was added return only
``(device, seed, offset)`` (paddle/fluid/pybind/generator_py.cc): a GPU generator draws from
its Philox seed and offset, so that is its whole state; such a GPU state is kept without an
engine and rebuilt from those three fields.  Two facts shape this file:

* calling ``__setstate__`` on an object that ``get_rng_state()`` returned silently does
  nothing; an object made with ``GeneratorState.__new__`` and then given its state restores
  exactly, so decoded states are always built that way;
* Paddle parses whatever it is handed: text it cannot read leaves parts of the engine at
  their defaults, an all-zero engine makes ``paddle.randn`` loop forever, and an uninitialised
  ``GeneratorState`` reads freed memory.  ``decode`` therefore checks every field in pure
  Python (without importing Paddle) and accepts only states Paddle itself can produce.

Only a generator's current state is captured (``Generator.get_state``): states that
``paddle.distributed.fleet``'s RNG tracker registers under other state indices are not.
"""

from __future__ import annotations

import logging
import struct
import sys
from typing import Any

from rngstate import _check
from rngstate.backends import paddle_raw
from rngstate.backends.base import Plain, Stream, device_pairs
from rngstate.derive import derived_int
from rngstate.errors import InvalidStateError, RNGStateError

logger = logging.getLogger(__name__)

MT_WORDS = 312  # std::mt19937_64 state size
_MT = struct.Struct(f"<{MT_WORDS}Q")
_U64 = 2**64 - 1
# mt19937_64 has r = 31: a twist reads only the upper 33 bits of word 0.  A state whose
# upper bits of word 0 and every other word are zero produces zeros forever.
_UPPER_MASK = _U64 ^ (2**31 - 1)
_CPU_DEVICE = -1  # the device field of the CPU generator's state
_KEYS = ("device", "seed", "offset", "mt", "pos")
_PHILOX_KEYS = _KEYS[:3]  # a GPU state from a build whose GeneratorState has no engine
# Invariants checked by check_state (what Paddle produces; everything else is refused):
# * device: -1 for the CPU generator, i >= 0 for GPU i, and the position it is restored to;
# * seed, offset: unsigned 64-bit (Paddle reports the seed unsigned, reads it signed);
# * engine (CPU always; GPU when the build has it): 312 words < 2**64 and pos in [0, 312]
#   (libstdc++ twists when pos == 312), not all-zero in the bits a twist reads.


def _paddle() -> Any:
    return sys.modules["paddle"]


def _core() -> Any:
    return sys.modules["paddle"].base.core


class PaddleState:
    """A validated generator state from ``decode``; builds Paddle's object on first use."""

    __slots__ = ("_built", "device", "mt", "offset", "pos", "seed")

    def __init__(self, device: int, seed: int, offset: int, mt: bytes | None, pos: int | None) -> None:
        self.device = device
        self.seed = seed
        self.offset = offset
        self.mt = mt
        self.pos = pos
        self._built: Any = None

    def engine_text(self) -> bytes:
        """The engine in the text form libstdc++ writes and reads."""
        assert self.mt is not None  # only called for states with an engine
        words = _MT.unpack(self.mt)
        return " ".join(map(str, (*words, self.pos))).encode("ascii")

    def build(self) -> Any:
        """A fresh ``GeneratorState`` holding this state (cached: Paddle copies it on set)."""
        if self._built is None:
            core = _core()
            state = core.GeneratorState.__new__(core.GeneratorState)
            # Paddle reads the seed as a signed 64-bit integer but reports it unsigned.
            seed = self.seed - 2**64 if self.seed >= 2**63 else self.seed
            fields: tuple[Any, ...] = (self.device, seed, self.offset)
            if self.mt is not None:
                fields += (list(self.engine_text()),)
            state.__setstate__(fields)
            self._built = state
        return self._built


def check_state(plain: Plain, where: str, device: int) -> PaddleState:
    """Raise InvalidStateError unless ``plain`` is a generator state Paddle produces.

    >>> import struct
    >>> words = struct.pack("<312Q", *range(1, 313))
    >>> state = {"device": -1, "seed": 5, "offset": 0, "mt": words, "pos": 312}
    >>> check_state(state, "s", -1).pos
    312
    """
    _check.mapping(plain, where)
    engine = "mt" in plain or "pos" in plain or device == _CPU_DEVICE  # the CPU draws from it
    _check.mapping(plain, where, _KEYS if engine else _PHILOX_KEYS)
    found = _check.integer(plain["device"], f"{where}.device", -1, 2**31 - 1)
    if found != device:
        raise InvalidStateError(
            f"{where}.device: the state belongs to device {found}, expected {device} "
            "(-1 is the CPU generator, 0, 1, ... the GPUs)"
        )
    seed = _check.integer(plain["seed"], f"{where}.seed", 0, _U64)
    offset = _check.integer(plain["offset"], f"{where}.offset", 0, _U64)
    if not engine:
        return PaddleState(found, seed, offset, None, None)
    mt = _check.blob(plain["mt"], f"{where}.mt", _MT.size)
    pos = _check.integer(plain["pos"], f"{where}.pos", 0, MT_WORDS)
    words = _MT.unpack(mt)
    if not (words[0] & _UPPER_MASK) and not any(words[1:]):
        raise InvalidStateError(
            f"{where}.mt: an all-zero mt19937_64 state would make Paddle draw zeros forever "
            "(paddle.randn never returns); the state is corrupt"
        )
    return PaddleState(found, seed, offset, mt, pos)


def encode_state(state: Any) -> Plain:
    """Plain form of a live ``GeneratorState`` (or a decoded :class:`PaddleState`)."""
    if isinstance(state, PaddleState):
        plain: dict[str, Plain] = {"device": state.device, "seed": state.seed, "offset": state.offset}
        if state.mt is not None:
            plain.update(mt=state.mt, pos=state.pos)
        return plain
    fields = state.__getstate__()
    if len(fields) == 3 and int(fields[0]) != _CPU_DEVICE:  # a GPU build without the engine
        device, seed, offset = fields
        return {"device": int(device), "seed": int(seed) & _U64, "offset": int(offset)}
    if len(fields) != 4:
        raise RNGStateError(
            f"Paddle {_paddle().__version__} gave a {len(fields)}-field generator state for "
            f"device {fields[0] if fields else '?'}; rngstate restores (device, seed, offset, "
            "engine) states and GPU (device, seed, offset) states; please report this build"
        )
    device, seed, offset, engine = fields
    tokens = bytes(engine).split(b" ")
    if len(tokens) != MT_WORDS + 1:
        raise RNGStateError(
            f"Paddle {_paddle().__version__} wrote a generator engine with {len(tokens)} fields, "
            f"not {MT_WORDS + 1}; this Paddle version is not supported by rngstate yet, "
            "please report it"
        )
    words = [int(token) for token in tokens]
    return {
        "device": int(device),
        "seed": int(seed) & _U64,
        "offset": int(offset),
        "mt": _MT.pack(*words[:MT_WORDS]),
        "pos": words[MT_WORDS],
    }


def _as_state(snapshot: Any) -> Any:
    return snapshot.build() if isinstance(snapshot, PaddleState) else snapshot


class PaddleCPUStream(Stream):
    """Paddle's default CPU generator: ``paddle.rand``, dropout and initializers on CPU."""

    name = "paddle.cpu"
    framework = "paddle"

    def seed(self, seed: int) -> None:
        # What paddle.seed(seed) does for the CPU; the GPU generators are "paddle.gpu".
        _core().default_cpu_generator().manual_seed(seed)

    def seed_derived(self, material: bytes) -> None:
        _core().default_cpu_generator().manual_seed(derived_int(material, 63))

    def get_state(self) -> Any:
        return _core().default_cpu_generator().get_state()  # a copy: later draws leave it alone

    def set_state(self, snapshot: Any) -> None:
        _core().default_cpu_generator().set_state(_as_state(snapshot))

    def exchange(self, snapshot: Any) -> Any:
        generator = _core().default_cpu_generator()
        previous = generator.get_state()
        generator.set_state(_as_state(snapshot))
        return previous

    def encode(self, snapshot: Any) -> Plain:
        return encode_state(snapshot)

    # A step trace reads these at every step: the get_state() copy read in place (~3 us), or
    # encode's fields where that layout is not verified (~130 us), to the same bytes.
    def state_bytes(self) -> bytes | None:
        return self.snapshot_bytes(_core().default_cpu_generator().get_state())

    def snapshot_bytes(self, snapshot: Any) -> bytes | None:
        if not isinstance(snapshot, PaddleState):
            data = paddle_raw.state_bytes(snapshot)
            if data is not None:
                return data
            snapshot = check_state(encode_state(snapshot), "paddle.cpu", _CPU_DEVICE)
        mt, pos = snapshot.mt, snapshot.pos
        return None if mt is None or pos is None else paddle_raw.fields_bytes(
            snapshot.device, snapshot.seed, snapshot.offset, mt, pos)

    def decode(self, plain: Plain, where: str) -> Any:
        return check_state(plain, where, _CPU_DEVICE)

    def metadata(self) -> dict[str, Plain]:
        return {"paddle": str(_paddle().__version__)}


def _gpu_count() -> int:
    paddle = sys.modules.get("paddle")
    if paddle is None or not paddle.is_compiled_with_cuda():
        return 0
    return int(paddle.base.core.get_cuda_device_count())


class PaddleGPUStream(Stream):
    """Every GPU's default generator (Philox seed and offset, plus the engine Paddle keeps);
    active when Paddle is built with CUDA and sees a device."""

    name = "paddle.gpu"
    framework = "paddle"

    def __init__(self) -> None:
        self._count: int | None = None  # the device count does not change in a process

    def _devices(self) -> int:
        if self._count is None:
            self._count = _gpu_count()
        return self._count

    def _generators(self) -> list[Any]:
        core = _core()
        return [core.default_cuda_generator(i) for i in range(self._devices())]

    def is_active(self) -> bool:
        return "paddle" in sys.modules and self._devices() > 0

    def seed(self, seed: int) -> None:
        for generator in self._generators():  # what paddle.seed(seed) does for the GPUs
            generator.manual_seed(seed)

    def seed_derived(self, material: bytes) -> None:
        for generator in self._generators():
            generator.manual_seed(derived_int(material, 63))

    def get_state(self) -> Any:
        return [generator.get_state() for generator in self._generators()]

    def device_count(self) -> int | None:
        return self._devices() if "paddle" in sys.modules else None

    def set_state(self, snapshot: Any) -> None:
        for generator, state in device_pairs(self._generators(), snapshot, "Paddle GPU"):
            generator.set_state(_as_state(state))

    def exchange(self, snapshot: Any) -> Any:
        previous = self.get_state()
        self.set_state(snapshot)
        return previous

    def encode(self, snapshot: Any) -> Plain:
        return [encode_state(state) for state in snapshot]

    def decode(self, plain: Plain, where: str) -> Any:
        devices = _check.sequence(plain, where)
        return [check_state(state, f"{where}[{i}]", i) for i, state in enumerate(devices)]

    def metadata(self) -> dict[str, Plain]:
        paddle = _paddle()
        names = [str(paddle.device.cuda.get_device_name(i)) for i in range(self._devices())]
        # Philox streams reproduce only on the same GPU model, like torch's "cuda_devices".
        return {"paddle": str(paddle.__version__), "paddle_gpu_devices": names}
