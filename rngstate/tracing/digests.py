"""What a step record holds about a step: stream fingerprints, a batch digest (per sample and
whole), and weight/optimizer digests (the loss's exact bits: ``losses``).

Tensors of any framework are read as NumPy arrays by looking the framework up in
``sys.modules``, never importing one.  Stream fingerprints are taken of each stream's plain
state (``encode``), so that equal states give equal fingerprints in every process.

>>> import numpy as np
>>> digest = batch_digest((np.arange(6).reshape(3, 2), np.array([0, 1, 0])))
>>> len(digest["digest"]), len(digest["samples"]) // 4
(8, 3)
"""

from __future__ import annotations

import hashlib
import struct
import sys
import zlib
from collections.abc import Mapping
from typing import Any

import msgpack

from rngstate.arrays import to_numpy
from rngstate.errors import RNGStateError
from rngstate.fileformat import pack

_MAX_DEPTH = 32
_NP: list[Any] = []  # [numpy] once imported
_WORD: list[Any] = []  # [numpy.dtype('<u8')] once made
_KEYS: dict[tuple[int, int], Any] = {}  # (first, count) -> uint64 multipliers for row hashes
_LITTLE = sys.byteorder == "little"


class TraceDataError(RNGStateError, TypeError):
    """A batch, loss, model or optimizer given to ``trace.step`` cannot be digested."""


def fingerprint(plain: Any) -> bytes:
    """4 bytes that tell two plain states apart: the CRC-32 of their msgpack bytes (bytes, such
    as a stream's ``state_bytes``, are hashed as they are).  Not a cryptographic hash (a trace
    compares runs, it does not authenticate them) but the cheapest of a few KB in the standard
    library: a change confined to 32 bits in a row (a stream that drew more or fewer numbers:
    its position) always changes it; two unrelated states share it with probability 2**-32.

    >>> fingerprint({"pos": 1}) == fingerprint({"pos": 1}) != fingerprint({"pos": 2})
    True
    """
    if isinstance(plain, (bytes, memoryview)):
        blob = plain
    else:
        try:  # not msgpack.packb: its Packer allocates 256 KiB, ~8 us a call beside TensorFlow
            blob = msgpack.Packer(use_bin_type=True, buf_size=4096).pack(plain)
        except (OverflowError, TypeError, ValueError):  # integers wider than 64 bits (PCG64)
            blob = pack(plain)
    return _U32(zlib.crc32(blob))


_U32 = struct.Struct(">I").pack
_TWO_U32 = struct.Struct(">II")


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
    """``batch[0]['x']`` of a ``where`` chain: (name,) or (parent chain, key)."""
    keys = []
    while len(where) == 2:
        where, key = where
        keys.append(f"[{key!r}]")
    return str(where[0]) + "".join(reversed(keys))


# How _flatten reads a value of each type (looked up once per type): a sequence, a tensor or
# array, a scalar, a mapping, a subclass of list or tuple, or anything else (read as an array).
_SEQUENCE, _ARRAY, _SCALAR, _MAPPING, _SUBCLASS, _OTHER = range(6)
_KINDS: dict[type, int] = {tuple: _SEQUENCE, list: _SEQUENCE}


def _kind(value: Any) -> int:
    kind = type(value)
    if hasattr(value, "dtype") and hasattr(value, "shape"):  # any framework's tensor or array
        code = _ARRAY
    elif value is None or isinstance(value, (bool, int, float, str, bytes)):
        code = _SCALAR
    elif isinstance(value, Mapping):
        code = _MAPPING
    elif isinstance(value, (list, tuple)):  # subclasses (named tuples): as their base
        code = _SUBCLASS
    else:
        return _OTHER  # not cached: an object may grow dtype and shape attributes
    if len(_KINDS) < 1024:
        _KINDS[kind] = code
    return code


def _flatten(value: Any, tokens: list[Any], arrays: list[Any], where: tuple[Any, ...],
             depth: int = 0) -> None:
    """Append ``value``'s structure to ``tokens`` and its arrays to ``arrays`` (see above)."""
    code = _KINDS.get(type(value))
    if code is None:
        code = _kind(value)
    if code == _ARRAY:
        array = _array(value, where)
        tokens.append(array.dtype.str)
        tokens.append(array.shape)
        arrays.append(array)
    elif code == _SEQUENCE:
        tokens.append(len(value))
        if depth >= _MAX_DEPTH:
            raise TraceDataError(f"{_path(where)}: nested deeper than {_MAX_DEPTH} levels")
        for index, item in enumerate(value):
            _flatten(item, tokens, arrays, (where, index), depth + 1)
    elif code == _SCALAR:
        tokens.append(repr(value))
    elif code == _MAPPING:
        tokens.append("{}")
        tokens.append(len(value))
        if depth >= _MAX_DEPTH:
            raise TraceDataError(f"{_path(where)}: nested deeper than {_MAX_DEPTH} levels")
        for key in value:
            tokens.append(repr(key))
            _flatten(value[key], tokens, arrays, (where, key), depth + 1)
    elif code == _SUBCLASS:
        _flatten(list(value), tokens, arrays, where, depth)
    else:
        _flatten(_array(value, where), tokens, arrays, where, depth)


