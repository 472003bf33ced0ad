"""What a step record holds about a step: stream fingerprints, a batch digest (per sample and
whole), the loss's exact bits, and weight/optimizer digests.

Tensors of any framework are read as NumPy arrays by looking the framework up in
``sys.modules``, never importing one.  Stream fingerprints are taken of each stream's plain
state (``encode``), so that equal states give equal fingerprints in every process.

>>> import numpy as np
>>> digest = batch_digest((np.arange(6).reshape(3, 2), np.array([0, 1, 0])))
>>> len(digest["digest"]), len(digest["samples"]) // 8
(8, 3)
"""

from __future__ import annotations

import hashlib
import math
import struct
import sys
import zlib
from collections.abc import Mapping
from itertools import chain
from typing import Any

import msgpack

from rngstate.arrays import to_numpy
from rngstate.backends import stream as backend_stream
from rngstate.errors import RNGStateError
from rngstate.fileformat import pack
from rngstate.runtime import RUNTIME

_MAX_DEPTH = 32
_KEYS: list[Any] = []  # [uint64 multipliers] for row hashes, grown on demand
_LITTLE = sys.byteorder == "little"


class TraceDataError(RNGStateError, TypeError):
    """A batch, loss, model or optimizer given to ``trace.step`` cannot be digested."""


def fingerprint(plain: Any) -> bytes:
    """8 bytes that tell two plain states apart: CRC-32 and Adler-32 of the msgpack bytes.  Not a
    cryptographic hash (a trace compares runs, it does not authenticate them), and four times
    cheaper than BLAKE2b on a 5 KB generator state, paid at every step.

    >>> fingerprint({"pos": 1}) == fingerprint({"pos": 1}) != fingerprint({"pos": 2})
    True
    """
    if type(plain) is bytes:  # torch's CPU state: hashed as it is (no msgpack copy of 5 KB)
        blob = plain
    else:
        try:
            blob = msgpack.packb(plain, use_bin_type=True)
        except (OverflowError, TypeError, ValueError):  # integers wider than 64 bits (PCG64)
            blob = pack(plain)
    return struct.pack(">II", zlib.crc32(blob), zlib.adler32(blob))


def _raw_key(snapshot: Any) -> Any:
    """Something ``==`` compares cheaply and exactly for a snapshot made of bytes (the raw
    copies of NumPy's and torch's generators, Python's state tuple); None for other snapshots."""
    if type(snapshot) in (bytes, tuple):
        return snapshot
    slots = getattr(type(snapshot), "__slots__", None)
    if isinstance(slots, tuple) and slots:
        values = tuple(getattr(snapshot, name, None) for name in slots)
        if all(type(value) is bytes for value in values):
            return values
    return None


