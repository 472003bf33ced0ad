"""The backend protocol: the same verbs for every framework's generators.

A :class:`Stream` is one global generator of a framework (``"torch.cpu"``).  A
:class:`GeneratorKind` handles user-owned generator objects of one type
(``torch.Generator``).  Snapshots returned by ``get_state`` are opaque and cheap;
``encode`` turns them into plain data (str/int/bytes/list/dict) and ``decode`` validates plain
data completely, without importing the framework, before anything reaches its C++ code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any
from zlib import crc32

from rngstate.errors import InvalidStateError, MissingBackendError

Plain = Any  # str | int | bytes | list[Plain] | dict[str, Plain]


def check_material(material: bytes | memoryview, size: int) -> None:
    """Refuse per-sample material of any other length than ``size`` (a stream's
    ``sample_material``) before it reaches a generator.

    >>> check_material(bytes(8), 32)
    Traceback (most recent call last):
    rngstate.errors.InvalidStateError: per-sample material must be 32 bytes, got 8
    """
    if len(material) != size:
        raise InvalidStateError(f"per-sample material must be {size} bytes, got {len(material)}")


class Stream:
    """A framework's global generator, seeded by ``seed_everything`` and by scopes."""

    name: str = ""  # stream name in state files, e.g. "torch.cpu"
    framework: str = ""  # top-level module whose import activates the stream

    def is_active(self) -> bool:
        """True when the program uses this stream: by default, its framework is imported."""
        return self.framework in sys.modules

    def on_activate(self) -> None:
        """Called once when the stream becomes active (after import), before it is seeded."""

    def seed(self, seed: int) -> None:
        """Seed the way the framework's own ``seed``/``manual_seed`` does (root stream)."""
        raise NotImplementedError

    def seed_derived(self, material: bytes) -> None:
        """Seed from 32 bytes of derived material (a substream's first entry)."""
        raise NotImplementedError

    # Bytes of derived material seed_from_material takes: Python's, NumPy's and torch's CPU
    # generators take a whole MT19937 table (writing one beats any seeding function).
    sample_material: int = 32

    def seed_from_material(self, material: bytes | memoryview) -> None:
        """Seed from ``sample_material`` bytes of derived material as the rngstate loaders do
        per sample (by default like :meth:`seed_derived`)."""
        self.seed_derived(bytes(material))

    def sample_writer(self, block: memoryview, start: int, stride: int) -> Callable[[int], None]:
        """``write(base)``: seed this stream as :meth:`seed_from_material` of
        ``block[base + start : base + start + sample_material]``, for each sample of a block of
        them ``stride`` bytes apart.  Streams that copy tables raw override it: the block is
        theirs to rewrite first (once for all its samples), so that each sample is one copy.

        >>> class Seen(Stream):
        ...     def seed_derived(self, material): print(material[:2])
        >>> Seen().sample_writer(memoryview(bytes(range(80))), 4, 40)(40)
        b',-'
        """
        seed, end = self.seed_from_material, start + self.sample_material
        return lambda base: seed(block[base + start : base + end])

    def get_state(self) -> Any:
        """Return an opaque snapshot of the live generator."""
        raise NotImplementedError

    def set_state(self, snapshot: Any) -> None:
        """Make the live generator exactly ``snapshot`` (a value from get_state or decode)."""
        raise NotImplementedError

    def exchange(self, snapshot: Any) -> Any:
        """Install ``snapshot`` and return the state it replaced (one call on the scope hot
        path instead of two; backends with raw copies override it)."""
        previous = self.get_state()
        self.set_state(snapshot)
        return previous

    def exchange_outer(self, snapshot: Any) -> Any:
        """:meth:`exchange` on a scope's entry: what it returns is the outer state, which only
        goes back into this generator when the scope exits, or through :meth:`encode` when a
        state is captured inside the scope.  A backend may leave validating it to ``encode``
        (it came out of this generator and goes back into it; anything kept or written is
        encoded first)."""
        return self.exchange(snapshot)

    def exchange_material(self, material: bytes | memoryview) -> Any:
        """:meth:`seed_from_material` and return the state it replaced (one call where the
        loaders' training process seeds a batch and must put its own state back afterwards;
        backends with raw copies override it)."""
        previous = self.get_state()
        self.seed_from_material(material)
        return previous

    def encode(self, snapshot: Any) -> Plain:
        """Turn a snapshot into plain data."""
        raise NotImplementedError

    def state_bytes(self) -> bytes | None:
        """The live state as bytes to fingerprint (a step trace reads it at every step): equal
        states give equal bytes, in any process on any path (raw copy or public API), and
        ``state_bytes() == snapshot_bytes(get_state())``; None for streams without such a
        cheap form (their fingerprint is taken of ``encode(get_state())``)."""
        return None

    def snapshot_bytes(self, snapshot: Any) -> bytes | None:
        """:meth:`state_bytes` of a snapshot (None where :meth:`state_bytes` is None)."""
        return None

    def state_crc(self) -> int | None:
        """``zlib.crc32(state_bytes())`` (None where that is None): what a step trace records
        of the stream at every step.  Backends with raw views read the live memory in place,
        holding the generator's lock, instead of copying it first."""
        data = self.state_bytes()
        return None if data is None else crc32(data)

    def decode(self, plain: Plain, where: str) -> Any:
        """Validate plain data and turn it into a snapshot; raise InvalidStateError."""
        raise NotImplementedError

    def metadata(self) -> dict[str, Plain]:
        """Versions and devices worth recording next to the state (plain data)."""
        return {}

    def device_count(self) -> int | None:
        """For streams holding one state per device (a list): the devices this process sees,
        without initializing anything; None for every other stream."""
        return None


