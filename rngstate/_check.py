"""Small validators for plain state data; each names where in the state a problem lies."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rngstate.errors import InvalidStateError


def mapping(value: Any, where: str, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """Check ``value`` is a dict with str keys (exactly ``keys`` when given)."""
    if not isinstance(value, dict):
        raise InvalidStateError(f"{where}: expected a dict, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise InvalidStateError(f"{where}: keys must be str, got {type(key).__name__} {key!r}")
    if keys is not None:
        expected = set(keys)
        missing, extra = expected - value.keys(), value.keys() - expected
        if missing or extra:
            raise InvalidStateError(
                f"{where}: expected keys {sorted(expected)}, missing {sorted(missing)}, "
                f"unexpected {sorted(extra)}"
            )
    return value


def integer(value: Any, where: str, low: int, high: int) -> int:
    """Check ``value`` is an int (not bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidStateError(f"{where}: expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidStateError(f"{where}: {value} is outside [{low}, {high}]")
    return value


def blob(value: Any, where: str, length: int | None = None) -> bytes:
    """Check ``value`` is bytes (of ``length`` when given)."""
    if not isinstance(value, bytes):
        raise InvalidStateError(f"{where}: expected bytes, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise InvalidStateError(f"{where}: expected {length} bytes, got {len(value)}")
    return value


def text(value: Any, where: str, choices: Iterable[str] | None = None) -> str:
    """Check ``value`` is a str (one of ``choices`` when given)."""
    if not isinstance(value, str):
        raise InvalidStateError(f"{where}: expected a str, got {type(value).__name__}")
    if choices is not None and value not in set(choices):
        raise InvalidStateError(f"{where}: {value!r} is not one of {sorted(choices)}")
    return value


def sequence(value: Any, where: str, length: int | None = None) -> list[Any]:
    """Check ``value`` is a list (of ``length`` when given)."""
    if not isinstance(value, list):
        raise InvalidStateError(f"{where}: expected a list, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise InvalidStateError(f"{where}: expected {length} items, got {len(value)}")
    return value
