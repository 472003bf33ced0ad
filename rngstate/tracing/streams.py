"""Fingerprints of every stream, substream and tracked generator, for the records of one trace.

A global stream is fingerprinted by its backend's :meth:`~rngstate.backends.base.Stream.state_crc`
(the CRC-32 of its ``state_bytes``, read in the live generator's memory holding its lock where
it has one: about a microsecond); streams without that form are fingerprinted as their plain
state (``encode``).  Either way equal states give equal fingerprints in every process.

>>> import random, rngstate
>>> _ = rngstate.seed_everything(0)
>>> streams = StreamFingerprints()
>>> first = streams.take()[0]["python"]
>>> same = first == streams.take()[0]["python"]
>>> _ = random.random()
>>> same, first == streams.take()[0]["python"]
(True, False)
"""

from __future__ import annotations

import hashlib
import operator
import struct
from itertools import chain
from typing import Any
from zlib import crc32

from rngstate.backends import stream as backend_stream
from rngstate.backends.base import exact
from rngstate.runtime import RUNTIME
from rngstate.tracing.digests import fingerprint

_CRC = struct.Struct(">I").pack  # a stream's fingerprint: the CRC-32 of its state bytes
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


class StreamFingerprints:
    """Fingerprints of every stream, substream and tracked generator, for one trace.

    Global streams and tracked generators are fingerprinted at every step (a tracked generator
    whose state equals the previous step's reuses its fingerprint); a substream's snapshot object only
    changes when its scope exits, so its fingerprint is cached by identity and each record
    lists only the substreams *touched* since the previous one (all of them in a session's
    first record), plus a digest over all of them (kept up to date entry by entry: a model
    with hundreds of scopes costs little per step).
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
        if last is not None and raw is not None:
            try:
                same = bool(last[0] == raw)
            except (TypeError, ValueError):  # a tuple holding arrays: == is elementwise
                same = False
            if same and (type(raw) is not tuple or exact(raw)):  # 0.0 == -0.0: not reused
                return last[1]
        digest = fingerprint(encode(snapshot))
        self._last[key] = (raw, digest)
        return digest

    def take(self) -> tuple[dict[str, bytes], dict[str, dict[str, bytes]], bytes, dict[str, bytes]]:
        """The step record's ``streams``, ``substreams`` (touched), ``scopes`` and ``generators``."""
        streams: dict[str, bytes] = {}
        runtime = RUNTIME
        if runtime.frames:  # inside a scope: the states as if every open scope had exited
            outer, substreams = runtime.outer_and_substreams()
            for name, snapshot in outer.items():
                stream = backend_stream(name)
                data = stream.snapshot_bytes(snapshot)
                streams[name] = (self._stream(name, snapshot, stream.encode) if data is None
                                 else _CRC(crc32(data)))
        else:  # the usual case: read the live generators (a stream's bytes change at most steps:
            runtime.refresh()  # hashed without looking up the previous step's first)
            substreams = runtime.substreams
            for name, stream in runtime.active.items():
                crc = stream.state_crc()
                streams[name] = (_CRC(crc) if crc is not None
                                 else self._stream(name, stream.get_state(), stream.encode))
        touched: dict[str, dict[str, bytes]] = {}
        if substreams or self._ids or self._first:
            # A substream's snapshot object is replaced only when its scope exits: one identity
            # comparison of them all tells whether any scope ran since the last record.
            flat = list(chain.from_iterable(map(dict.values, substreams.values())))  # C loops only
            ids = list(map(id, flat))  # self._flat keeps the objects alive: no id is reused
            if self._first or ids != self._ids:
                touched = self._touched(substreams)
            self._flat, self._ids = flat, ids
        generators: dict[str, bytes] = {}
        for key, item in runtime.tracked.items():
            kind = item.kind
            crc = kind.state_crc(item.obj)  # kinds that read their bytes cheaply (Keras, TF)
            generators[key] = (_CRC(crc) if crc is not None
                               else self._stream("\0" + key, kind.get_state(item.obj), kind.encode))
        return streams, touched, self._all, generators

    def _touched(self, substreams: dict[str, dict[str, Any]]) -> dict[str, dict[str, bytes]]:
        touched: dict[str, dict[str, bytes]] = {}
        for path, states in substreams.items():
            for name, snapshot in states.items():
                cached = self._cache.get((path, name))
                if cached is not None and cached[0] is snapshot and not self._first:
                    continue
                if cached is None or cached[0] is not snapshot:
                    # As the global stream's fingerprint would be in this state: the CRC of its
                    # state bytes (a raw copy's, no conversion), else of its plain form.
                    stream = backend_stream(name)
                    data = stream.snapshot_bytes(snapshot)
                    digest = fingerprint(stream.encode(snapshot)) if data is None else _CRC(crc32(data))
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
