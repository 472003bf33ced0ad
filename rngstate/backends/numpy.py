"""NumPy: the legacy global ``np.random``, ``np.random.Generator`` and ``RandomState`` objects.

NumPy accepts some impossible states without complaint (an MT19937 ``pos`` of 10**6 reads
outside its key array), so every field is range-checked here before NumPy sees it.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from rngstate import _check
from rngstate.backends.base import GeneratorKind, Plain, Stream
from rngstate.errors import InvalidStateError

_U128 = 2**128 - 1
_U32 = 2**32 - 1
_DOUBLE = struct.Struct(">d")

# bit generator -> ({field of state["state"]: spec}, {top-level field: spec})
# spec: ("array", little-endian dtype, length) or ("int", low, high)
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
    return state


def _seed_sequence(material: bytes) -> np.random.SeedSequence:
    return np.random.SeedSequence(int.from_bytes(material[:16], "big"))


def _set_random_state(random_state: np.random.RandomState, snapshot: dict[str, Any]) -> None:
    name = snapshot["bit_generator"]
    if type(random_state._bit_generator).__name__ != name:
        # The state belongs to another bit generator type (np.random.set_bit_generator was used).
        random_state._bit_generator = getattr(np.random, name)()
    random_state.set_state(snapshot)


def _seed_random_state(random_state: np.random.RandomState, material: bytes) -> None:
    bit_generator = type(random_state._bit_generator)(_seed_sequence(material))
    random_state.set_state({**bit_generator.state, "has_gauss": 0, "gauss": 0.0})


class NumpyStream(Stream):
    """The global legacy ``np.random`` (``np.random.rand``, ``np.random.shuffle``, ...)."""

    name = "numpy"
    framework = "numpy"

    def is_active(self) -> bool:
        return True

    def seed(self, seed: int) -> None:
        try:
            np.random.seed(seed)
        except TypeError:  # the global uses a non-MT19937 bit generator: it cannot legacy-seed
            _seed_random_state(np.random.mtrand._rand, seed.to_bytes(16, "big"))

    def seed_derived(self, material: bytes) -> None:
        _seed_random_state(np.random.mtrand._rand, material)

    def get_state(self) -> Any:
        return np.random.mtrand._rand.get_state(legacy=False)

    def set_state(self, snapshot: Any) -> None:
        _set_random_state(np.random.mtrand._rand, snapshot)

    def encode(self, snapshot: Any) -> Plain:
        return encode_bit_generator_state(snapshot, legacy=True)

    def decode(self, plain: Plain, where: str) -> Any:
        return decode_bit_generator_state(plain, where, legacy=True)

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