_TENSOR: list[Any] = [None]  # torch.Tensor once torch is imported


def _array(value: Any, where: tuple[Any, ...]) -> Any:
    """A little-endian C-contiguous NumPy array of ``value`` (any framework's tensor); a view of
    a CPU torch tensor or a NumPy array where it already is one (a digest only reads it)."""
    kind = type(value)
    tensor = _TENSOR[0]
    if kind is tensor and _LITTLE:  # the common case: a CPU tensor, native order; no copy
        try:
            array = value.numpy()  # refused where it needs grad, on CUDA, bfloat16, ...
        except (TypeError, RuntimeError):
            array = None
        if array is not None:
            return array if array.flags.c_contiguous else _numpy().ascontiguousarray(array)
    np = _numpy()
    if kind is np.ndarray:
        array = value
    else:
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(value, torch.Tensor):
            _TENSOR[0] = torch.Tensor
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


_STRUCTURES: dict[tuple[Any, ...], bytes] = {}  # tokens -> the BLAKE2b-64 of their text


def _structure(tokens: list[Any]) -> bytes:
    """8 bytes that tell structures apart: the BLAKE2b-64 of their text, computed once per
    structure (batches come in a few)."""
    key = tuple(tokens)
    digest = _STRUCTURES.get(key)
    if digest is None:
        digest = hashlib.blake2b(repr(tokens).encode("utf-8", "backslashreplace"), digest_size=8).digest()
        if len(_STRUCTURES) >= 4096:  # bounded all the same
            _STRUCTURES.clear()
        _STRUCTURES[key] = digest
    return digest


def _digest(tokens: list[Any], arrays: list[Any]) -> Any:
    """BLAKE2b-64 of a structure and every array's bytes (call ``.update`` for more)."""
    hasher = hashlib.blake2b(_structure(tokens), digest_size=8)
    for array in arrays:
        hasher.update(array.data if array.size else b"")
    return hasher


def batch_digest(batch: Any) -> dict[str, bytes]:
    """Digests of a batch (any nesting of tuples/lists/dicts of tensors or arrays): ``digest``
    (8 bytes, the whole batch: CRC-32 and Adler-32 of its structure, dtypes, shapes and every
    byte) and ``samples``: 4 bytes per sample (per index of the first array's leading dimension,
    over every array of that length), to tell a batch in another order from another batch.

    >>> import numpy as np
    >>> x = np.arange(6).reshape(3, 2)
    >>> a, b = batch_digest(x), batch_digest(x[[2, 1, 0]])
    >>> a["digest"] != b["digest"], sorted(a["samples"][i:i + 4] for i in (0, 4, 8)) == sorted(
    ...     b["samples"][i:i + 4] for i in (0, 4, 8))
    (True, True)
    """
    digest, samples = batch_fields(batch)
    return {"digest": digest, "samples": samples}


def batch_fields(batch: Any) -> tuple[bytes, bytes]:
    """``(digest, samples)`` of :func:`batch_digest`, as a step record holds them.

    >>> import numpy as np
    >>> batch_fields([np.zeros((2, 3)), np.array([0, 1])])[1] == batch_digest(
    ...     [np.zeros((2, 3)), np.array([0, 1])])["samples"]
    True
    """
    kind = type(batch)
    if (kind is tuple or kind is list) and _LITTLE:
        fields = _tensor_fields(batch)
        if fields is not None:
            return fields
    tokens: list[Any] = []
    arrays: list[Any] = []
    _flatten(batch, tokens, arrays, ("batch",))
    count, aligned = -1, []
    for array in arrays:  # the arrays with a row per sample: those as long as the first
        shape = array.shape
        if shape and count < 0:
            count = shape[0]
        if shape and shape[0] == count and count:
            aligned.append(array)
    per_sample = _sample_hashes(aligned, count) if aligned else b""
    return _whole(_structure(tokens), arrays), per_sample


def _whole(structure: bytes, arrays: list[Any]) -> bytes:
    """The CRC-32 and Adler-32 of a structure, then of every (C-contiguous) array's bytes."""
    crc, adler = zlib.crc32(structure), zlib.adler32(structure)
    for array in arrays:
        crc, adler = zlib.crc32(array, crc), zlib.adler32(array, adler)
    return _TWO_U32.pack(crc, adler)


