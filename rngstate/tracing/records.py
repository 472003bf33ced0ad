"""The step trace file: a header, then self-delimiting, checksummed msgpack records.

Layout (integers big-endian)::

    magic     13 bytes  b"\\x89RNGTRACE\\r\\n\\x1a\\n"
    version   u16       TRACE_VERSION
    records, each:
      length    u32     payload bytes (at most MAX_RECORD_BYTES)
      checksum  8 bytes CRC-32 then Adler-32 of the payload (u32 each)
      payload           msgpack map: a "session" record when a process opens the trace, then
                        one "step" record per training step

Appending one record is one ``write``: a process killed (even by SIGKILL) leaves every record it
wrote complete; a record cut short at the end of the file (a machine that lost power mid-write)
is a *torn tail*, which readers skip and the next writer truncates.  Reading treats the file as
hostile: sizes are checked before anything is allocated, every field is validated, and every
problem is a :class:`~rngstate.errors.StateFileError` naming the record.
"""

from __future__ import annotations

import os
import stat
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import msgpack

from rngstate.errors import StateFileError

MAGIC = b"\x89RNGTRACE\r\n\x1a\n"
# 3: fingerprints of raw state bytes, CRC-32 and Adler-32 checksums and per-sample digests;
# 2: CRC-32 fingerprints, structure-token batch and weight digests
TRACE_VERSION = 3
HEADER = MAGIC + struct.pack(">H", TRACE_VERSION)
_FRAME = struct.Struct(">I8s")
MAX_RECORD_BYTES = 1 << 20  # 1 MiB: a step record is a few hundred bytes
MAX_FILE_BYTES = 1 << 30  # 1 GiB: millions of steps; read into memory by compare
MAX_STEPS = 2_000_000  # step records a trace read by compare may hold
_MAX_ITEMS = 100_000  # entries of one map or list in a record
_MAX_TEXT = 4096  # characters of a name or path


def frame(record: dict[str, Any], packer: msgpack.Packer | None = None) -> bytes:
    """The bytes that append ``record`` to a trace (length, checksum, payload); ``packer``: a
    ``msgpack.Packer(use_bin_type=True)`` to reuse (a writer's own, used under its lock).

    >>> decode_payload(frame({"kind": "x"})[12:], 0)
    {'kind': 'x'}
    """
    payload: bytes = (packer or msgpack.Packer(use_bin_type=True)).pack(record)
    return _FRAME.pack(len(payload), _checksum(payload)) + payload


def _checksum(payload: bytes | memoryview) -> bytes:
    """CRC-32 and Adler-32 of the payload: a torn or flipped record is told from a whole one
    (the file is not authenticated), by the two hashes the digests of a step use already."""
    return _CHECKSUM.pack(zlib.crc32(payload), zlib.adler32(payload))


_CHECKSUM = struct.Struct(">II")


