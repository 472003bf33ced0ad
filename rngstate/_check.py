"""Small validators for plain state data; each names where in the state a problem lies."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rngstate.errors import InvalidSeedError, InvalidStateError

_SHOWN = 80  # characters of a bad value quoted in a message
MAX_INT_BITS = 511  # bit_length() of the widest integer a state file holds (fileformat's limit)
MAX_DEPTH = 64  # nesting levels of plain data


def show(value: Any) -> str:
    """A short repr for error messages: never fails, never huge (an int of 10**5000 digits
    cannot even be converted to str)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"<{'negative ' if value < 0 else ''}integer of {value.bit_length()} bits>"
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__
        return f"<{type(value).__name__}>"
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def mapping(value: Any, where: str, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """Check ``value`` is a dict with str keys (exactly ``keys`` when given)."""
    if not isinstance(value, dict):
        raise InvalidStateError(f"{where}: expected a dict, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise InvalidStateError(f"{where}: keys must be str, got {type(key).__name__} {show(key)}")
    if keys is not None:
        expected = set(keys)
        missing, extra = expected - value.keys(), value.keys() - expected
        if missing or extra:
            raise InvalidStateError(
                f"{where}: expected keys {sorted(expected)}, missing {sorted(missing)}, "
                f"unexpected {show(sorted(extra)[:10])}"
            )
    return value


def integer(value: Any, where: str, low: int, high: int) -> int:
    """Check ``value`` is an int (not bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidStateError(f"{where}: expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidStateError(f"{where}: {show(value)} is outside [{low}, {high}]")
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
        raise InvalidStateError(f"{where}: {show(value)} is not one of {sorted(choices)}")
    return value


def mt19937(words: Any, where: str) -> None:
    """Refuse the degenerate MT19937 state: the bits a twist reads (the top bit of word 0 and
    words 1..623) all zero.  No seeding produces it; it draws zeros forever, which makes
    rejection samplers (NumPy's legacy ``standard_normal``, ``random.normalvariate``) loop
    forever.  ``words``: 624 ints, or their 2496 little-endian bytes."""
    if isinstance(words, bytes):
        degenerate = not words[3] & 0x80 and words.count(0, 4) == len(words) - 4
    else:  # a tuple, or a NumPy array (whose .any() is much faster than any())
        rest = words[1:]
        zero_rest = not (rest.any() if hasattr(rest, "any") else any(rest))
        degenerate = not int(words[0]) & 0x80000000 and zero_rest
    if degenerate:
        raise InvalidStateError(
            f"{where}: an all-zero mt19937 state is corrupt (no seed produces it; it would draw "
            "zeros forever and make normal samplers loop endlessly)"
        )


def sequence(value: Any, where: str, length: int | None = None) -> list[Any]:
    """Check ``value`` is a list (of ``length`` when given)."""
    if not isinstance(value, list):
        raise InvalidStateError(f"{where}: expected a list, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise InvalidStateError(f"{where}: expected {length} items, got {len(value)}")
    return value


def plain(value: Any, where: str, depth: int = 0) -> Any:
    """Deep-copy plain data (str, int, bytes, list, dict with str keys), rejecting anything
    else: the one walker for user-provided and foreign states.

    >>> plain({"a": [1, b"x"]}, "state")
    {'a': [1, b'x']}
    """
    if depth > MAX_DEPTH:
        raise InvalidStateError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        mapping(value, where)
        return {key: plain(item, f"{where}.{key}", depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, str):
        return str(value)  # normalizes subclasses such as torch's TorchVersion
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_INT_BITS:  # a file could not hold it: refuse it now
            raise InvalidStateError(
                f"{where}: an integer of {value.bit_length()} bits (at most {MAX_INT_BITS} allowed)"
            )
        return int(value)
    raise InvalidStateError(
        f"{where}: {type(value).__name__} is not plain data (allowed: str, int, bytes, list, dict)"
    )
def seed_text(text: str, where: str, high: int) -> int:
    """The seed written in ``text`` (``--seed``, ``RNGSTATE_SEED``, the pytest option): plain
    ASCII decimal digits, surrounding spaces allowed, value in [0, high].  ``int()`` would also
    take "+7", "1_000" and non-ASCII digits (Arabic-Indic seven), which read differently elsewhere.

    >>> seed_text(" 42 ", "--seed", 2**32 - 1)
    42
    """
    digits = text.strip(" \t\r\n")
    if not (digits.isascii() and digits.isdigit() and len(digits) <= len(str(high))) or int(digits) > high:
        raise InvalidSeedError(
            f"{where}: {show(text)} is not a seed; write an integer in [0, {high}] in plain "
            "decimal digits (0-9)"
        )
    return int(digits)