# The usual batch, a tuple or list of CPU tensors with a row per sample each: what its layout
# (torch dtypes and shapes: no NumPy attribute is read, a few cost microseconds right after a
# training step, when the caches are cold) needs: the CRC-32 and Adler-32 of its structure
# digest, the unpack that splits each array into rows, the pack of the per-sample CRCs; False
# for other layouts.
_LAYOUTS: dict[tuple[Any, ...], Any] = {}


def _tensor_fields(batch: Any) -> tuple[bytes, bytes] | None:
    """batch_fields of the usual batch (see _LAYOUTS), in a few C calls; None for another."""
    tensor = _TENSOR[0]
    key: list[Any] = []
    arrays = []
    try:
        for item in batch:
            if type(item) is not tensor:
                return None
            key.append(item.dtype)
            key.append(item.shape)
            arrays.append(item.numpy())  # refused where it needs grad, on CUDA, bfloat16, ...
    except (TypeError, RuntimeError):
        return None
    layout = _LAYOUTS.get(tuple(key))
    if layout is None:
        layout = _layout(arrays)
        if len(_LAYOUTS) < 1024:  # batches come in a few layouts: bounded all the same
            _LAYOUTS[tuple(key)] = layout
    if not layout:
        return None
    crc, adler, splits, pack = layout
    crc32, adler32 = zlib.crc32, zlib.adler32
    try:  # a tensor that is not C-contiguous has no plain buffer: ValueError
        rows = list(map(_call, splits, arrays))
    except (TypeError, ValueError, BufferError):
        return None
    crcs = map(crc32, rows[0])
    for more in rows[1:]:
        crcs = map(crc32, more, crcs)
    for array in arrays:  # what _whole does, from the structure's hashes kept with the layout
        crc, adler = crc32(array, crc), adler32(array, adler)
    return _TWO_U32.pack(crc, adler), pack(*crcs)


def _call(function: Any, argument: Any) -> Any:
    return function(argument)


def _layout(arrays: list[Any]) -> Any:
    """The entry of _LAYOUTS for a batch of these arrays (False unless each has the same number
    of rows, 1 to _LOOP_SAMPLES, and is of a plain little-endian dtype)."""
    count = arrays[0].shape[0] if arrays and arrays[0].ndim else 0
    if not 0 < count <= _LOOP_SAMPLES or any(
        a.ndim == 0 or a.shape[0] != count or a.dtype.hasobject or a.dtype.byteorder == ">" for a in arrays
    ):
        return False
    tokens: list[Any] = [len(arrays)]
    for array in arrays:
        tokens += [array.dtype.str, array.shape]
    splits = [_splitter(array.nbytes // count, count) for array in arrays]
    structure = _structure(tokens)
    return zlib.crc32(structure), zlib.adler32(structure), splits, _crcs_pack(count)


_LOOP_SAMPLES = 64  # batches of up to this many samples: a CRC-32 per sample
_SPLITS: dict[tuple[int, int], Any] = {}  # (row bytes, rows) -> the unpack that splits an array's rows
_PACKS: dict[int, Any] = {}  # rows -> the pack of a CRC-32 per row


def _splitter(width: int, count: int) -> Any:
    """The ``unpack`` that splits a C-contiguous buffer of ``count`` rows of ``width`` bytes
    into rows: one C loop, no NumPy call."""
    split = _SPLITS.get((width, count))
    if split is None:
        split = struct.Struct(f"{width}s" * count).unpack
        if len(_SPLITS) < 1024:
            _SPLITS[(width, count)] = split
    return split


def _crcs_pack(count: int) -> Any:
    pack = _PACKS.get(count)
    if pack is None:
        pack = _PACKS[count] = struct.Struct(f">{count}I").pack
    return pack


def _sample_hashes(arrays: list[Any], count: int) -> bytes:
    """4 bytes per sample, over its row (index of the leading dimension) of every array.

    Up to _LOOP_SAMPLES samples: the CRC-32 of the sample's rows, one after the other (a call
    per row, in C loops: cheaper than NumPy's arithmetic for a few rows); larger batches: the
    high half of a keyed 64-bit sum over the rows' 8-byte words (one vectorized pass each).
    """
    if count <= _LOOP_SAMPLES:
        crc32 = zlib.crc32
        crcs: Any = None
        for array in arrays:
            split = _splitter(array.nbytes // count, count)
            try:
                rows = split(array)
            except (TypeError, ValueError, BufferError):  # a dtype NumPy exports no buffer of
                rows = split(array.reshape(-1).view(_numpy().uint8))
            crcs = map(crc32, rows) if crcs is None else map(crc32, rows, crcs)
        return bytes(_crcs_pack(count)(*crcs))
    samples, start = _row_hashes(arrays[0], 0)
    for array in arrays[1:]:
        rows, start = _row_hashes(array, start)
        samples = samples + rows
    return bytes((samples >> _numpy().uint64(32)).astype(">u4").tobytes())


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
