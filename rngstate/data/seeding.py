"""Per-sample seeding: the global CPU generators seeded from (root, loader path, epoch, position).

Keys are derived with :func:`rngstate.derive.derive_bytes`, expanded into each sample's
material and handed to each stream's ``seed_from_material`` (golden values in ``tests/data``
pin them).
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from rngstate import _check, backends
from rngstate.backends.base import Stream
from rngstate.derive import derive_bytes, split_path
from rngstate.errors import DataLoaderError, RNGStateError
from rngstate.runtime import RUNTIME

# The global generators a sample's loading may draw from, with the bytes of material each takes
# per sample, in their order in a sample's material; then the sample's own 32-byte key (its
# scope root, and the material of streams other libraries registered, rngstate.backends.
# register_stream: an augmentation library's global generator).  The layout is fixed, so a
# stream's slice is the same whichever others are imported.  Device streams are left out:
# DataLoader workers are forked and cannot use CUDA, and reseeding every device per sample
# would cost more than the sample.  TensorFlow and Keras are left out too: TensorFlow does not
# survive fork, and tf.data takes its seeds from rngstate.derive_seed.  Each table-holding
# stream's share is laid out like its generator's memory (Stream.sample_material), so that a
# block of samples, rewritten once by the stream, is one copy per sample.
SAMPLE_LAYOUT = (("python", 2504), ("numpy", 2504), ("paddle.cpu", 32), ("torch.cpu", 2544))
SAMPLE_STREAMS = tuple(name for name, _size in SAMPLE_LAYOUT)
_KEY_AT = sum(size for _name, size in SAMPLE_LAYOUT)
SAMPLE_BYTES = _KEY_AT + 32  # one sample's material
SAMPLE_WORDS = SAMPLE_BYTES // 8
# Consecutive samples drawn per call: ~490 KB, within this machine's 1 MB L2 (16 and 32 were
# measured slower: the per-block rewrite and the call are then paid more often).
_CHUNK = 64
SAMPLE = "#sample"  # the derivation kind of one sample; "#" never comes from a scope name
NOT_PER_SAMPLE = frozenset(
    {"torch.cuda", "paddle.gpu", "tensorflow.ops", "tensorflow.generator", "keras.global"}
)


class Seeder:
    """Seeds the active CPU generators of this process, sample after sample.

    A sequence of samples (a loader's epoch) is named by a 32-byte key of
    :func:`derive_bytes`; sample ``p`` of it takes bytes ``p * SAMPLE_BYTES`` onwards of the
    :class:`~rngstate.backends.numpy_expand.Expander` run of that key (PCG64DXSM, which
    jumps to any position), laid out as :data:`SAMPLE_LAYOUT`: whole MT19937 tables for
    Python, NumPy and torch, written straight into the generators instead of seeding each
    through ``init_by_array`` (~3.5-8 us each).  Every generator thus starts from a state as
    good as a random one, from 255 bits of derived material, never from a 32-bit seed (100,000
    samples likely include two with the same one).  Consecutive samples' material comes from
    one call, which each stream rewrites once (:meth:`Stream.sample_writer
    <rngstate.backends.base.Stream.sample_writer>`) so that a sample costs it one copy.
    """

    def __init__(self) -> None:
        self._modules_seen = -1
        self._streams: list[tuple[Stream, bytes]] = []
        # (stream, start, end) of each active stream of SAMPLE_LAYOUT in a sample's material.
        self._slots: list[tuple[Stream, int, int]] = []
        # Other streams, each with a BLAKE2b keyed by its name, copied per sample (building a
        # keyed state costs more than copying one).
        self._salted: list[tuple[Stream, Any]] = []
        self._expand: Callable[[bytes, int, int], memoryview] | None = None
        self._roots: Callable[[memoryview, int, int], list[int]] | None = None
        # The key of the last (root, path) asked for: a loader's epoch asks once per batch.
        self._last: tuple[tuple[int, tuple[str, ...]], bytes] | None = None

    def streams(self) -> list[tuple[Stream, bytes]]:
        # Only imports change which streams are active; same trick as Runtime.refresh.
        if len(sys.modules) != self._modules_seen:
            self._modules_seen = len(sys.modules)
            known = backends.stream_names()
            others = [n for n in known if n not in NOT_PER_SAMPLE and n not in SAMPLE_STREAMS]
            found: list[tuple[Stream, bytes]] = []
            slots: list[tuple[Stream, int, int]] = []
            salted: list[tuple[Stream, Any]] = []
            start = 0
            for name, size in (*SAMPLE_LAYOUT, *((n, 0) for n in others)):
                stream = self._active(name, known)
                if stream is not None:
                    found.append((stream, name.encode("utf-8")))
                    if size:
                        slots.append((stream, start, start + size))
                    else:
                        salted.append((stream, hashlib.blake2b(digest_size=32, key=name.encode("utf-8"))))
                start += size
            if self._expand is None:
                from rngstate.backends import numpy_expand  # numpy: only when loading

                self._expand, self._roots = numpy_expand.Expander().expand, numpy_expand.big_endian_words
            self._streams, self._slots, self._salted = found, slots, salted
        return self._streams

    @staticmethod
    def _active(name: str, known: Any) -> Stream | None:
        if name not in known or backends.framework_of(name) not in sys.modules:
            return None
        stream = backends.stream(name)
        if not stream.is_active():
            return None
        size = dict(SAMPLE_LAYOUT).get(name)
        if size is not None and stream.sample_material != size:
            raise RNGStateError(
                f"stream {name!r} takes {stream.sample_material} bytes per sample but the "
                f"per-sample layout gives it {size}; the two must change together"
            )
        return stream

    def key(self, root: int, parts: tuple[str, ...]) -> bytes:
        """The 32-byte key naming the sequence of samples at (root, parts)."""
        last = self._last
        if last is None or last[0] != (root, parts):
            last = (root, parts), derive_bytes(root, parts, "sample")
            self._last = last  # one whole pair: threads that race see a consistent one
        return last[1]

    def seed(self, root: int, parts: tuple[str, ...], position: int = 0) -> int:
        """Seed every sample stream as sample ``position`` of the sequence at (root, parts);
        returns the root for the scopes opened while they are in use.

        >>> root = SEEDER.seed(0, ("a",), 5)
        >>> list(SEEDER.positions(0, ("a",), 3, 2, 2))[1] == root
        True
        """
        if len(sys.modules) != self._modules_seen:
            self.streams()
        return self._seed_at(self.key(root, parts), position)

    def positions(
        self, root: int, parts: tuple[str, ...], first: int, step: int, count: int
    ) -> Iterator[int]:
        """Seed the sample streams for samples ``first + k * step`` (k < ``count``) of the
        sequence at (root, parts), one per ``next``, which returns that sample's scope root."""
        if len(sys.modules) != self._modules_seen:
            self.streams()
        key = self.key(root, parts)
        if step != 1 or count == 1:  # a sharded epoch's samples are world_size apart: one each
            return (self._seed_at(key, first + k * step) for k in range(count))
        return self._consecutive(key, first, count)

    def _seed_at(self, key: bytes, position: int) -> int:
        if len(sys.modules) != self._modules_seen:  # the last sample imported a framework
            self.streams()
        assert self._expand is not None  # set by streams()
        block = self._expand(key, position * SAMPLE_WORDS, SAMPLE_WORDS)
        for stream, start, end in self._slots:
            stream.seed_from_material(block[start:end])
        if self._salted:
            self._seed_salted(block[_KEY_AT:])
        return scope_root(block[_KEY_AT : _KEY_AT + 4])

    def _consecutive(self, key: bytes, first: int, count: int) -> Iterator[int]:
        # Consecutive samples: one expansion for a chunk of them, which each stream rewrites
        # once for its raw copies (Stream.sample_writer); then a copy or so per sample.
        expand, big_endian_words = self._expand, self._roots
        assert expand is not None and big_endian_words is not None  # set by streams()
        for done in range(0, count, _CHUNK):
            chunk = min(_CHUNK, count - done)
            block = expand(key, (first + done) * SAMPLE_WORDS, chunk * SAMPLE_WORDS)
            writers = self._writers(block)
            roots = big_endian_words(block, _KEY_AT, SAMPLE_BYTES)  # the samples' scope roots
            for k in range(chunk):
                if len(sys.modules) != self._modules_seen:  # a sample imported a framework
                    self.streams()
                    writers = self._writers(block)  # idempotent for the streams there before
                base = k * SAMPLE_BYTES
                for write in writers:
                    write(base)
                if self._salted:
                    self._seed_salted(block[base + _KEY_AT : base + SAMPLE_BYTES])
                yield roots[k]

    def _writers(self, block: memoryview) -> list[Callable[[int], None]]:
        return [stream.sample_writer(block, start, SAMPLE_BYTES) for stream, start, _end in self._slots]

    def _seed_salted(self, sample_key: memoryview) -> None:
        for stream, salt in self._salted:
            digest = salt.copy()
            digest.update(sample_key)
            stream.seed_from_material(digest.digest())

    def enter(self, root: int, parts: tuple[str, ...], position: int) -> tuple[list[tuple[Stream, Any]], int]:
        """:meth:`seed` and :meth:`save` in one: seed the sample streams as sample ``position``
        of the sequence at (root, parts); return the states they replaced (for
        :meth:`put_back`) and the root for the scopes opened meanwhile.

        >>> import random
        >>> before = random.getstate()
        >>> saved, root = SEEDER.enter(0, ("a",), 5)
        >>> root == SEEDER.seed(0, ("a",), 5)
        True
        >>> SEEDER.put_back(saved)
        >>> random.getstate() == before
        True
        """
        if len(sys.modules) != self._modules_seen:
            self.streams()
        assert self._expand is not None  # set by streams()
        block = self._expand(self.key(root, parts), position * SAMPLE_WORDS, SAMPLE_WORDS)
        saved: list[tuple[Stream, Any]] = []
        try:
            for stream, start, end in self._slots:
                saved.append((stream, stream.exchange_material(block[start:end])))
            if self._salted:
                saved.extend((stream, stream.get_state()) for stream, _salt in self._salted)
                self._seed_salted(block[_KEY_AT:])
        except BaseException:
            self.put_back(saved)
            raise
        return saved, scope_root(block[_KEY_AT : _KEY_AT + 4])

    def save(self) -> list[tuple[Stream, Any]]:
        """The states of the sample streams, to put back after loading."""
        if len(sys.modules) != self._modules_seen:
            self.streams()
        return [(stream, stream.get_state()) for stream, _name in self._streams]

    @staticmethod
    def put_back(saved: list[tuple[Stream, Any]] | None) -> None:
        for stream, snapshot in saved or ():
            stream.set_state(snapshot)


SEEDER = Seeder()
# The batch being loaded by this thread: (root, loader parts, epoch, first position, step,
# the batch's list iterator, its length), and the batch just loaded.
LOCAL = threading.local()


@contextlib.contextmanager
def seeded(root: int, parts: tuple[str, ...], put_back: bool = True) -> Iterator[None]:
    """Seed the sample streams for a block; with ``put_back`` (the training process: dropout
    must not see the loading) the outer state is put back afterwards."""
    saved = SEEDER.save() if put_back else None
    try:
        SEEDER.seed(root, parts)
        yield
    finally:
        SEEDER.put_back(saved)


@contextlib.contextmanager
def preserve_streams() -> Iterator[None]:
    """Put every active generator back exactly after the block.

    The loaders create their framework iterators inside it: torch draws the workers' base seed
    from a generator and Paddle from NumPy's global one, which would otherwise shift dropout.

    >>> import random, rngstate
    >>> _ = rngstate.seed_everything(0)
    >>> state = random.getstate()
    >>> with preserve_streams():
    ...     _ = random.random()
    >>> random.getstate() == state
    True
    """
    RUNTIME.refresh()
    saved = [(stream, stream.get_state()) for stream in RUNTIME.active.values()]
    try:
        yield
    finally:
        for stream, snapshot in saved:
            stream.set_state(snapshot)


class Isolated:
    """Runs an iterator with the sample streams in a state of their own, swapped in around
    each ``next``: an IterableDataset read in the training process neither shifts dropout nor
    depends on it.  ``inner`` is that state to begin with (a :meth:`Seeder.save`)."""

    def __init__(self, iterator: Iterator[Any], inner: list[tuple[Stream, Any]]) -> None:
        self.iterator = iterator
        self.inner = inner

    def __iter__(self) -> Isolated:
        return self

    def __next__(self) -> Any:
        outer = SEEDER.save()
        SEEDER.put_back(self.inner)
        try:
            return next(self.iterator)
        finally:
            self.inner = SEEDER.save()
            SEEDER.put_back(outer)


def scope_root(key: bytes | memoryview) -> int:
    """A 32-bit root (like every root seed) for the scopes opened where a derived ``key``
    seeded the streams: its first 4 bytes, big-endian.

    >>> scope_root(bytes(range(32)))
    66051
    """
    return int.from_bytes(key[:4], "big")


def epoch_parts(parts: tuple[str, ...], kind: str, epoch: int) -> tuple[str, ...]:
    """Derivation path of the sequence of an epoch's samples (``kind`` SAMPLE) or batches'
    samples (BATCH_SAMPLES, seed_per="batch"); a sample is a position in it."""
    return (*parts, kind, str(epoch))


def sample_parts(parts: tuple[str, ...], epoch: int, position: int) -> tuple[str, ...]:
    """Derivation path of one sample; "#" components cannot come from user scope names."""
    return (*parts, SAMPLE, str(epoch), str(position))


def batch_parts(parts: tuple[str, ...], epoch: int, batch_start: int) -> tuple[str, ...]:
    """Derivation path of one batch (its ``collate_fn``), by the position of its first sample."""
    return (*parts, "#batch", str(epoch), str(batch_start))


BATCH_SAMPLES = "#samples"  # the derivation kind of a batch's samples with seed_per="batch"
SEED_PER = ("sample", "batch")


def check_seed_per(seed_per: Any) -> str:
    """Return ``seed_per`` if it is ``"sample"`` or ``"batch"``, else raise DataLoaderError.

    >>> check_seed_per("batch")
    'batch'
    """
    if not isinstance(seed_per, str) or seed_per not in SEED_PER:
        raise DataLoaderError(
            "seed_per must be 'sample' (each sample seeded from its position, the default) or "
            "'batch' (one seeding per batch: faster on cheap samples, results then depend on "
            f"batch_size), got {_check.show(seed_per)}"
        )
    return seed_per


def sample_seed(name: str = "seed") -> int:
    """A stable seed in [0, 2**63) for the sample being loaded right now by an rngstate loader.

    For augmentation libraries that keep their own generator (albumentations'
    ``Compose(seed=...)``, a ``np.random.default_rng``): seed them from this inside
    ``__getitem__`` and their draws become per-sample, like the global generators.

    >>> import numpy as np, rngstate
    >>> class Noisy:
    ...     def __len__(self): return 4
    ...     def __getitem__(self, i):
    ...         rng = np.random.default_rng(rngstate.data.sample_seed("noise"))
    ...         return rng.normal()
    """
    current = getattr(LOCAL, "sample", None)
    if current is None:
        raise DataLoaderError(
            "sample_seed() is only available inside __getitem__ of a dataset loaded by "
            "rngstate.torch.DataLoader or rngstate.paddle.DataLoader"
        )
    root, parts, epoch, first, step, items, count = current
    position = first + (count - 1 - items.__length_hint__()) * step  # items: the batch's iterator
    path = (*sample_parts(parts, epoch, position), *split_path(name))
    return int.from_bytes(derive_bytes(root, path, "seed")[:8], "big") >> 1
