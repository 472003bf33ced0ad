"""The state file: a fixed header, then a msgpack payload.

Layout (all integers big-endian)::

    magic    13 bytes  b"\\x89RNGSTATE\\r\\n\\x1a\\n"  (PNG-style: catches text-mode mangling)
    version   u16      container format version (FORMAT_VERSION)
    flags     u16      reserved, 0
    length    u64      payload length in bytes
    checksum  32 bytes BLAKE2b-256 over version, flags, length and payload
    payload            msgpack of a plain dict, map keys sorted, so equal states give equal bytes

Integers outside msgpack's 64-bit range (NumPy PCG64 holds 128-bit ones) are written as
msgpack ext type 1 holding the two's-complement big-endian bytes.  Loading never runs code.

Reading is bounded: a file is read into memory (never mapped: a file truncated by another
process while mapped kills the reader with SIGBUS), must be a regular file of at most
MAX_FILE_BYTES, and its payload is walked once before msgpack builds any object, so that
nesting, declared sizes, extension types and the Python memory the objects will take (at most
MEMORY_FACTOR times the payload, plus 1 MiB) are checked first.  Writing goes through a
``mkstemp``-style temporary file under a lock on the folder (see :func:`write_atomic`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import struct
import tempfile
from pathlib import Path
from typing import Any

import msgpack

from rngstate import _gc
from rngstate.errors import StateFileError

try:
    import fcntl
except ImportError:  # Windows: concurrent saves to one path are not serialized
    fcntl = None  # type: ignore[assignment]

MAGIC = b"\x89RNGSTATE\r\n\x1a\n"
FORMAT_VERSION = 1
_FIELDS = struct.Struct(">HHQ")
_CHECKSUM_SIZE = 32
HEADER_SIZE = len(MAGIC) + _FIELDS.size + _CHECKSUM_SIZE
_BIGINT_EXT = 1
_MAX_BIGINT_BYTES = 64
MAX_INT_BITS = 8 * _MAX_BIGINT_BYTES - 1  # bit_length() of the widest integer a file holds
_MAX_DEPTH = 64
_PERSONALIZATION = b"rngstate.file"
MAX_FILE_BYTES = 2**32  # 4 GiB: far above any real state; a bigger "state file" is refused
MEMORY_FACTOR = 16  # Python objects may cost at most this many times the payload (+1 MiB)
_MEMORY_ALLOWANCE = 2**20
_TMP_SUFFIX = ".rngstate-tmp"


def _checksum(fields: bytes, payload: bytes | memoryview) -> bytes:
    digest = hashlib.blake2b(digest_size=_CHECKSUM_SIZE, person=_PERSONALIZATION)
    digest.update(fields)
    digest.update(payload)
    return digest.digest()


def _canonical(value: Any, depth: int = 0) -> Any:
    """Sort map keys and wrap big integers; reject anything that is not plain data."""
    kind = type(value)
    if kind is bytes or kind is str:  # the bulk of a state: checked first, cheaply
        return value
    if depth > _MAX_DEPTH:
        raise StateFileError(f"cannot write: data nested deeper than {_MAX_DEPTH} levels")
    if kind is dict:
        for key in value:
            if type(key) is not str:
                raise StateFileError("cannot write: every map key must be a str")
        return {key: _canonical(value[key], depth + 1) for key in sorted(value)}
    if kind is int and -(2**63) <= value < 2**64:
        return value
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise StateFileError("cannot write: every map key must be a str")
        return {key: _canonical(value[key], depth + 1) for key in sorted(value)}
    if isinstance(value, list):
        return [_canonical(item, depth + 1) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, float):
        raise StateFileError(f"cannot write {type(value).__name__} values: state data is plain")
    if isinstance(value, int):
        if -(2**63) <= value < 2**64:
            return value
        if value.bit_length() > MAX_INT_BITS:
            raise StateFileError(f"cannot write an integer of {value.bit_length()} bits")
        size = (value.bit_length() + 8) // 8
        return msgpack.ExtType(_BIGINT_EXT, value.to_bytes(size, "big", signed=True))
    if isinstance(value, (str, bytes)):
        return value
    raise StateFileError(f"cannot write a {type(value).__name__}: state data is plain")


def _ext_hook(code: int, data: bytes) -> int:
    if code != _BIGINT_EXT or not 0 < len(data) <= _MAX_BIGINT_BYTES:
        raise StateFileError(f"unknown msgpack extension type {code} ({len(data)} bytes)")
    return int.from_bytes(data, "big", signed=True)


def pack_parts(data: Any) -> list[bytes]:
    """Serialize plain ``data`` into the file's bytes: the header, then the payload in pieces
    of a few KB (a big map's entries one by one): memory of the payload's size (100 MB at
    10,000 substreams) is fresh from the kernel every time, and faulting it in cost as much as
    packing it.  The pieces are one ``packb`` of the canonical data, cut where entries start."""
    packer = msgpack.Packer(use_bin_type=True)  # autoreset: each call returns its own bytes
    pieces: list[bytes] = []
    with _gc.paused():
        _pack_pieces(_canonical(data), packer, pieces, True)
    fields = _FIELDS.pack(FORMAT_VERSION, 0, sum(map(len, pieces)))
    digest = hashlib.blake2b(fields, digest_size=_CHECKSUM_SIZE, person=_PERSONALIZATION)
    for piece in pieces:  # while it is in the cache
        digest.update(piece)
    return [MAGIC + fields + digest.digest(), *pieces]


def _pack_pieces(value: Any, packer: msgpack.Packer, pieces: list[bytes], top: bool) -> None:
    """Pack canonical ``value`` into ``pieces``: the top map and maps of 17+ entries by entry."""
    if type(value) is dict and (top or len(value) > 16):
        pieces.append(packer.pack_map_header(len(value)))
        for key, item in value.items():
            pieces.append(packer.pack(key))
            _pack_pieces(item, packer, pieces, False)
    else:
        pieces.append(packer.pack(value))


def pack(data: Any) -> bytes:
    """Serialize plain ``data`` into complete file bytes (header and payload).

    >>> unpack(pack({"a": 2**100}))
    {'a': 1267650600228229401496703205376}
    """
    return b"".join(pack_parts(data))


def unpack(blob: bytes | bytearray, check_plain: bool = True) -> Any:
    """Parse complete file bytes back into plain data; raise StateFileError when malformed.

    ``check_plain=False`` skips the walk that rejects floats, None and bools, for callers that
    validate every value themselves (``rngstate.load``).
    """
    if len(blob) < len(MAGIC) or blob[: len(MAGIC)] != MAGIC:
        start = bytes(blob[:8])
        hint = ""
        if start[:1] == b"\x80" or start[:4] == b"PK\x03\x04":  # pickle protocol 2+, zip
            hint = " (it looks like a pickle or torch.save file)"
        elif start.lstrip()[:1] in (b"{", b"["):
            hint = " (it looks like JSON)"
        raise StateFileError(f"not an rngstate file: bad magic bytes {start!r}{hint}")
    if len(blob) < HEADER_SIZE:
        raise StateFileError(f"truncated rngstate file: {len(blob)} bytes, the header alone is {HEADER_SIZE}")
    fields = bytes(blob[len(MAGIC) : len(MAGIC) + _FIELDS.size])
    version, flags, length = _FIELDS.unpack(fields)
    if version > FORMAT_VERSION:
        raise StateFileError(
            f"the file uses format version {version}, newer than the version {FORMAT_VERSION} "
            "this rngstate reads; upgrade rngstate (pip install -U rngstate)"
        )
    if version != FORMAT_VERSION:  # version 1 is the first released container
        raise StateFileError(f"unknown file format version {version} (this rngstate reads {FORMAT_VERSION})")
    with memoryview(blob) as view, view[HEADER_SIZE:] as payload:  # no copy of a 100 MB payload
        data = _parse_payload(blob, fields, flags, length, payload)
    if check_plain:
        _check_plain(data, 0)
    return data


def _parse_payload(
    blob: bytes | bytearray, fields: bytes, flags: int, length: int, payload: memoryview
) -> Any:
    if len(payload) != length:
        raise StateFileError(
            f"truncated or padded rngstate file: header announces {length} payload bytes, "
            f"found {len(payload)}"
        )
    if _checksum(fields, payload) != blob[HEADER_SIZE - _CHECKSUM_SIZE : HEADER_SIZE]:
        raise StateFileError("checksum mismatch: the rngstate file is corrupt (changed after writing)")
    if flags != 0:
        raise StateFileError(f"unsupported flags {flags:#06x} in the file header")
    _walk(payload)
    try:
        with _gc.paused():
            data = msgpack.unpackb(
                payload,
                raw=False,
                strict_map_key=True,
                ext_hook=_ext_hook,
                object_hook=None,
                use_list=True,
                max_ext_len=_MAX_BIGINT_BYTES,
            )
    except StateFileError:
        raise
    except Exception as exc:  # msgpack raises many types for bad payloads
        raise StateFileError(f"the payload is not valid msgpack: {exc}") from None
    return data


# Cost estimates (bytes of Python memory, 64-bit CPython) of what msgpack builds per item;
# a slot in a list or dict adds 8 (list) or ~40 (dict entry incl. its share of the table).
_LIST, _DICT, _SLOT, _ENTRY, _INT, _STR = 56, 64, 8, 40, 32, 49
# First byte -> (kind, size of the length field or of the value).  Kinds: "int", "str", "bin",
# "ext", "fixext", "array", "map", "bad" (nil, bool, float, 0xc1: never in a state file).
_TOKENS: dict[int, tuple[str, int]] = {
    **{b: ("int", 0) for b in [*range(0x00, 0x80), *range(0xE0, 0x100)]},
    **{b: ("map", -1) for b in range(0x80, 0x90)},
    **{b: ("array", -1) for b in range(0x90, 0xA0)},
    **{b: ("str", -1) for b in range(0xA0, 0xC0)},
    0xC4: ("bin", 1), 0xC5: ("bin", 2), 0xC6: ("bin", 4),
    0xC7: ("ext", 1), 0xC8: ("ext", 2), 0xC9: ("ext", 4),
    0xCC: ("int", 1), 0xCD: ("int", 2), 0xCE: ("int", 4), 0xCF: ("int", 8),
    0xD0: ("int", 1), 0xD1: ("int", 2), 0xD2: ("int", 4), 0xD3: ("int", 8),
    0xD4: ("fixext", 1), 0xD5: ("fixext", 2), 0xD6: ("fixext", 4), 0xD7: ("fixext", 8),
    0xD8: ("fixext", 16),
    0xD9: ("str", 1), 0xDA: ("str", 2), 0xDB: ("str", 4),
    0xDC: ("array", 2), 0xDD: ("array", 4), 0xDE: ("map", 2), 0xDF: ("map", 4),
}

_TABLE = [_TOKENS.get(first, ("bad", 0)) for first in range(256)]
_ONE_BYTE = frozenset([*range(0x00, 0x80), 0x80, 0x90, 0xA0, *range(0xE0, 0x100)])
_RUN = re.compile(rb"[\x00-\x80\x90\xa0\xe0-\xff]+")  # fixints, {}, [], "" (a singleton)
_TOO_BIG = (
    f"the payload would take more than {MEMORY_FACTOR} times its size in memory "
    "(millions of tiny containers): refused as hostile or corrupt"
)


def _walk(payload: memoryview) -> None:
    """Check the msgpack structure without building it: one top-level value, nesting at most
    _MAX_DEPTH, declared sizes that fit the bytes left, only the big-integer extension, no
    nil/bool/float, and an estimated Python memory cost within MEMORY_FACTOR x the payload."""
    data = payload.cast("B") if payload.format != "B" else payload
    end, offset, cost = len(data), 0, 0
    budget = MEMORY_FACTOR * end + _MEMORY_ALLOWANCE
    pending = [1]  # items still expected at each open nesting level
    while pending:
        if pending[-1] == 0:
            pending.pop()
            continue
        pending[-1] -= 1
        if offset >= end:
            raise StateFileError("the payload ends inside a value (a declared size is too large)")
        first = data[offset]
        if first in _ONE_BYTE:  # a run of one-byte values (fixints, empty containers): in bulk
            stop = min(end, offset + 1 + pending[-1])
            run = _RUN.match(data, offset, stop).end() - offset  # type: ignore[union-attr]
            chunk = bytes(data[offset : offset + run])
            empty = chunk.count(0x80) + chunk.count(0x90)
            cost += (_DICT + _SLOT) * empty + _SLOT * (run - empty)
            pending[-1] -= run - 1
            offset += run
            if cost > budget:
                raise StateFileError(_TOO_BIG)
            continue
        kind, size = _TABLE[first]
        offset += 1
        if size > 0:
            if offset + size > end:
                raise StateFileError("the payload ends inside a value")
            length = int.from_bytes(data[offset : offset + size], "big")
        else:
            length = first & (0x1F if kind == "str" else 0x0F)
        if kind == "int":
            offset += size
            cost += _SLOT if size == 0 else _INT + _SLOT  # fixints are CPython's cached ints
            continue
        if kind == "bad":
            raise StateFileError(f"the payload holds a msgpack value of type {first:#04x} (nil, bool, float "
                                 "or reserved); only plain data is allowed")
        if kind in ("array", "map"):
            offset += max(size, 0)
            items = length * 2 if kind == "map" else length
            if items > end - offset:  # every item takes at least one byte
                raise StateFileError(f"a msgpack {kind} declares {length} items but only "
                                     f"{end - offset} bytes follow")
            if len(pending) > _MAX_DEPTH:
                raise StateFileError(f"the payload is nested deeper than {_MAX_DEPTH} levels")
            cost += (_DICT + _ENTRY * length) if kind == "map" else (_LIST + _SLOT * length)
            pending.append(items)
        else:  # str, bin, ext, fixext: a length, then (ext) a type byte, then the bytes
            if kind == "fixext":
                length = size
            else:
                offset += max(size, 0)
            if kind in ("ext", "fixext"):
                if offset >= end or data[offset] != _BIGINT_EXT or not 0 < length <= _MAX_BIGINT_BYTES:
                    code = data[offset] if offset < end else -1
                    raise StateFileError(f"unknown msgpack extension type {code} ({length} bytes)")
                offset += 1
            if offset + length > end:
                raise StateFileError(f"a msgpack {kind} declares {length} bytes but only "
                                     f"{end - offset} follow")
            offset += length
            cost += _STR + length + _SLOT
        if cost > budget:
            raise StateFileError(_TOO_BIG)
    if offset != end:
        raise StateFileError(f"{end - offset} bytes of junk after the payload's value")


def _check_plain(value: Any, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise StateFileError(f"the payload is nested deeper than {_MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise StateFileError(f"the payload has a non-str map key {key!r}")
            _check_plain(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_plain(item, depth + 1)
    elif isinstance(value, bool) or not isinstance(value, (int, str, bytes)):
        raise StateFileError(f"the payload holds a {type(value).__name__}; only plain data is allowed")


def temporaries(path: Path) -> list[Path]:
    """Temporary files of saves to ``path`` that did not finish (their process died)."""
    prefix = f".{path.name}."
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    return [path.parent / n for n in names if n.startswith(prefix) and n.endswith(_TMP_SUFFIX)]


def write_atomic(path: str | os.PathLike[str], *chunks: bytes | memoryview) -> None:
    """Write ``chunks`` to ``path`` so that a crash leaves either the old or the new file.

    The data goes to a new temporary file in the same folder, created the way
    ``tempfile.mkstemp`` does (unique name, exclusive create, never through a symbolic link),
    which is fsynced and renamed onto ``path``.  Saves into one folder hold a lock on the folder
    while they write, so processes saving to the same path at once take turns, and a temporary
    file left behind by a killed save is removed by the next save to that path.  Errors name
    ``path``, never the temporary file.
    """
    target = Path(path)
    try:
        directory = _open_directory(target.parent)
        try:
            if directory is not None and _lock(directory):
                for stale in temporaries(target):  # their writers died holding the lock
                    stale.unlink(missing_ok=True)
            _write_new(target, chunks)
            if directory is not None:
                # Some file systems cannot fsync a folder; the rename is still atomic.
                with contextlib.suppress(OSError):
                    os.fsync(directory)
        finally:
            if directory is not None:
                _unlock(directory)  # explicitly: the lock must go even if close() fails
                os.close(directory)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot save {os.fspath(path)!r}: {exc.strerror or exc}") from None


def _write_new(target: Path, chunks: tuple[bytes | memoryview, ...]) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=_TMP_SUFFIX, dir=target.parent)
    replaced = False
    try:
        if hasattr(os, "fchmod"):  # not on Windows before Python 3.13
            os.fchmod(fd, 0o666 & ~_umask())  # what a plain open() would have given
        _write_all(fd, chunks)
        os.fsync(fd)
        os.replace(name, target)
        replaced = True
    finally:
        os.close(fd)
        if not replaced:
            Path(name).unlink(missing_ok=True)


def _write_all(fd: int, chunks: tuple[bytes | memoryview, ...]) -> None:
    """Write every chunk, in order, gathered into writes of about 1 MB (not one per piece)."""
    group: list[bytes | memoryview] = []
    size = 0
    for index, chunk in enumerate(chunks):
        group.append(chunk)
        size += len(chunk)
        if size >= 1 << 20 or index == len(chunks) - 1:
            view = memoryview(b"".join(group)).cast("B")
            while view:
                view = view[os.write(fd, view) :]
            group, size = [], 0


def _umask() -> int:
    """The process umask without changing it (os.umask sets it, which races with threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _open_directory(directory: Path) -> int | None:
    try:
        return os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:  # some platforms cannot open folders: no lock, no folder fsync
        return None


def _unlock(fd: int) -> None:
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)


def _lock(fd: int) -> bool:
    """Wait for the exclusive lock on the folder ``fd``; False where locks are unavailable."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # a file system without locks: write unserialized
        return False
    return True


def read(path: str | os.PathLike[str], check_plain: bool = True) -> Any:
    """Read and parse a state file; every problem is a StateFileError."""
    if isinstance(path, int) or not isinstance(path, (str, bytes, os.PathLike)):
        raise StateFileError(f"expected a path to a state file, got {type(path).__name__}")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (the check below refuses it).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise StateFileError(f"no state file at {os.fspath(path)!r}") from None
    except IsADirectoryError:
        raise StateFileError(f"{os.fspath(path)!r} is a directory, not a state file") from None
    except OSError as exc:
        raise StateFileError(f"cannot read {os.fspath(path)!r}: {exc.strerror}") from None
    except ValueError as exc:  # a NUL byte in the path
        raise StateFileError(f"cannot read {os.fspath(path)!r}: {exc}") from None
    try:
        blob = _read_regular(fd, os.fspath(path), magic=True)
    finally:
        os.close(fd)
    try:
        return unpack(blob, check_plain)
    except StateFileError as exc:
        raise StateFileError(f"{os.fspath(path)}: {exc}") from None


def read_bytes(path: str | os.PathLike[str]) -> bytearray:
    """The bytes of the regular file ``path`` (at most MAX_FILE_BYTES); StateFileError else."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise StateFileError(f"cannot read {os.fspath(path)!r}: {exc.strerror}") from None
    try:
        return _read_regular(fd, os.fspath(path))
    finally:
        os.close(fd)


def _read_regular(fd: int, name: str, magic: bool = False) -> bytearray:
    """Read the open file ``fd`` into memory.  Never mapped: a mapped file that another process
    truncates kills the reader with SIGBUS; a read just comes back short.  With ``magic``, a
    file that does not start with MAGIC is refused before the rest is read (a 1.5 GB model
    file passed by mistake costs one small read, not 1.5 GB and seconds)."""
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise StateFileError(f"{name!r} is a directory, not a state file")
        if not stat.S_ISREG(info.st_mode):
            raise StateFileError(f"{name!r} is not a regular file (a pipe or a device?)")
        if info.st_size > MAX_FILE_BYTES:
            raise StateFileError(
                f"{name!r} has {info.st_size} bytes, more than any state file "
                f"({MAX_FILE_BYTES} at most)"
            )
        if magic:
            start = os.pread(fd, len(MAGIC), 0)
            if start != MAGIC:
                unpack(start)  # raises: bad magic bytes, with its hint
        buffer = bytearray(info.st_size)
        view, filled = memoryview(buffer), 0
        while filled < info.st_size:
            count = os.readv(fd, [view[filled:]])
            if count == 0:  # truncated while we read: unpack reports a short file
                break
            filled += count
        del view
        if filled < info.st_size:
            del buffer[filled:]
        return buffer
    except OSError as exc:
        raise StateFileError(f"cannot read {name!r}: {exc.strerror}") from None
