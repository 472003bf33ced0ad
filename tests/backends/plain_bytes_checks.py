"""Checks shared by the TensorFlow and Keras state-bytes tests (run in their subprocesses):
what a step trace records of a stream or a tracked generator is the same on every path."""

from __future__ import annotations

import zlib
from typing import Any

from rngstate.backends import tensorflow_bytes
from rngstate.tracing.digests import fingerprint


def same_on_every_path(stream: Any) -> bytes:
    """state_bytes read live, through a snapshot and a decoded one; the CRC-32 of the plain
    form's msgpack (the fingerprint traces held before state_bytes); the bytes."""
    fast = stream.state_bytes()
    snapshot = stream.get_state()
    decoded = stream.decode(stream.encode(snapshot), "s")
    assert fast == stream.snapshot_bytes(snapshot) == stream.snapshot_bytes(decoded)
    assert stream.state_crc() == zlib.crc32(fast) == stream.state_crc()  # the second from the cache
    assert fingerprint(stream.encode(snapshot)) == zlib.crc32(fast).to_bytes(4, "big")
    return fast


def kind_same_on_every_path(kind: Any, obj: Any) -> int:
    """The same for a tracked generator ``obj`` of ``kind``; its CRC-32."""
    crc = kind.state_crc(obj)
    snapshot = kind.get_state(obj)
    decoded = kind.decode(kind.encode(snapshot), "g")
    assert crc == zlib.crc32(tensorflow_bytes.plain_bytes(kind.encode(decoded)))
    assert fingerprint(kind.encode(snapshot)) == crc.to_bytes(4, "big")
    return crc
