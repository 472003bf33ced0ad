"""Fingerprint bytes of the TensorFlow and Keras streams and generators (a step trace reads them
at every step): the msgpack bytes of their plain form (``encode``), the very bytes a trace
hashed for them before they had ``state_bytes``, so their fingerprints keep their values.

Their states are a few integers (a seed and a counter, a Philox position) or TensorFlow's op-seed
``random.Random`` (2.5 KB); what costs is how they are read and packed, not their size:

* a fresh ``msgpack.Packer`` (what ``msgpack.packb`` makes) allocates a 256 KiB buffer, which in
  a process running TensorFlow costs about 8 us a call (the allocator maps and unmaps it each
  time): these streams pack with a small buffer, which grows as needed, to the same bytes;
* a TensorFlow variable (a ``SeedGenerator``'s or a ``tf.random.Generator``'s state) is read by
  one ``ReadVariableOp`` through TensorFlow's eager fast path (``read_fast``), about 5 us where
  ``variable.numpy()`` takes 17 us; graph mode (a ``tf.function`` being traced) and any error
  go through :func:`rngstate.backends.tensorflow_backend.read_variable`, which the callers
  hand over (this module sits below the backends that use it).

>>> import msgpack
>>> plain = {"mode": "state", "state": [7, 2**63 - 1]}
>>> plain_bytes(plain) == msgpack.packb(plain, use_bin_type=True)
True
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any
from zlib import crc32

import msgpack

from rngstate.backends.base import GeneratorKind, Plain, Stream, exact

_BUFFER = 4096  # a Packer's first buffer: room for the op-seed stream's 2.5 KB state


def plain_bytes(plain: Plain) -> bytes | None:
    """The msgpack bytes ``digests.fingerprint`` hashes for ``plain``, packed without a 256 KiB
    buffer; None for what plain msgpack cannot pack (integers wider than 64 bits: then the
    trace fingerprints ``encode``'s form through the file format's packer, as before)."""
    try:
        return msgpack.Packer(use_bin_type=True, buf_size=_BUFFER).pack(plain)  # type: ignore[no-any-return]
    except (OverflowError, TypeError, ValueError):
        return None


def ints(value: Any) -> list[int]:
    """A state's integers as Python ints: ``[int(x) for x in value]`` (of ``value.numpy()`` for
    a tensor), through ``tolist`` for a 1-D integer array (a tenth of the time)."""
    if hasattr(value, "numpy"):
        value = value.numpy()
        if getattr(value, "ndim", None) == 1 and value.dtype.kind in "iu":
            return value.tolist()  # type: ignore[no-any-return]
    return [int(x) for x in value]


class PlainBytes(Stream):
    """A stream whose ``state_bytes`` are its plain state's msgpack bytes; ``state_crc``
    reuses the previous call's CRC while the snapshot is the same (``exact`` ones only: a stream
    nothing drew from, or a generator its framework has not created yet)."""

    _last: tuple[Any, int] | None = None  # (exact snapshot, its CRC-32)

    def state_bytes(self) -> bytes | None:
        return self.snapshot_bytes(self.get_state())

    def snapshot_bytes(self, snapshot: Any) -> bytes | None:
        return plain_bytes(self.encode(snapshot))

    def state_crc(self) -> int | None:
        snapshot = self.get_state()
        cacheable, last = exact(snapshot), self._last
        if cacheable and last is not None and last[0] == snapshot:
            return last[1]
        data = plain_bytes(self.encode(snapshot))
        if data is None:
            return None
        crc = crc32(data)
        self._last = (snapshot, crc) if cacheable else None
        return crc


class PlainBytesKind(GeneratorKind):
    """A generator kind fingerprinted as its plain state's msgpack bytes (``state_crc``)."""

    def state_crc(self, obj: Any) -> int | None:
        data = plain_bytes(self.encode(self.get_state(obj)))
        return None if data is None else crc32(data)


class _Fast:
    """TensorFlow's eager entry points, looked up once (None where they are not found)."""

    def __init__(self) -> None:
        modules = sys.modules
        try:
            self.context = modules["tensorflow.python.eager.context"]
            self.execute = modules["tensorflow.python.pywrap_tfe"].TFE_Py_FastPathExecute
            self.eager_type = modules["tensorflow.python.framework.ops"].EagerTensor
        except (KeyError, AttributeError):  # another TensorFlow's layout: read_variable only
            self.execute = None


_FAST: list[_Fast] = []


def read_fast(variable: Any, read_variable: Callable[[Any], Any]) -> Any:
    """An eager tensor of ``variable``'s value: one ``ReadVariableOp`` on TensorFlow's eager
    fast path (what ``gen_resource_variable_ops.read_variable_op`` does, less its Python); in
    graph mode or on any error, ``read_variable(variable)`` (the tensorflow backend's, which
    raises TensorFlow's own error)."""
    if not _FAST:
        _FAST.append(_Fast())
    fast = _FAST[0]
    if fast.execute is not None:
        try:
            context = fast.context._context
            if context is not None and context._thread_local_data.is_eager:
                value = fast.execute(context, "ReadVariableOp", None, variable.handle, "dtype",
                                     variable.dtype)
                if type(value) is fast.eager_type:
                    return value
        except Exception:  # read again the plain way below: it raises TensorFlow's own error
            pass
    return read_variable(variable)