class DeviceMapped(list[Any]):
    """Per-device states restored with ``strict=False`` where the device count differs.

    The mapping (README, "Capture, restore, files"): live device ``i`` takes the state saved for
    device ``i``; a live device the state has no entry for keeps its current state; saved states
    of devices this process does not have are ignored.
    """


def device_pairs(generators: list[Any], snapshot: list[Any], what: str) -> Iterator[tuple[Any, Any]]:
    """(live generator, saved state) per device.  A snapshot for another device count is
    refused unless it is :class:`DeviceMapped` (``strict=False``), which maps by index.

    >>> list(device_pairs(["gen0"], ["state0"], "CUDA device"))
    [('gen0', 'state0')]
    """
    if len(snapshot) != len(generators) and not isinstance(snapshot, DeviceMapped):
        raise MissingBackendError(
            f"the state holds {len(snapshot)} {what} generators but this process sees "
            f"{len(generators)}; restore with the same visible devices (CUDA_VISIBLE_DEVICES) "
            "as the run that captured it, or with strict=False"
        )
    return zip(generators, snapshot, strict=False)


class GeneratorKind:
    """User-owned generator objects of one type, tracked under a scope path."""

    kind: str = ""  # e.g. "torch.Generator"
    framework: str = ""

    def matches(self, obj: object) -> bool:
        """True when this kind handles ``obj``."""
        raise NotImplementedError

    def seed_derived(self, obj: Any, material: bytes) -> None:
        """Seed ``obj`` from 32 bytes of derived material."""
        raise NotImplementedError

    def get_state(self, obj: Any) -> Any:
        raise NotImplementedError

    def set_state(self, obj: Any, snapshot: Any) -> None:
        raise NotImplementedError

    def encode(self, snapshot: Any) -> Plain:
        raise NotImplementedError

    def decode(self, plain: Plain, where: str) -> Any:
        raise NotImplementedError

    def state_crc(self, obj: Any) -> int | None:
        """What a step trace records of ``obj`` at every step: the CRC-32 of bytes that equal
        states give in any process on any path (as :meth:`Stream.state_crc`); None (the
        default) fingerprints ``encode(get_state(obj))`` instead, reusing the previous step's
        fingerprint while the snapshot is unchanged."""
        return None


def exact(snapshot: Any) -> bool:
    """True when ``==`` on ``snapshot`` tells equal plain forms: tuples of ints, bytes, str and
    None only (not floats: ``0.0 == -0.0``; not tensors: their ``==`` is elementwise).

    >>> exact(("pending", ("seed", 5))), exact((3, (b"mt", None))), exact((3, (b"mt", 0.5)))
    (True, True, False)
    """
    kind = type(snapshot)
    if kind is tuple:
        return set(map(type, snapshot)) <= _LEAVES or all(map(exact, snapshot))
    return kind in _LEAVES


_LEAVES = {int, bytes, str, type(None)}


__all__ = ["GeneratorKind", "Stream", "exact"]