class StreamFingerprints:
    """Fingerprints of every stream, substream and tracked generator, for one trace.

    Global streams and tracked generators are fingerprinted at every step (a few microseconds
    each); a substream's snapshot object only changes when its scope exits, so its fingerprint
    is cached by identity and each record lists only the substreams *touched* since the
    previous one (all of them in a session's first record), plus a digest over all of them
    (kept up to date entry by entry: a model with hundreds of scopes costs little per step).
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[Any, bytes]] = {}
        self._last: dict[str, tuple[Any, bytes]] = {}  # stream -> (raw snapshot key, fingerprint)
        self._all = bytes(8)
        self._all_int = 0
        self._entries: dict[tuple[str, str], int] = {}
        self._flat: list[Any] = []
        self._ids: list[int] = []
        self._first = True

    def _stream(self, key: str, snapshot: Any, encode: Any) -> bytes:
        """The fingerprint of ``encode(snapshot)``; skips encoding and hashing when the raw
        snapshot equals the previous step's (a stream nothing drew from)."""
        raw = _raw_key(snapshot)
        last = self._last.get(key)
        if last is not None and raw is not None and last[0] == raw:
            return last[1]
        digest = fingerprint(encode(snapshot))
        self._last[key] = (raw, digest)
        return digest

    def take(self) -> dict[str, Any]:
        """The record fields ``streams``, ``substreams`` (touched), ``scopes`` and ``generators``."""
        if RUNTIME.frames:  # inside a scope: the states as if every open scope had exited
            outer, substreams = RUNTIME.outer_and_substreams()
        else:  # the usual case: read the live registry, copying nothing
            RUNTIME.refresh()
            outer = {name: stream.get_state() for name, stream in RUNTIME.active.items()}
            substreams = RUNTIME.substreams
        streams = {name: self._stream(name, snap, backend_stream(name).encode)
                   for name, snap in outer.items()}
        # A substream's snapshot object is replaced only when its scope exits: one identity
        # comparison of them all tells whether any scope ran since the last record.
        flat = list(chain.from_iterable(map(dict.values, substreams.values())))  # C loops only
        ids = list(map(id, flat))  # self._flat keeps the objects alive: no id is reused meanwhile
        touched: dict[str, dict[str, bytes]] = {}
        if self._first or ids != self._ids:
            touched = self._touched(substreams)
        self._flat, self._ids = flat, ids
        generators = {
            key: self._stream("\0" + key, tracked.kind.get_state(tracked.obj), tracked.kind.encode)
            for key, tracked in RUNTIME.tracked.items()
        }
        return {"streams": streams, "substreams": touched, "scopes": self._all, "generators": generators}

    def _touched(self, substreams: dict[str, dict[str, Any]]) -> dict[str, dict[str, bytes]]:
        touched: dict[str, dict[str, bytes]] = {}
        for path, states in substreams.items():
            for name, snapshot in states.items():
                cached = self._cache.get((path, name))
                if cached is not None and cached[0] is snapshot and not self._first:
                    continue
                if cached is None or cached[0] is not snapshot:
                    digest = fingerprint(backend_stream(name).encode(snapshot))
                    # The digest of all scopes: an XOR of one hash per (path, stream), updated
                    # for the entries that changed instead of rehashing hundreds of scopes.
                    entry = hashlib.blake2b(f"{len(path)}:{path}{len(name)}:{name}".encode() + digest,
                                            digest_size=8).digest()
                    old = self._entries.get((path, name), 0)
                    self._all_int ^= old ^ int.from_bytes(entry, "big")
                    self._entries[(path, name)] = int.from_bytes(entry, "big")
                    cached = (snapshot, digest)
                    self._cache[(path, name)] = cached
                touched.setdefault(path, {})[name] = cached[1]
        self._all = self._all_int.to_bytes(8, "big")
        self._first = False
        return touched


# -- batches, weights ------------------------------------------------------------------------------


