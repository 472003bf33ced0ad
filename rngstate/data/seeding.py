"""Per-sample seeding: the global CPU generators seeded from (root, loader path, epoch, position).

Seeds are derived with :func:`rngstate.derive.derive_bytes` and handed to each stream's
``seed_from_material`` (golden values in ``tests/data`` pin them).
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
from rngstate.derive import PathHead, derive_bytes, split_path
from rngstate.errors import DataLoaderError
from rngstate.runtime import RUNTIME

# The global generators a sample's loading may draw from, seeded in this order, followed by
# streams other libraries registered (rngstate.backends.register_stream: an augmentation
# library's global generator).  Device streams are left out: DataLoader workers are forked and
# cannot use CUDA, and reseeding every device per sample would cost more than the sample.
# TensorFlow and Keras are left out too: TensorFlow does not survive fork, and tf.data takes
# its seeds from rngstate.derive_seed.
SAMPLE_STREAMS = ("numpy", "python", "torch.cpu", "paddle.cpu")
NOT_PER_SAMPLE = frozenset(
    {"torch.cuda", "paddle.gpu", "tensorflow.ops", "tensorflow.generator", "keras.global"}
)


class Seeder:
    """Seeds the active CPU generators of this process from derived material.

    One :func:`derive_bytes` per sample (``stream="sample"``) gives a key; each stream's 32 bytes
    are BLAKE2b of that key, keyed by the stream name.  One derivation instead of one per
    stream saves ~10 us per sample once the sample's own work has evicted the caches.
    """

    def __init__(self) -> None:
        self._modules_seen = -1
        self._streams: list[tuple[Stream, bytes]] = []
        # Per stream: its seeding verb and a BLAKE2b keyed by its name, copied per sample
        # (building a keyed state costs more than copying one).
        self._salted: list[tuple[Callable[[bytes], None], Any]] = []
        # The derivation state up to the epoch, for the samples of one loader and epoch.
        self._head: tuple[tuple[int, tuple[str, ...], str, int], PathHead] | None = None

    def streams(self) -> list[tuple[Stream, bytes]]:
        # Only imports change which streams are active; same trick as Runtime.refresh.
        if len(sys.modules) != self._modules_seen:
            self._modules_seen = len(sys.modules)
            known = backends.stream_names()
            others = [n for n in known if n not in NOT_PER_SAMPLE and n not in SAMPLE_STREAMS]
            found: list[tuple[Stream, bytes]] = []
            for name in (*SAMPLE_STREAMS, *others):
                if name not in known or backends.framework_of(name) not in sys.modules:
                    continue
                stream = backends.stream(name)
                if stream.is_active():
                    found.append((stream, name.encode("utf-8")))
            self._streams = found
            self._salted = [
                (stream.seed_from_material, hashlib.blake2b(digest_size=32, key=name))
                for stream, name in found
            ]
        return self._streams

    def seed(self, root: int, parts: tuple[str, ...]) -> bytes:
        """Seed every sample stream from (root, parts); returns the derived key."""
        key = derive_bytes(root, parts, "sample")
        self._seed_from_key(key)
        return key

    def seed_sample(
        self, root: int, parts: tuple[str, ...], epoch: int, position: int, kind: str = "#sample"
    ) -> bytes:
        """``seed(root, (*parts, kind, str(epoch), str(position)))``, with the path up to the
        epoch hashed once per loader and epoch; returns the derived key.

        >>> SEEDER.seed_sample(0, ("a",), 1, 2) == SEEDER.seed(0, sample_parts(("a",), 1, 2))
        True
        """
        head = self._head
        if head is None or head[0] != (root, parts, kind, epoch):
            head = (root, parts, kind, epoch), PathHead(root, (*parts, kind, str(epoch)))
            self._head = head  # one whole pair: threads that race see a consistent one
        key = head[1].derive(str(position), "sample")
        self._seed_from_key(key)
        return key

    def _seed_from_key(self, key: bytes) -> None:
        if len(sys.modules) != self._modules_seen:
            self.streams()
        for seed_from_material, salt in self._salted:
            digest = salt.copy()
            digest.update(key)
            seed_from_material(digest.digest())

    def save(self) -> list[tuple[Stream, Any]]:
        """The states of the sample streams, to put back after loading."""
        return [(stream, stream.get_state()) for stream, _name in self.streams()]

    @staticmethod
    def put_back(saved: list[tuple[Stream, Any]] | None) -> None:
        for stream, snapshot in saved or ():
            stream.set_state(snapshot)


SEEDER = Seeder()
# The sample being loaded by this thread: (root, loader parts, epoch, position), and its batch.
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


def scope_root(key: bytes) -> int:
    """A 32-bit root (like every root seed) for the scopes opened where ``key`` seeded the
    streams: a DataLoader worker, or one sample being loaded."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=4, key=b"#scopes").digest(), "big")


def sample_parts(parts: tuple[str, ...], epoch: int, position: int) -> tuple[str, ...]:
    """Derivation path of one sample; "#" components cannot come from user scope names."""
    return (*parts, "#sample", str(epoch), str(position))


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
    root, parts, epoch, position = current
    path = (*sample_parts(parts, epoch, position), *split_path(name))
    return int.from_bytes(derive_bytes(root, path, "seed")[:8], "big") >> 1
