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
import operator
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
_NP: list[Any] = []  # [numpy] once imported
_WORD: list[Any] = []  # [numpy.dtype('<u8')] once made
_KEYS: dict[tuple[int, int], Any] = {}  # (first, count) -> uint64 multipliers for row hashes
_LITTLE = sys.byteorder == "little"


class TraceDataError(RNGStateError, TypeError):
    """A batch, loss, model or optimizer given to ``trace.step`` cannot be digested."""


def fingerprint(plain: Any) -> bytes:
    """8 bytes that tell two plain states apart: the CRC-32 of each half of their msgpack bytes
    (bytes, such as torch's CPU state, are hashed as they are).  Not a cryptographic hash (a
    trace compares runs, it does not authenticate them): one pass of CRC-32 is the cheapest
    hash of a few KB in the standard library (BLAKE2b costs five times more), paid at every
    step a stream moved; the two halves give 64 bits for the price of 32.

    >>> fingerprint({"pos": 1}) == fingerprint({"pos": 1}) != fingerprint({"pos": 2})
    True
    """
    if isinstance(plain, (bytes, memoryview)):  # torch's CPU state: hashed as it is
        blob = plain
    else:
        try:
            blob = msgpack.packb(plain, use_bin_type=True)
        except (OverflowError, TypeError, ValueError):  # integers wider than 64 bits (PCG64)
            blob = pack(plain)
    half = len(blob) // 2
    view = memoryview(blob)
    return _TWO_U32.pack(zlib.crc32(view[:half]), zlib.crc32(view[half:]))


_TWO_U32 = struct.Struct(">II")
_RAW_FIELDS: dict[type, Any] = {}  # snapshot type -> attrgetter of its __slots__, or None


def _raw_key(snapshot: Any) -> Any:
    """Something ``==`` compares cheaply and exactly for a snapshot made of bytes (the raw
    copies of NumPy's and torch's generators, Python's state tuple); None for other snapshots."""
    kind = type(snapshot)
    if kind is bytes or kind is tuple:
        return snapshot
    getter = _RAW_FIELDS.get(kind, _RAW_FIELDS)
    if getter is _RAW_FIELDS:
        slots = getattr(kind, "__slots__", None)
        slots = (slots,) if isinstance(slots, str) else slots
        ok = isinstance(slots, tuple) and slots and all(isinstance(name, str) for name in slots)
        getter = _RAW_FIELDS[kind] = operator.attrgetter(*slots) if ok else None  # type: ignore[misc]
    if getter is None:
        return None
    try:
        values = getter(snapshot)
    except AttributeError:  # a slot left unset
        return None
    if type(values) is not tuple:
        values = (values,)
    return values if set(map(type, values)) == {bytes} else None


def _torch_cpu_fingerprint() -> bytes | None:
    """The fingerprint of torch's CPU generator state, read through torch's public API
    (``get_state``: it takes the generator's lock, so it is safe whatever other threads draw):
    the bytes the torch backend's ``encode`` gives for every snapshot of it, so the same
    fingerprint as ``fingerprint(encode(snapshot))``; None where torch differs."""
    try:  # hashed in place through NumPy's view of the new tensor (cheaper than a ctypes view
        # right after a training step)
        return fingerprint(memoryview(sys.modules["torch"].default_generator.get_state().numpy()))
    except (AttributeError, RuntimeError, TypeError, BufferError):
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
        streams: dict[str, bytes] = {}
        if RUNTIME.frames:  # inside a scope: the states as if every open scope had exited
            outer, substreams = RUNTIME.outer_and_substreams()
            for name, snapshot in outer.items():
                streams[name] = self._stream(name, snapshot, backend_stream(name).encode)
        else:  # the usual case: read the live registry, copying nothing
            RUNTIME.refresh()
            substreams = RUNTIME.substreams
            for name, stream in RUNTIME.active.items():
                # torch's CPU state is read through torch's public get_state, as the bytes
                # its backend's encode() makes of any snapshot (the same fingerprint), and
                # hashed whatever it is: it moves at nearly every step (dropout)
                digest = _torch_cpu_fingerprint() if name == "torch.cpu" else None
                if digest is not None:
                    streams[name] = digest
                else:
                    streams[name] = self._stream(name, stream.get_state(), stream.encode)
        touched: dict[str, dict[str, bytes]] = {}
        if substreams or self._ids or self._first:
            # A substream's snapshot object is replaced only when its scope exits: one identity
            # comparison of them all tells whether any scope ran since the last record.
            flat = list(chain.from_iterable(map(dict.values, substreams.values())))  # C loops only
            ids = list(map(id, flat))  # self._flat keeps the objects alive: no id is reused
            if self._first or ids != self._ids:
                touched = self._touched(substreams)
            self._flat, self._ids = flat, ids
        generators = {
            key: self._stream("\0" + key, tracked.kind.get_state(tracked.obj), tracked.kind.encode)
            for key, tracked in RUNTIME.tracked.items()
        } if RUNTIME.tracked else {}
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
# A value (batch, loss, model state) is read as a *structure*, a list of tokens that names every
# container's length and keys, every scalar (its repr) and every array's dtype and shape, and its
# arrays as little-endian C-contiguous NumPy arrays.  Tokens are prefix-decodable (an int opens a
# list or tuple of that length, "{}" and an int a map, a dtype string and a shape an array, any
# other string is a scalar's repr), so two values have equal tokens only if built alike.


