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
"""

from __future__ import annotations

import hashlib
import mmap
import os
import stat
import struct
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


def pack_parts(data: Any) -> tuple[bytes, memoryview]:
    """Serialize plain ``data`` into (header, payload): writing them one after the other saves
    copying a payload that may be 100 MB.  The payload is a view of the packer's own buffer
    (``packb`` would copy it into a new bytes object, another 100 MB to allocate and touch)."""
    packer = msgpack.Packer(use_bin_type=True, autoreset=False)
    with _gc.paused():
        packer.pack(_canonical(data))
    payload = packer.getbuffer()
    fields = _FIELDS.pack(FORMAT_VERSION, 0, len(payload))
    return MAGIC + fields + _checksum(fields, payload), payload


def pack(data: Any) -> bytes:
    """Serialize plain ``data`` into complete file bytes (header and payload).

    >>> unpack(pack({"a": 2**100}))
    {'a': 1267650600228229401496703205376}
    """
    return b"".join(pack_parts(data))


def unpack(blob: bytes, check_plain: bool = True) -> Any:
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
    fields = blob[len(MAGIC) : len(MAGIC) + _FIELDS.size]
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


def _parse_payload(blob: bytes, fields: bytes, flags: int, length: int, payload: memoryview) -> Any:
    if len(payload) != length:
        raise StateFileError(
            f"truncated or padded rngstate file: header announces {length} payload bytes, "
            f"found {len(payload)}"
        )
    if _checksum(fields, payload) != blob[HEADER_SIZE - _CHECKSUM_SIZE : HEADER_SIZE]:
        raise StateFileError("checksum mismatch: the rngstate file is corrupt (changed after writing)")
    if flags != 0:
        raise StateFileError(f"unsupported flags {flags:#06x} in the file header")
    try:
        with _gc.paused():
            data = msgpack.unpackb(
                payload,
                raw=False,
                strict_map_key=True,
                ext_hook=_ext_hook,
                object_hook=None,
                use_list=True,
            )
    except StateFileError:
        raise
    except Exception as exc:  # msgpack raises many types for bad payloads
        raise StateFileError(f"the payload is not valid msgpack: {exc}") from None
    return data


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


def temporary_path(path: Path) -> Path:
    """The one temporary file ``write_atomic`` uses for ``path`` (reused, so at most one)."""
    return path.with_name(f".{path.name}.rngstate-tmp")


def write_atomic(path: str | os.PathLike[str], *chunks: bytes | memoryview) -> None:
    """Write ``chunks`` to ``path`` so that a crash leaves either the old or the new file.

    The temporary file is locked while it is written and renamed, so processes saving to the
    same path at once (every rank of a job, say) take turns instead of writing into one file.
    A temporary file left by a killed process is reused, hence cleaned up, by the next save.
    """
    target = Path(path)
    temporary = temporary_path(target)
    fd = _open_locked(temporary)
    replaced = False
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
        os.replace(temporary, target)
        replaced = True
    except BaseException:
        if not replaced:  # still locked by us: nobody else is using this temporary file
            temporary.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)  # releases the lock
    _fsync_directory(target.parent)


def _open_locked(temporary: Path) -> int:
    """Open ``temporary`` for writing, empty, holding an exclusive lock on it."""
    while True:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            if fcntl is not None and not _lock(fd, temporary):
                os.close(fd)  # the save we waited for renamed this file onto its target
                continue
            try:
                os.ftruncate(fd, 0)
            except BaseException:
                temporary.unlink(missing_ok=True)  # ours: we hold its lock
                raise
        except BaseException:
            os.close(fd)
            raise
        return fd


def _lock(fd: int, temporary: Path) -> bool:
    """Wait for the lock on ``fd``; False when the file is no longer the one at ``temporary``."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # a file system without locks: write unserialized, as before
        return True
    try:
        return os.path.samestat(os.fstat(fd), os.stat(temporary))
    except FileNotFoundError:
        return False


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise StateFileError(f"{os.fspath(path)!r} is a directory, not a state file")
        if not stat.S_ISREG(info.st_mode):
            raise StateFileError(f"{os.fspath(path)!r} is not a regular file (a pipe or a device?)")
        if info.st_size == 0:
            blob: bytes | mmap.mmap = b""
        else:  # map instead of read: no 100 MB copy for large states
            blob = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise StateFileError(f"cannot read {os.fspath(path)!r}: {exc.strerror}") from None
    finally:
        os.close(fd)  # the map holds its own reference to the file
    try:
        return unpack(blob, check_plain)  # type: ignore[arg-type]  # mmap is a bytes-like buffer
    except StateFileError as exc:
        raise StateFileError(f"{os.fspath(path)}: {exc}") from None
    finally:
        if isinstance(blob, mmap.mmap):
            blob.close()
