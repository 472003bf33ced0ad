"""Python's ``random``: the global generator and ``random.Random`` objects."""

from __future__ import annotations

import random
import struct
import sys
from typing import Any

from rngstate import _check
from rngstate.backends.base import GeneratorKind, Plain, Stream

_WORDS = 624
_MT_FORMAT = struct.Struct(f"<{_WORDS}I")
_DOUBLE = struct.Struct(">d")
_PyState = tuple[Any, ...]  # (3, (624 words..., pos), gauss_next)


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


def _decode(plain: Plain, where: str) -> _PyState:
    _check.mapping(plain, where, ("version", "mt", "pos", "has_gauss", "gauss"))
    version = _check.integer(plain["version"], f"{where}.version", 3, 3)
    words = _MT_FORMAT.unpack(_check.blob(plain["mt"], f"{where}.mt", _MT_FORMAT.size))
    pos = _check.integer(plain["pos"], f"{where}.pos", 0, _WORDS)
    has_gauss = _check.integer(plain["has_gauss"], f"{where}.has_gauss", 0, 1)
    gauss = _DOUBLE.unpack(_check.blob(plain["gauss"], f"{where}.gauss", 8))[0]
    return (version, (*words, pos), gauss if has_gauss else None)


def _seed_from(material: bytes) -> int:
    return int.from_bytes(material[:16], "big")


class PythonStream(Stream):
    """The generator behind ``random.random()``, ``random.shuffle`` and friends."""

    name = "python"
    framework = "random"

    def is_active(self) -> bool:
        return True

    def seed(self, seed: int) -> None:
        random.seed(seed)

    def seed_derived(self, material: bytes) -> None:
        random.seed(_seed_from(material))

    def get_state(self) -> Any:
        return random.getstate()

    def set_state(self, snapshot: Any) -> None:
        random.setstate(snapshot)

    def encode(self, snapshot: Any) -> Plain:
        return _encode(snapshot)

    def decode(self, plain: Plain, where: str) -> Any:
        return _decode(plain, where)

    def metadata(self) -> dict[str, Plain]:
        return {"python": sys.version.split()[0]}


class PythonRandomKind(GeneratorKind):
    """``random.Random`` objects the user owns."""

    kind = "python.Random"
    framework = "random"

    def matches(self, obj: object) -> bool:
        return isinstance(obj, random.Random)

    def seed_derived(self, obj: Any, material: bytes) -> None:
        obj.seed(_seed_from(material))

    def get_state(self, obj: Any) -> Any:
        return obj.getstate()

    def set_state(self, obj: Any, snapshot: Any) -> None:
        obj.setstate(snapshot)

    def encode(self, snapshot: Any) -> Plain:
        return _encode(snapshot)

    def decode(self, plain: Plain, where: str) -> Any:
        return _decode(plain, where)