def _numpy() -> Any:
    """NumPy, imported on first use (a hard dependency; `import rngstate` stays lean)."""
    if not _NP:
        import numpy

        _NP.append(numpy)
    return _NP[0]


def _row_keys(start: int, words: int) -> Any:
    """``words`` fixed odd 64-bit multipliers from ``start`` on (splitmix64 of 0, 1, 2, ...): the
    same everywhere; each array of a batch takes the next ones, so their sum per row is one
    keyed hash over all the arrays."""
    keys = _KEYS.get((start, words))
    if keys is None:
        np = _numpy()
        z = np.arange(start, start + words, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        keys = (z ^ (z >> np.uint64(31))) | np.uint64(1)
        if len(_KEYS) < 4096:  # batches come in a few shapes: bounded all the same
            _KEYS[(start, words)] = keys
    return keys


def _row_hashes(array: Any, start: int) -> tuple[Any, int]:
    """One 64-bit hash per row (leading index) of ``array``, a keyed sum over its 8-byte words
    with the keys from ``start`` on (each word's difference changes it: the keys are odd), one
    vectorized pass over the data; and the first key after those used."""
    count = array.shape[0]
    width = array.nbytes // count
    rows = array.reshape(count, -1)
    if width % 8 or not width:  # zero-pad each row to whole words (an empty row: one word)
        np = _numpy()
        padded = np.zeros((count, width + 8 - width % 8), np.uint8)
        padded[:, :width] = rows.view(np.uint8)
        rows = padded
    words = rows.view(_WORD[0] if _WORD else _word())
    # np.dot: the same sum as ``@`` (mod 2**64), through a lighter dispatch than matmul's (a
    # quarter cheaper right after a training step, when the caches are cold)
    keys = _row_keys(start, words.shape[1])
    return _numpy().dot(words, keys), start + words.shape[1]


def _word() -> Any:
    _WORD.append(_numpy().dtype("<u8"))
    return _WORD[0]


def _path(where: tuple[Any, ...]) -> str:
    return str(where[0]) + "".join(f"[{key!r}]" for key in where[1:])


def _flatten(value: Any, tokens: list[Any], arrays: list[Any], where: tuple[Any, ...]) -> None:
    """Append ``value``'s structure to ``tokens`` and its arrays to ``arrays`` (see above)."""
    kind = type(value)
    if kind is tuple or kind is list:
        tokens.append(len(value))
        if len(where) > _MAX_DEPTH:
            raise TraceDataError(f"{_path(where)}: nested deeper than {_MAX_DEPTH} levels")
        for index, item in enumerate(value):
            _flatten(item, tokens, arrays, (*where, index))
    elif hasattr(value, "dtype") and hasattr(value, "shape"):  # any framework's tensor or array
        array = _array(value, where)
        tokens.append(array.dtype.str)
        tokens.append(array.shape)
        arrays.append(array)
    elif value is None or isinstance(value, (bool, int, float, str, bytes)):
        tokens.append(repr(value))
    elif isinstance(value, Mapping):
        tokens.append("{}")
        tokens.append(len(value))
        if len(where) > _MAX_DEPTH:
            raise TraceDataError(f"{_path(where)}: nested deeper than {_MAX_DEPTH} levels")
        for key in value:
            tokens.append(repr(key))
            _flatten(value[key], tokens, arrays, (*where, key))
    elif isinstance(value, (list, tuple)):  # subclasses (named tuples): as their base
        _flatten(list(value), tokens, arrays, where)
    else:
        _flatten(_array(value, where), tokens, arrays, where)


def _array(value: Any, where: tuple[Any, ...]) -> Any:
    """A little-endian C-contiguous NumPy array of ``value`` (any framework's tensor); a view of
    a CPU torch tensor or a NumPy array where it already is one (a digest only reads it)."""
    np = _numpy()
    if type(value) is np.ndarray:
        array = value
    else:
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(value, torch.Tensor):
            if _LITTLE and not value.requires_grad and value.is_contiguous():
                try:  # the common case: C-contiguous, native order, no objects; no copy
                    return value.numpy()
                except (TypeError, RuntimeError):  # CUDA, bfloat16, conjugate views: copied below
                    pass
            try:
                array = value.detach().numpy()
            except (TypeError, RuntimeError):
                array = None
        else:
            array = None
        if array is None:
            try:
                array = to_numpy(value, _path(where))
            except RNGStateError as exc:
                raise TraceDataError(f"cannot digest {exc}") from None
    if array.dtype.hasobject:
        raise TraceDataError(f"cannot digest {_path(where)}: an array of Python objects ({array.dtype})")
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return array


def _digest(tokens: list[Any], arrays: list[Any]) -> Any:
    """BLAKE2b-64 of a structure and every array's bytes (call ``.update`` for more)."""
    hasher = hashlib.blake2b(repr(tokens).encode("utf-8", "backslashreplace"), digest_size=8)
    for array in arrays:
        hasher.update(array.data if array.size else b"")
    return hasher


def batch_digest(batch: Any) -> dict[str, bytes]:
    """Digests of a batch (any nesting of tuples/lists/dicts of tensors or arrays): ``digest``
    (8 bytes, the whole batch: structure, dtypes, shapes, every byte) and ``samples``: 8 bytes
    per sample (per index of the first array's leading dimension, over every array of that
    length), to tell a batch in another order from another batch."""
    tokens: list[Any] = []
    arrays: list[Any] = []
    _flatten(batch, tokens, arrays, ("batch",))
    samples, start, count = None, 0, -1
    others = []
    for array in arrays:
        shape = array.shape
        if shape and count < 0:
            count = shape[0]
        if shape and shape[0] == count and count:
            rows, start = _row_hashes(array, start)
            samples = rows if samples is None else samples + rows
        else:
            others.append(array)
    whole = _digest(tokens, others)
    if samples is None:
        return {"digest": whole.digest(), "samples": b""}
    per_sample: bytes = samples.tobytes() if _LITTLE else samples.astype("<u8").tobytes()
    whole.update(per_sample)
    return {"digest": whole.digest(), "samples": per_sample}


def loss_bits(loss: Any) -> dict[str, Any]:
    """The loss's exact bits: ``dtype`` (NumPy's dtype string) and ``bits`` (its bytes) for a
    single number; a multi-element loss keeps an 8-byte digest in ``bits`` (dtype "digest")."""
    if isinstance(loss, (int, float)) and not isinstance(loss, bool):
        return {"dtype": "<f8", "bits": struct.pack("<d", float(loss))}
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(loss, torch.Tensor) and loss.numel() == 1:
        bits = _torch_scalar_bits(torch, loss)
        if bits is not None:
            return bits
    if hasattr(loss, "dtype") and hasattr(loss, "shape"):  # a tensor: what _flatten would do
        array = _array(loss, ("loss",))
        if array.size == 1:
            return {"dtype": array.dtype.str, "bits": array.tobytes()}
    tokens: list[Any] = []
    arrays: list[Any] = []
    _flatten(loss, tokens, arrays, ("loss",))
    if len(tokens) == 2 and len(arrays) == 1 and arrays[0].size == 1:  # one array of one number
        return {"dtype": arrays[0].dtype.str, "bits": arrays[0].tobytes()}
    return {"dtype": "digest", "bits": _digest(tokens, arrays).digest()}


def _torch_scalar_bits(torch: Any, loss: Any) -> dict[str, Any] | None:
    """loss_bits of a one-element float tensor, read as the integer of the same bits (torch's
    own ops, which the training step has just run, cost a third of a NumPy round trip there);
    None for other dtypes.  bfloat16 is recorded as float32, as NumPy would hold it."""
    if not _TORCH_BITS:
        _TORCH_BITS.update({
            torch.float32: ("<f4", torch.int32, _I32), torch.float64: ("<f8", torch.int64, _I64),
            torch.float16: ("<f2", torch.int16, _I16), torch.bfloat16: ("<f4", torch.int32, _I32),
        })
    entry = _TORCH_BITS.get(loss.dtype)
    if entry is None:
        return None
    dtype, integer, layout = entry
    value = loss.detach().reshape(())
    if loss.dtype == torch.bfloat16:
        value = value.float()  # exact
    return {"dtype": dtype, "bits": layout.pack(value.view(integer).item())}


_TORCH_BITS: dict[Any, tuple[str, Any, struct.Struct]] = {}
_I16, _I32, _I64 = struct.Struct("<h"), struct.Struct("<i"), struct.Struct("<q")


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
    tokens: list[Any] = []
    arrays: list[Any] = []
    _flatten(_weights(obj), tokens, arrays, (type(obj).__name__,))
    return bytes(_digest(tokens, arrays).digest())