def _row_keys(words: int) -> Any:
    """``words`` fixed odd 64-bit multipliers (splitmix64 of 0, 1, 2, ...): the same everywhere."""
    import numpy as np

    if not _KEYS or len(_KEYS[0]) < words:
        z = np.arange(max(words, 1024), dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        _KEYS[:] = [(z ^ (z >> np.uint64(31))) | np.uint64(1)]
    return _KEYS[0][:words]


def _little_endian(array: Any) -> Any:
    import numpy as np

    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return array


def _row_hashes(array: Any) -> Any:
    """One 64-bit hash per row (leading index) of ``array``: a keyed sum over its 8-byte words,
    one vectorized pass over the data (no per-sample Python loop)."""
    import numpy as np

    rows = array.reshape(array.shape[0], -1).view(np.uint8)
    width = rows.shape[1]
    if width % 8:
        rows = np.concatenate([rows, np.zeros((rows.shape[0], 8 - width % 8), np.uint8)], axis=1)
    if not rows.shape[1]:
        return np.full(rows.shape[0], width, np.uint64)
    words = rows.view("<u8")
    return (words @ _row_keys(words.shape[1])) ^ np.uint64(width)


def _leaves(value: Any, path: str, out: list[tuple[str, Any]], depth: int = 0) -> None:
    """(path, leaf) in order; leaves are arrays (any framework's, as NumPy) or plain scalars."""
    if depth > _MAX_DEPTH:
        raise TraceDataError(f"{path}: nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        out.append((path, value))
    elif isinstance(value, Mapping):
        for key in value:
            _leaves(value[key], f"{path}[{key!r}]", out, depth + 1)
    elif isinstance(value, (list, tuple)):
        out.append((path, ("<length>", len(value))))
        for index, item in enumerate(value):
            _leaves(item, f"{path}[{index}]", out, depth + 1)
    else:
        out.append((path, _little_endian(_array(value, path))))


def _array(value: Any, path: str) -> Any:
    """A NumPy view of a CPU torch tensor (no copy: the digest only reads it), else a copy."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        try:  # refused for CUDA, bfloat16 and conjugate/negative-bit views: to_numpy copies those
            return value.detach().numpy()
        except (TypeError, RuntimeError):
            pass
    try:
        return to_numpy(value, path)
    except RNGStateError as exc:
        raise TraceDataError(f"cannot digest {exc}") from None


def _update(hasher: Any, path: str, leaf: Any) -> None:
    hasher.update(path.encode("utf-8", "backslashreplace") + b"\0")
    if hasattr(leaf, "dtype") and hasattr(leaf, "shape"):
        hasher.update(f"{leaf.dtype.str}{leaf.shape}".encode())
        hasher.update(leaf.data if leaf.size else b"")
    else:
        hasher.update(repr(leaf).encode("utf-8", "backslashreplace"))


def batch_digest(batch: Any) -> dict[str, bytes]:
    """``digest`` (8 bytes) of the whole batch, structure, dtypes and shapes included, and
    ``samples``: 8 bytes per sample (per index of the first array's leading dimension, over
    every array of that length), to tell a batch in another order from another batch."""
    import numpy as np

    leaves: list[tuple[str, Any]] = []
    _leaves(batch, "batch", leaves)
    arrays = [leaf for _, leaf in leaves if isinstance(leaf, np.ndarray) and leaf.ndim]
    count = arrays[0].shape[0] if arrays else 0
    samples = None
    whole = hashlib.blake2b(digest_size=8)
    for path, leaf in leaves:
        if isinstance(leaf, np.ndarray) and leaf.ndim and leaf.shape[0] == count and count:
            rows = _row_hashes(leaf)
            samples = rows if samples is None else samples * np.uint64(0x100000001B3) + rows
            whole.update(f"{path}\0{leaf.dtype.str}{leaf.shape}".encode())
            whole.update(rows.data if _LITTLE else rows.astype("<u8").data)
        else:
            _update(whole, path, leaf)
    if samples is None:
        return {"digest": whole.digest(), "samples": b""}
    per_sample = samples.tobytes() if _LITTLE else samples.astype("<u8").tobytes()
    return {"digest": whole.digest(), "samples": per_sample}


def loss_bits(loss: Any) -> dict[str, Any]:
    """The loss's exact bits: ``dtype`` (NumPy's dtype string) and ``bits`` (its bytes) for a
    single number; a multi-element loss keeps an 8-byte digest in ``bits`` (dtype "digest")."""
    if isinstance(loss, (int, float)) and not isinstance(loss, bool):
        return {"dtype": "<f8", "bits": struct.pack("<d", float(loss))}
    leaves: list[tuple[str, Any]] = []
    _leaves(loss, "loss", leaves)
    if len(leaves) == 1 and getattr(leaves[0][1], "size", 0) == 1:
        array = leaves[0][1]
        return {"dtype": array.dtype.str, "bits": array.tobytes()}
    hasher = hashlib.blake2b(digest_size=8)
    for path, leaf in leaves:
        _update(hasher, path, leaf)
    return {"dtype": "digest", "bits": hasher.digest()}


def loss_text(dtype: str, bits: bytes) -> str:
    """A recorded loss as text: the number (exact repr) and its bits, or the digest.

    >>> loss_text("<f8", struct.pack("<d", 0.5))
    '0.5 (0x3fe0000000000000)'
    """
    formats = {"<f8": "<d", "<f4": "<f", "<f2": "<e"}
    if dtype in formats and len(bits) == struct.calcsize(formats[dtype]):
        value = struct.unpack(formats[dtype], bits)[0]
        shown = repr(value) if not math.isnan(value) else "nan"
        return f"{shown} (0x{bits[::-1].hex()})"
    return f"{bits[:32].hex()} ({dtype[:16]})"


def _weights(obj: Any) -> Any:
    """What to digest for a model or optimizer of any framework (no import of any)."""
    for method in ("state_dict", "get_weights"):  # torch/paddle modules and optimizers; keras
        function = getattr(obj, method, None)
        if callable(function):
            return function()
    variables = getattr(obj, "variables", None)  # keras optimizers, tf.Module
    return list(variables) if isinstance(variables, (list, tuple)) else obj


def weights_digest(obj: Any) -> bytes:
    """8-byte digest of a model's or optimizer's state (every tensor's exact bytes)."""
    leaves: list[tuple[str, Any]] = []
    _leaves(_weights(obj), type(obj).__name__, leaves)
    hasher = hashlib.blake2b(digest_size=8)
    for path, leaf in leaves:
        _update(hasher, path, leaf)
    return hasher.digest()
