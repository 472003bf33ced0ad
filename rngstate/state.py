"""``RNGState``: an immutable snapshot of every generator, as plain data.

The plain form (``to_dict``) holds only str, int, bytes, list and dict, so it fits in
``torch.save`` checkpoints read with ``torch.load(weights_only=True)`` and in the msgpack state
file.  (``paddle.save`` refuses ``bytes`` anywhere in an object: with Paddle, keep the state in an
``rngstate.save`` side file.)  Its layout::

    {"schema": 1, "derivation": 1, "root_seed": 42,          # root_seed absent if never set
     "streams":    {"numpy": {...}, "torch.cpu": b"...", ...},   # outside every scope
     "substreams": {"model/encoder": {"torch.cpu": b"...", ...}, ...},
     "generators": {"loader": {"kind": "torch.Generator", "state": {...}}, ...},
     "metadata":   {"rngstate": "0.1.0", "torch": "2.13.0", ...}}

Schema 1 is the first released schema.  A later schema will come with a migration that
upgrades older plain states; until then there is nothing to migrate.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any

from rngstate import _check, _gc, backends
from rngstate.derive import DERIVATION_VERSION, MAX_SEED, split_path
from rngstate.errors import InvalidStateError, MissingBackendError, RNGStateError, StateFileError

SCHEMA_VERSION = 1
_REQUIRED = ("schema", "derivation", "streams", "substreams", "generators", "metadata")


@dataclass
class Decoded:
    """Validated snapshots, ready to apply.  ``unknown`` lists streams no backend provides."""

    root_seed: int | None
    streams: dict[str, Any]
    substreams: dict[str, dict[str, Any]]
    generators: dict[str, tuple[str, Any]]
    unknown: set[str]


def _decode_stream(name: str, plain: Any, where: str, unknown: set[str]) -> Any:
    try:
        stream = backends.stream(name)
    except MissingBackendError:
        unknown.add(name)
        return _check.plain(plain, where)  # kept as is, but only if it is plain data
    return stream.decode(plain, where)


def decode(data: Any) -> Decoded:
    """Validate a plain state completely; nothing is applied."""
    _check.mapping(data, "state")
    schema = data.get("schema")
    if isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA_VERSION:
        raise InvalidStateError(
            f"the state uses schema {_check.show(schema)}, newer than the schema {SCHEMA_VERSION} this "
            "rngstate reads; upgrade rngstate"
        )
    optional = ("root_seed",) if "root_seed" in data else ()
    _check.mapping(data, "state", (*_REQUIRED, *optional))
    _check.integer(schema, "state.schema", SCHEMA_VERSION, SCHEMA_VERSION)
    _check.integer(data["derivation"], "state.derivation", DERIVATION_VERSION, DERIVATION_VERSION)
    root = _check.integer(data["root_seed"], "state.root_seed", 0, MAX_SEED) if optional else None
    unknown: set[str] = set()
    streams = {
        name: _decode_stream(name, plain, f"streams.{name}", unknown)
        for name, plain in _check.mapping(data["streams"], "state.streams").items()
    }
    substreams: dict[str, dict[str, Any]] = {}
    for path, states in _check.mapping(data["substreams"], "state.substreams").items():
        _check_path(path, f"substreams.{path}")
        substreams[path] = {
            name: _decode_stream(name, plain, f"substreams.{path}.{name}", unknown)
            for name, plain in _check.mapping(states, f"substreams.{path}").items()
        }
    generators: dict[str, tuple[str, Any]] = {}
    for key, entry in _check.mapping(data["generators"], "state.generators").items():
        where = f"generators.{key}"
        _check_path(key, where)
        _check.mapping(entry, where, ("kind", "state"))
        kind_name = _check.text(entry["kind"], f"{where}.kind")
        try:
            kind = backends.kind(kind_name)
        except MissingBackendError as exc:
            raise InvalidStateError(f"{where}: {exc}") from None
        generators[key] = (kind_name, kind.decode(entry["state"], f"{where}.state"))
    _check.plain(_check.mapping(data["metadata"], "state.metadata"), "state.metadata")
    if root is None and substreams:
        raise InvalidStateError("state: substreams present but no root_seed")
    return Decoded(root, streams, substreams, generators, unknown)


def _check_path(path: str, where: str) -> None:
    try:
        split_path(path)
    except RNGStateError as exc:
        raise InvalidStateError(f"{where}: {exc}") from None


class RNGState:
    """An immutable snapshot of every generator rngstate manages.

    Compare with ``==`` (metadata such as versions is ignored), convert with :meth:`to_dict` /
    :meth:`from_dict`, write with :func:`rngstate.save`.

    >>> import rngstate
    >>> _ = rngstate.seed_everything(0)
    >>> state = rngstate.capture()
    >>> rngstate.RNGState.from_dict(state.to_dict()) == state
    True
    """

    __slots__ = ("_data", "_decoded", "_digest")

    _data: dict[str, Any]
    _decoded: Decoded | None  # validated snapshots, kept so restore does not decode again
    _digest: bytes | None

    def __init__(self, data: dict[str, Any]) -> None:
        """The same as :meth:`from_dict`: ``data`` is validated and copied.  Usually a state
        comes from :func:`rngstate.capture` or :func:`rngstate.load`."""
        with _gc.paused():
            copied = _check.plain(data, "state")
            decoded = decode(copied)
        object.__setattr__(self, "_data", copied)
        object.__setattr__(self, "_decoded", decoded)
        object.__setattr__(self, "_digest", None)

    @classmethod
    def _trusted(cls, data: dict[str, Any], decoded: Decoded | None = None) -> RNGState:
        state = object.__new__(cls)
        object.__setattr__(state, "_data", data)
        object.__setattr__(state, "_decoded", decoded)
        object.__setattr__(state, "_digest", None)
        return state

    @classmethod
    def _from_owned(cls, data: dict[str, Any]) -> RNGState:
        """Like from_dict for data nobody else holds (just read from a file): no copy."""
        with _gc.paused():
            return cls._trusted(data, decode(data))

    def _snapshots(self) -> Decoded:
        if self._decoded is None:
            object.__setattr__(self, "_decoded", decode(self._data))
        assert self._decoded is not None
        return self._decoded

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RNGState:
        """Validate a dict made by :meth:`to_dict` (or read from a file) and wrap it.

        Raises :class:`~rngstate.errors.InvalidStateError` naming the first problem found.
        """
        return cls(data)

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the state as plain data (str, int, bytes, list, dict)."""
        return copy.deepcopy(self._data)

    @property
    def root_seed(self) -> int | None:
        """The root seed the substreams derive from (None if never seeded)."""
        return self._data.get("root_seed")

    @property
    def streams(self) -> tuple[str, ...]:
        """Names of the captured global streams, e.g. ``("numpy", "python", "torch.cpu")``."""
        return tuple(sorted(self._data["streams"]))

    @property
    def substreams(self) -> tuple[str, ...]:
        """Paths of the captured substreams, e.g. ``("model", "model/encoder")``."""
        return tuple(sorted(self._data["substreams"]))

    @property
    def generators(self) -> tuple[str, ...]:
        """Keys of the captured tracked generators."""
        return tuple(sorted(self._data["generators"]))

    @property
    def metadata(self) -> dict[str, Any]:
        """Library, framework and device information recorded at capture (a copy)."""
        return copy.deepcopy(self._data["metadata"])

    def _comparable(self) -> dict[str, Any]:
        return {key: value for key, value in self._data.items() if key != "metadata"}

    def digest(self) -> bytes:
        """BLAKE2b digest of everything but metadata: equal states, equal digests."""
        if self._digest is None:
            from rngstate.fileformat import pack

            try:
                blob = pack(self._comparable())
            except StateFileError as exc:  # unreachable for validated states; keep it explicit
                raise InvalidStateError(str(exc)) from None
            object.__setattr__(self, "_digest", hashlib.blake2b(blob, digest_size=16).digest())
        assert self._digest is not None
        return self._digest

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RNGState):
            return NotImplemented
        return self._comparable() == other._comparable()

    def __hash__(self) -> int:
        return int.from_bytes(self.digest()[:8], "big")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("RNGState is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("RNGState is immutable")

    def __repr__(self) -> str:
        return (
            f"RNGState(root_seed={self.root_seed}, streams={list(self.streams)}, "
            f"substreams={len(self._data['substreams'])}, generators={len(self._data['generators'])})"
        )