def decode_payload(payload: bytes, index: int) -> dict[str, Any]:
    """msgpack -> a dict with str keys, with every size bounded by the payload's own."""
    try:
        value = msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            max_array_len=_MAX_ITEMS,
            max_map_len=_MAX_ITEMS,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:  # bad UTF-8, deep nesting, ...
        raise StateFileError(f"record {index}: not valid msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(value, dict):
        raise StateFileError(f"record {index}: expected a map, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class RawRecord:
    """A record as read: its index in the file, the byte offset after it, its payload."""

    index: int
    end: int
    data: dict[str, Any]


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for reading, refusing what is not a regular file (a FIFO would hang)."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise StateFileError(f"no trace file at {name!r}") from None
    except OSError as exc:
        raise StateFileError(f"cannot read {name!r}: {exc.strerror}") from None
    except ValueError as exc:  # a NUL byte in the path
        raise StateFileError(f"cannot read {name!r}: {exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise StateFileError(f"{name!r} is {kind}, not a trace file")
    if info.st_size > MAX_FILE_BYTES:
        os.close(fd)
        raise StateFileError(f"{name!r} has {info.st_size} bytes, more than a trace may ({MAX_FILE_BYTES})")
    return os.fdopen(fd, "rb")


def check_header(head: bytes, name: str) -> bool:
    """True when ``head`` is a complete trace header; False for an empty or cut-short header
    (a writer killed while creating the file); StateFileError for anything else."""
    if head == HEADER:
        return True
    if HEADER.startswith(head):
        return False
    if head[: len(MAGIC)] == MAGIC:
        version = struct.unpack(">H", head[len(MAGIC) : len(HEADER)])[0]
        if version > TRACE_VERSION:
            raise StateFileError(
                f"{name!r} is a trace of format version {version}, newer than the version "
                f"{TRACE_VERSION} this rngstate reads; upgrade rngstate"
            )
        if 1 <= version < TRACE_VERSION:
            raise StateFileError(
                f"{name!r} is a trace of format version {version}, written by an older rngstate "
                f"whose digests this one (format {TRACE_VERSION}) does not compute alike; record "
                "both runs again with this rngstate"
            )
        raise StateFileError(f"{name!r}: unknown trace format version {version}")
    hint = " (it is an rngstate state file: use `rngstate diff`)" if head.startswith(b"\x89RNGSTATE") else ""
    raise StateFileError(f"{name!r} is not an rngstate trace: bad magic bytes {head[:8]!r}{hint}")


def iter_records(handle: BinaryIO, name: str) -> Iterator[RawRecord]:
    """Yield each complete record after the header; stop at a torn tail (an incomplete last
    record).  A bad record that is followed by more data is corruption: StateFileError."""
    size = os.fstat(handle.fileno()).st_size
    offset, index = len(HEADER), 0
    while offset < size:
        head = handle.read(_FRAME.size)
        if len(head) < _FRAME.size:
            return  # torn tail
        length, checksum = _FRAME.unpack(head)
        if length > MAX_RECORD_BYTES:  # no writer makes one, torn or not
            raise StateFileError(
                f"{name!r}: record {index} declares {length} bytes, more than a record may "
                f"({MAX_RECORD_BYTES}); the file is corrupt"
            )
        payload = handle.read(length)
        if len(payload) < length:
            return  # torn tail
        end = offset + _FRAME.size + length
        if _checksum(payload) != checksum:
            if end >= size:
                return  # the last record, torn: its length bytes arrived, its payload did not
            raise StateFileError(
                f"{name!r}: record {index} (at byte {offset}) fails its checksum; the file is corrupt"
            )
        yield RawRecord(index, end, decode_payload(payload, index))
        offset, index = end, index + 1


# -- field validation ------------------------------------------------------------------------------


def integer(record: dict[str, Any], key: str, where: str, optional: bool = True) -> int | None:
    """``record[key]``: an int in [0, 2**63) (None when absent and ``optional``)."""
    value = record.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise StateFileError(f"{where}.{key}: expected a non-negative integer, got {_kind(value)}")
    return value


def text(value: Any, where: str) -> str:
    """A str of at most _MAX_TEXT characters."""
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise StateFileError(f"{where}: expected a name of at most {_MAX_TEXT} characters: {_kind(value)}")
    return value


def blob(value: Any, where: str, optional: bool = True, multiple: int = 1) -> bytes | None:
    """bytes (None allowed when ``optional``) whose length is a multiple of ``multiple``."""
    if value is None and optional:
        return None
    if not isinstance(value, bytes) or len(value) % multiple:
        raise StateFileError(f"{where}: expected bytes (a multiple of {multiple}), got {_kind(value)}")
    return value


def names(value: Any, where: str, nested: bool = False) -> dict[str, Any]:
    """A map of names to digests (bytes), or to such maps when ``nested``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StateFileError(f"{where}: expected a map, got {_kind(value)}")
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = text(key, f"{where} key")
        out[name] = names(item, f"{where}.{name}") if nested else blob(item, f"{where}.{name}", False)
    return out


def _kind(value: Any) -> str:
    if isinstance(value, (str, bytes)):
        return f"{type(value).__name__} of length {len(value)}"
    if isinstance(value, int) and not isinstance(value, bool):
        return "an integer out of range" if value.bit_length() > 62 else f"{value}"
    return type(value).__name__
