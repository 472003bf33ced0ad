"""The step trace file: a header, then self-delimiting, checksummed msgpack records.

Layout (integers big-endian)::

    magic     13 bytes  b"\\x89RNGTRACE\\r\\n\\x1a\\n"
    version   u16       TRACE_VERSION
    records, each:
      length    u32     payload bytes (1 to MAX_RECORD_BYTES)
      checksum  u32     CRC-32 of the payload
      payload           msgpack array: [0, {session fields}] when a process opens the trace, then
                        one [1, step, epoch, ...] per training step (STEP_FIELDS, in that order)
    zero bytes          room reserved for the next records by a writer that did not close
                        the file (killed): none, or at least 8 bytes

A writer appends a record with one copy into a file mapping it reserved ahead (or one ``write``
where the file system cannot reserve room): a process killed (even by SIGKILL) leaves every record
it wrote complete, then zero bytes, which readers take for the end and the next writer cuts off.
A record cut short at the end of the data (a process killed mid-copy, a machine that lost power)
is a *torn tail*: readers skip it and the next writer truncates it.  Reading treats the file as
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
# 4: positional records, CRC-32 record checksums and stream fingerprints, zero padding at the end;
# 3: fingerprints of raw state bytes, CRC-32 and Adler-32 checksums and per-sample digests;
# 2: CRC-32 fingerprints, structure-token batch and weight digests
TRACE_VERSION = 5
HEADER = MAGIC + struct.pack(">H", TRACE_VERSION)
FRAME = struct.Struct(">II")
_NO_FRAME = bytes(FRAME.size)  # where a writer's padding (at least this long) begins
SESSION, STEP = 0, 1  # the first item of a record's payload
# The items of a step record after its kind (absent ones are nil).
STEP_FIELDS = ("step", "epoch", "position", "phase", "streams", "substreams", "scopes", "generators",
               "batch", "samples", "loss_dtype", "loss_bits", "weights", "optimizer")
MAX_RECORD_BYTES = 1 << 20  # 1 MiB: a step record is a few hundred bytes
MAX_FILE_BYTES = 1 << 30  # 1 GiB: millions of steps; read into memory by compare
MAX_STEPS = 2_000_000  # step records a trace read by compare may hold
_MAX_ITEMS = 100_000  # entries of one map or list in a record
_MAX_TEXT = 4096  # characters of a name or path
_CHUNK = 1 << 16  # bytes read at a time when checking that the rest of a file is zero


def frame(payload: Any, packer: msgpack.Packer | None = None) -> bytes:
    """The bytes that append ``payload`` (a record: a list, see the layout) to a trace: length,
    checksum, msgpack bytes; ``packer``: a ``msgpack.Packer(use_bin_type=True)`` to reuse.

    >>> decode_payload(frame([0, {"session": 0}])[8:], 0)
    [0, {'session': 0}]
    """
    data: bytes = (packer or msgpack.Packer(use_bin_type=True)).pack(payload)
    return FRAME.pack(len(data), zlib.crc32(data)) + data


def decode_payload(payload: bytes, index: int) -> list[Any]:
    """msgpack -> a record (a list whose first item is its kind), every size bounded by the
    payload's own."""
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
    kind = value[0] if isinstance(value, list) and value else None
    if type(kind) is not int or kind not in (SESSION, STEP):
        what = type(value).__name__ if not isinstance(value, list) else "a list of another kind"
        raise StateFileError(f"record {index}: expected a session or step record, got {what}")
    if kind == STEP and len(value) != 1 + len(STEP_FIELDS):
        count = len(STEP_FIELDS) + 1
        raise StateFileError(f"record {index}: a step record of {len(value)} items, not {count}")
    if kind == SESSION and (len(value) != 2 or not isinstance(value[1], dict)):
        raise StateFileError(f"record {index}: a session record is [0, map of fields]")
    return value  # type: ignore[no-any-return]


@dataclass(frozen=True)
class RawRecord:
    """A record as read: its index in the file, the byte offset after it, its payload."""

    index: int
    end: int
    data: list[Any]

    @property
    def kind(self) -> int:
        """SESSION or STEP."""
        return int(self.data[0])

    def step_fields(self) -> dict[str, Any]:
        """A step record's items by name (STEP_FIELDS)."""
        return dict(zip(STEP_FIELDS, self.data[1:], strict=True))


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


def zero_from(handle: BinaryIO, offset: int, size: int) -> bool:
    """True when the bytes of the file from ``offset`` to ``size`` are all zero (read in chunks)."""
    handle.seek(offset)
    while offset < size:
        chunk = handle.read(min(_CHUNK, size - offset))
        if not chunk or chunk.count(0) != len(chunk):
            return not chunk
        offset += len(chunk)
    return True


@dataclass
class Ending:
    """How the records of a file ended: ``torn`` when by an incomplete record, ``padded`` when
    zero bytes follow the last record (a writer that did not close the file)."""

    torn: bool = False
    padded: bool = False


def iter_records(handle: BinaryIO, name: str, ending: Ending | None = None) -> Iterator[RawRecord]:
    """Yield each complete record after the header; stop at zero padding or a torn tail (an
    incomplete last record: a bad one with nothing but zero bytes after the room it declares),
    noting which in ``ending``.  A bad record followed by more data is corruption: StateFileError."""
    ending = ending if ending is not None else Ending()
    size = os.fstat(handle.fileno()).st_size
    offset, index = len(HEADER), 0
    while offset < size:
        handle.seek(offset)
        head = handle.read(FRAME.size)
        if len(head) < FRAME.size:  # a cut-short header (a writer's padding is never this short)
            ending.torn = True
            return
        if head == _NO_FRAME:  # padding, or a record whose header had not been copied yet
            clean = zero_from(handle, offset + FRAME.size, size)
            if clean or offset + FRAME.size + MAX_RECORD_BYTES >= size or zero_from(
                    handle, offset + FRAME.size + MAX_RECORD_BYTES, size):
                ending.padded, ending.torn = clean, not clean
                return
            raise StateFileError(f"{name!r}: record {index} (at byte {offset}) is empty; the file is corrupt")
        length, checksum = FRAME.unpack(head)
        if length > MAX_RECORD_BYTES:  # no writer makes one, torn or not
            raise StateFileError(
                f"{name!r}: record {index} declares {length} bytes, more than a record may "
                f"({MAX_RECORD_BYTES}); the file is corrupt"
            )
        end = offset + FRAME.size + length
        payload = handle.read(length)
        if len(payload) < length or zlib.crc32(payload) != checksum:
            if end >= size or zero_from(handle, end, size):
                ending.torn = True  # the last record, cut short (perhaps then zero bytes)
                return
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
