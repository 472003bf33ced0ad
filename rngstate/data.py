"""Data loading that resumes exactly: sample order, per-sample randomness and worker seeds.

Framework-agnostic building blocks (no framework is imported here):

* :class:`ResumableSampler`: the order of an epoch is a pure function of (root seed, scope path,
  name, epoch); ``state_dict``/``load_state_dict`` continue mid-epoch.
* :func:`worker_init_fn`: seeds Python, NumPy, torch and paddle in a DataLoader worker from the
  root seed, the loader's per-epoch worker seed and the worker id.
* :class:`SeededDataset` and :class:`SeededCollate`: what ``rngstate.torch.DataLoader`` and
  ``rngstate.paddle.DataLoader`` wrap around the user's dataset and ``collate_fn`` so that the
  random numbers one sample draws depend only on (root seed, loader path, epoch, position in the
  epoch) -- not on ``num_workers``, on which worker loads it, on prefetching or on a resume.

Reproducibility policy: sample orders and per-sample seeds are derived with
:func:`rngstate.derive.derive_bytes` (versioned, stable across processes and machines) and turned
into numbers only through generators whose streams NumPy and CPython keep stable (PCG64 raw bits,
legacy MT19937 seeding, ``random.seed`` of an int).  Golden values in ``tests/test_data.py`` pin
them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from rngstate import _check, backends
from rngstate.backends.base import Stream
from rngstate.derive import MAX_SEED, check_seed, derive_bytes, split_path
from rngstate.distributed import TopologyError, rank_info
from rngstate.errors import InvalidStateError, NoRootSeedError, RNGStateError
from rngstate.runtime import RUNTIME

logger = logging.getLogger(__name__)

STATE_FORMAT = "rngstate.sampler"
STATE_VERSION = 2  # 2 added world_size
_STATE_KEYS_V1 = ("format", "version", "path", "n", "shuffle", "epoch", "position", "root_seed")
_STATE_KEYS = (*_STATE_KEYS_V1, "world_size")

# The global generators a sample's loading may draw from, seeded in this order ("numpy" before
# "python": see _NumpySeeder), followed by streams other libraries registered
# (rngstate.register_stream: an augmentation library's global generator).  Device streams are
# left out: DataLoader workers are forked and cannot use CUDA, and reseeding every device per
# sample would cost more than the sample.  TensorFlow and Keras are left out too: TensorFlow
# does not survive fork, and tf.data takes its seeds from rngstate.derive_seed (see the README).
SAMPLE_STREAMS = ("numpy", "python", "torch.cpu", "paddle.cpu")
NOT_PER_SAMPLE = frozenset(
    {"torch.cuda", "paddle.gpu", "tensorflow.ops", "tensorflow.generator", "keras.global"}
)


class DataLoaderError(RNGStateError):
    """A loader or sampler was configured or used in a way that cannot resume exactly."""


# -- seeding the global generators for one sample -------------------------------------------

def _key_words(material: bytes) -> list[int]:
    """The 32-bit words CPython's ``random.seed(n)`` feeds to MT19937's ``init_by_array`` for
    ``n = int.from_bytes(material[:16], "little")``: least significant first, high zero words
    dropped (``n == 0`` gives ``[0]``)."""
    words = list(struct.unpack("<4I", material[:16]))
    while len(words) > 1 and words[-1] == 0:
        words.pop()
    return words


class _NumpySeeder:
    """Seeds NumPy's global legacy generator per sample from a 128-bit key.

    The state is MT19937's ``init_by_array`` of :func:`_key_words`, as ``np.random.seed(words)``
    makes it.  That call costs ~50 us inside a data pipeline (its small-array conversions run
    with cold caches); CPython's ``random.seed`` runs the same ``init_by_array`` in C, so the fast
    path seeds the global ``random`` with the key, copies its 624 words into NumPy's state
    through the backends' raw snapshots (~10 us), and leaves ``random`` for the Python stream to
    reseed right after.  The fast path is used only if it reproduced ``np.random.seed(words)``
    exactly when checked at first use.
    """

    def __init__(self, numpy_stream: Stream, python_stream: Stream) -> None:
        self.numpy = numpy_stream
        self.python = python_stream
        # From a snapshot taken right after a legacy seeding: NumPy's raw position and cleared
        # Gaussian cache, and the backend's raw snapshot type.
        self.tail = b""
        self.gauss = b""
        self.snapshot_type: Any = None
        self.fast = False
        try:
            self.fast = self._check_fast_path()
        except Exception:  # any surprise in the raw layouts: the slow path is always right
            logger.debug("numpy per-sample seeding: fast path unavailable", exc_info=True)
        if not self.fast:
            logger.info("numpy per-sample seeding uses np.random.seed (slower)")

    def _check_fast_path(self) -> bool:
        from rngstate.backends.numpy import _RawSnapshot

        self.snapshot_type = _RawSnapshot
        saved_numpy, saved_python = self.numpy.get_state(), self.python.get_state()
        try:
            probe = hashlib.blake2b(b"rngstate numpy probe", digest_size=32).digest()
            np.random.seed(_key_words(probe))
            reference = self.numpy.get_state()
            if type(reference) is not _RawSnapshot or len(self.python.get_state()) != 2:
                return False
            self.tail = reference.mt[-4:]
            self.gauss = reference.gauss
            np.random.seed(12345)  # something else first, so the check below proves a change
            self._fast(probe)
            again = self.numpy.get_state()
            return bool(again.mt == reference.mt and again.gauss == reference.gauss)
        finally:
            self.numpy.set_state(saved_numpy)
            self.python.set_state(saved_python)

    def _fast(self, material: bytes) -> None:
        random.seed(int.from_bytes(material[:16], "little"))
        raw = self.python.get_state()[0]  # int32 index, then the 624 words
        self.numpy.set_state(self.snapshot_type(raw[4:] + self.tail, self.gauss))

    def __call__(self, material: bytes) -> None:
        if type(np.random.mtrand._rand._bit_generator) is not np.random.MT19937:
            self.numpy.seed_derived(material)  # np.random.set_bit_generator was used
        elif self.fast:
            self._fast(material)
        else:
            np.random.seed(_key_words(material))


class _Seeder:
    """Seeds the active CPU generators of this process from derived material.

    One :func:`derive_bytes` per sample (``stream="sample"``) gives a key; each stream's 32 bytes
    are BLAKE2b of that key, keyed by the stream name.  One derivation instead of one per
    stream saves ~10 us per sample once the sample's own work has evicted the caches.
    """

    def __init__(self) -> None:
        self._modules_seen = -1
        self._streams: list[tuple[Stream, bytes, Callable[[bytes], None]]] = []
        self._numpy: _NumpySeeder | None = None

    def streams(self) -> list[tuple[Stream, bytes, Callable[[bytes], None]]]:
        # Only imports change which streams are active; same trick as Runtime.refresh.
        if len(sys.modules) != self._modules_seen:
            self._modules_seen = len(sys.modules)
            known = backends.stream_names()
            others = [n for n in known if n not in NOT_PER_SAMPLE and n not in SAMPLE_STREAMS]
            found: list[tuple[Stream, bytes, Callable[[bytes], None]]] = []
            for name in (*SAMPLE_STREAMS, *others):
                if name not in known or backends.framework_of(name) not in sys.modules:
                    continue
                stream = backends.stream(name)
                if not stream.is_active():
                    continue
                seed = stream.seed_derived
                if name == "numpy":
                    if self._numpy is None:
                        self._numpy = _NumpySeeder(stream, backends.stream("python"))
                    seed = self._numpy
                found.append((stream, name.encode("utf-8"), seed))
            self._streams = found
        return self._streams

    def seed(self, root: int, parts: tuple[str, ...]) -> None:
        key = derive_bytes(root, parts, "sample")
        blake2b = hashlib.blake2b
        for _stream, name, seed in self.streams():
            seed(blake2b(key, digest_size=32, key=name).digest())

    def save(self) -> list[tuple[Stream, Any]]:
        return [(stream, stream.get_state()) for stream, _name, _seed in self.streams()]

    @staticmethod
    def put_back(saved: list[tuple[Stream, Any]]) -> None:
        for stream, snapshot in saved:
            stream.set_state(snapshot)


_SEEDER = _Seeder()
_IN_WORKER = False  # set in DataLoader worker processes by worker_init_fn / LoaderWorkerInit
_LOCAL = threading.local()  # the sample and batch being loaded by this thread


def _mark_worker() -> None:
    global _IN_WORKER
    _IN_WORKER = True


@contextlib.contextmanager
def _seeded(root: int, parts: tuple[str, ...]) -> Iterator[None]:
    """Seed the sample streams for a block.  In the training process the outer state is put
    back afterwards (dropout must not see the loading); in a worker nothing else runs between
    samples, so it is not worth the copies."""
    if _IN_WORKER:
        _SEEDER.seed(root, parts)
        yield
        return
    saved = _SEEDER.save()
    try:
        _SEEDER.seed(root, parts)
        yield
    finally:
        _SEEDER.put_back(saved)


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


# -- per-sample keys and the dataset / collate wrappers -------------------------------------


class SampleKey(NamedTuple):
    """What a loader's sampler yields instead of a bare index: the index and everything its
    randomness derives from."""

    dataset_index: int
    epoch: int
    position: int  # position in the epoch's order, padded and before sharding across ranks
    batch_start: int  # position of the first sample of its batch (seeds collate_fn)
    root: int


def _sample_parts(parts: tuple[str, ...], epoch: int, position: int) -> tuple[str, ...]:
    # "#" components cannot come from user scope names (split_path rejects them).
    return (*parts, "#sample", str(epoch), str(position))


def _batch_parts(parts: tuple[str, ...], epoch: int, batch_start: int) -> tuple[str, ...]:
    return (*parts, "#batch", str(epoch), str(batch_start))


class SeededDataset:
    """Wraps a map-style dataset: ``dataset[SampleKey]`` seeds Python, NumPy, torch and paddle
    from (root, loader path, epoch, position) and returns ``dataset[key.dataset_index]``.

    Built by the rngstate loaders; ``loader.dataset.dataset`` is the user's dataset, and other
    attributes are forwarded to it.  Plain indices are passed through unseeded.

    >>> import random, rngstate
    >>> from rngstate.data import SampleKey, SeededDataset
    >>> ds = SeededDataset([10, 20, 30], ("loader",))
    >>> ds[SampleKey(dataset_index=1, epoch=0, position=0, batch_start=0, root=0)]
    20
    """

    def __init__(self, dataset: Any, parts: tuple[str, ...]) -> None:
        self.dataset = dataset
        self.parts = parts

    def __len__(self) -> int:
        return len(self.dataset)

    def _load(self, key: SampleKey) -> Any:
        root = key.root
        parts = _sample_parts(self.parts, key.epoch, key.position)
        _LOCAL.sample = (root, parts)
        _LOCAL.batch = (root, key.epoch, key.batch_start)
        try:
            _SEEDER.seed(root, parts)
            return self.dataset[key.dataset_index]
        finally:
            _LOCAL.sample = None

    def __getitem__(self, key: Any) -> Any:
        if type(key) is not SampleKey:
            return self.dataset[key]
        if _IN_WORKER:  # nothing else runs between samples in a worker: no need to put back
            return self._load(key)
        saved = _SEEDER.save()
        try:
            return self._load(key)
        finally:
            _SEEDER.put_back(saved)

    def __getitems__(self, keys: list[Any]) -> list[Any]:
        """One batch (torch's fetcher calls this when it exists): in the training process the
        generators are saved and put back once per batch instead of once per sample."""
        saved = None if _IN_WORKER else _SEEDER.save()
        try:
            return [self._load(key) if type(key) is SampleKey else self.dataset[key] for key in keys]
        finally:
            if saved is not None:
                _SEEDER.put_back(saved)

    def __getattr__(self, name: str) -> Any:
        # Dunders are not forwarded: the user's own __getitems__ or __getstate__ must not be
        # found through here.  "dataset" missing means unpickling is still in progress.
        if name.startswith("__") or name in ("dataset", "parts"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return f"SeededDataset({self.dataset!r}, path={'/'.join(self.parts)!r})"


class SeededCollate:
    """Wraps a ``collate_fn`` so that randomness in it (mixup, cutmix) derives from (root,
    loader path, epoch, position of the batch's first sample), not from the worker.

    >>> from rngstate.data import SeededCollate
    >>> SeededCollate(list, ("loader",))([1, 2])
    [1, 2]
    """

    def __init__(self, collate_fn: Callable[[list[Any]], Any], parts: tuple[str, ...]) -> None:
        self.collate_fn = collate_fn
        self.parts = parts

    def __call__(self, batch: list[Any]) -> Any:
        # The samples of this batch were just loaded by this thread; they left the batch's key.
        info = getattr(_LOCAL, "batch", None)
        _LOCAL.batch = None
        if info is None:
            return self.collate_fn(batch)
        root, epoch, batch_start = info
        with _seeded(root, _batch_parts(self.parts, epoch, batch_start)):
            return self.collate_fn(batch)


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
    current = getattr(_LOCAL, "sample", None)
    if current is None:
        raise DataLoaderError(
            "sample_seed() is only available inside __getitem__ of a dataset loaded by "
            "rngstate.torch.DataLoader or rngstate.paddle.DataLoader"
        )
    root, parts = current
    return int.from_bytes(derive_bytes(root, (*parts, *split_path(name)), "seed")[:8], "big") >> 1


# -- worker seeding -------------------------------------------------------------------------


def _framework_worker_info() -> tuple[str, Any] | None:
    # Only modules already loaded are consulted: a worker of torch's DataLoader has
    # torch.utils.data loaded, one of Paddle's has paddle.io.
    torch_data = sys.modules.get("torch.utils.data")
    if torch_data is not None:
        info = torch_data.get_worker_info()
        if info is not None:
            return "torch", info
    paddle_io = sys.modules.get("paddle.io")
    if paddle_io is not None:
        info = paddle_io.get_worker_info()
        if info is not None:
            return "paddle", info
    return None


def _worker_root() -> int:
    if RUNTIME.root is not None:  # forked workers inherit it
        return RUNTIME.root
    text = os.environ.get("RNGSTATE_SEED")  # spawned workers: seed_everything exported it
    if text is not None:
        try:
            return check_seed(int(text.strip()))
        except (ValueError, RNGStateError):
            raise NoRootSeedError(f"RNGSTATE_SEED={text!r} is not an integer in [0, {MAX_SEED}]") from None
    raise NoRootSeedError(
        "worker_init_fn: no root seed in this worker; call rngstate.seed_everything(seed) in the "
        "main process before creating the DataLoader iterator"
    )


def worker_init_fn(worker_id: int) -> None:
    """Seed Python ``random``, NumPy, torch and paddle in a DataLoader worker.

    Pass it as ``worker_init_fn=rngstate.worker_init_fn`` to ``torch.utils.data.DataLoader`` or
    ``paddle.io.DataLoader``.  Each worker's generators derive from the root seed, the seed the
    framework drew for this epoch's workers and ``worker_id``, so every worker and every epoch
    differs (NumPy included, which forked workers otherwise share) and a rerun repeats.

    Randomness then depends on ``num_workers``; for randomness per sample, independent of the
    workers and resumable mid-epoch, use ``rngstate.torch.DataLoader`` or
    ``rngstate.paddle.DataLoader``.

    >>> import rngstate, torch
    >>> _ = rngstate.seed_everything(0)
    >>> loader = torch.utils.data.DataLoader(
    ...     range(8), num_workers=2, worker_init_fn=rngstate.worker_init_fn,
    ...     generator=rngstate.torch.generator("loader"))
    """
    found = _framework_worker_info()
    if found is None:
        raise DataLoaderError(
            "worker_init_fn must be called by a torch.utils.data.DataLoader or "
            "paddle.io.DataLoader worker (pass it as worker_init_fn=rngstate.worker_init_fn)"
        )
    framework, info = found
    _mark_worker()
    # torch's info.seed is base_seed + worker_id, Paddle's is base_seed: both change per epoch.
    parts = ("#worker", framework, str(int(info.seed)), str(int(worker_id)))
    _SEEDER.seed(_worker_root(), parts)


class LoaderWorkerInit:
    """The ``worker_init_fn`` the rngstate loaders install: marks the process as a worker,
    seeds its generators for code outside ``__getitem__``, then calls the user's function."""

    def __init__(self, user_fn: Callable[[int], Any] | None, parts: tuple[str, ...]) -> None:
        self.user_fn = user_fn
        self.parts = parts
        self.root = 0
        self.epoch = 0

    def __call__(self, worker_id: int) -> None:
        _mark_worker()
        _SEEDER.seed(self.root, (*self.parts, "#worker", str(self.epoch), str(int(worker_id))))
        if self.user_fn is not None:
            self.user_fn(worker_id)


# -- the sampler ----------------------------------------------------------------------------


def _order(root: int, parts: tuple[str, ...], epoch: int, n: int) -> np.ndarray:
    # Sorting PCG64 raw words gives a uniform permutation and depends only on the bit
    # generator's stream, which NumPy keeps stable (Generator.permutation may change).
    material = derive_bytes(root, (*parts, "#order", str(epoch)), "order")
    bits = np.random.PCG64(np.random.SeedSequence(int.from_bytes(material, "big")))
    order = np.argsort(bits.random_raw(n), kind="stable")
    order.flags.writeable = False
    return order


def check_batch_size(batch_size: Any) -> int | None:
    """Return ``batch_size`` if it is a positive int or None, else raise DataLoaderError."""
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise DataLoaderError(f"batch_size must be a positive int or None, got {_check.show(batch_size)}")
    return batch_size


def dataset_length(dataset: Any) -> int:
    """``len(dataset)``, or DataLoaderError for datasets without one."""
    try:
        return len(dataset)
    except TypeError:
        raise DataLoaderError(
            f"the dataset ({type(dataset).__name__}) has no __len__; rngstate loaders need a "
            "map-style dataset of known length"
        ) from None


def _check_count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DataLoaderError(f"{what} must be a non-negative int, got {_check.show(value)}")
    return value


class ResumableSampler:
    """A sampler whose order is a pure function of (root seed, scope path, name, epoch) and
    whose position can be saved and restored mid-epoch.

    Works as the ``sampler`` of ``torch.utils.data.DataLoader`` and of
    ``paddle.io.BatchSampler``.  Call ``set_epoch(epoch)`` before each epoch; without it, a new
    iteration continues an unfinished epoch or starts the next one.  ``state_dict()`` is plain
    data; after ``load_state_dict(sd)``, ``set_epoch`` of the saved epoch (or no call) resumes at
    the saved position and any other epoch starts at its beginning.

    Under data parallelism it shards like ``DistributedSampler``: ``rank`` and ``world_size``
    default to :func:`rngstate.rank_info` (the process group, else ``RANK``/``WORLD_SIZE``);
    every rank draws the same epoch order, pads it by repeating its start to a multiple of
    ``world_size`` and takes every ``world_size``-th index from its rank.  Positions count this
    rank's samples.  Pass ``world_size=1`` to give every rank the whole dataset.

    The sampler counts what it has *yielded*.  A DataLoader with workers prefetches, so record
    the samples your loop consumed and resume with ``set_epoch(epoch, start=consumed)`` -- or use
    ``rngstate.torch.DataLoader`` / ``rngstate.paddle.DataLoader``, which count consumed
    batches for you.

    >>> import rngstate
    >>> _ = rngstate.seed_everything(0)
    >>> sampler = rngstate.ResumableSampler(10, name="train")
    >>> sampler.set_epoch(3)
    >>> it = iter(sampler); first = [next(it) for _ in range(4)]
    >>> sd = sampler.state_dict()
    >>> again = rngstate.ResumableSampler(10, name="train"); again.load_state_dict(sd)
    >>> again.set_epoch(3); list(again) == list(sampler.order(3))[4:]
    True
    """

    def __init__(
        self,
        n: int,
        *,
        name: str = "sampler",
        shuffle: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.n = _check_count(n, "ResumableSampler: n")
        if not isinstance(shuffle, bool):
            raise DataLoaderError(f"ResumableSampler: shuffle must be a bool, got {_check.show(shuffle)}")
        self.shuffle = shuffle
        self.rank, self.world_size = _shard(rank, world_size)
        self.length = _share(self.n, self.world_size)
        self.parts = RUNTIME.current_parts() + split_path(name)
        self.path = "/".join(self.parts)
        self.epoch = 0
        self.position = 0  # samples of `epoch` already taken (yielded, or consumed by a loader)
        self._pinned = False  # set_epoch chose (epoch, position) for the next iteration
        self._begun = False  # an iteration started (or a state was loaded): auto-advance allowed
        self._restored: tuple[int, int | None] | None = None  # (epoch, root) of a loaded state
        self._root: int | None = None  # root seed of the current iteration
        self._iteration = 0
        self._start = 0
        self._cache: tuple[int, int, np.ndarray] | None = None  # (root, epoch, order)

    # -- the order --------------------------------------------------------------------------

    def order(self, epoch: int | None = None) -> np.ndarray:
        """The (read-only) index order of ``epoch`` (default: the current one).

        >>> import rngstate
        >>> _ = rngstate.seed_everything(0)
        >>> sorted(rngstate.ResumableSampler(5).order(0).tolist())
        [0, 1, 2, 3, 4]
        """
        epoch = self.epoch if epoch is None else _check_count(epoch, "epoch")
        root = RUNTIME.require_root()
        cache = self._cache
        if cache is not None and cache[0] == root and cache[1] == epoch:
            return cache[2]
        order = _order(root, self.parts, epoch, self.n) if self.shuffle else np.arange(self.n, dtype=np.int64)
        if self.world_size > 1 and self.n:
            order = order[self.global_positions(np.arange(self.length)) % self.n]
        order.flags.writeable = False
        self._cache = (root, epoch, order)
        return order

    def global_positions(self, positions: Any) -> Any:
        """Position in the padded epoch order of this rank's ``positions`` (an int or array):
        per-sample seeds derive from it, so a sample's randomness does not depend on the
        world size."""
        return positions * self.world_size + self.rank

    # -- the cursor -------------------------------------------------------------------------

    def _min_remaining(self) -> int:
        """Fewer samples left than this means the epoch is finished (drop_last loaders)."""
        return 1

    def _finished(self) -> bool:
        return self.length - self.position < self._min_remaining()

    def _plan(self) -> tuple[int, int]:
        """(epoch, start) of the next iteration, without committing to it."""
        if not self._pinned and self._begun and self._finished():
            return self.epoch + 1, 0
        return self.epoch, self.position

    def set_epoch(self, epoch: int, start: int | None = None) -> None:
        """Make the next iteration yield ``epoch`` from position ``start``.

        ``start=None`` means 0, except right after :meth:`load_state_dict` for the saved epoch,
        where it keeps the saved position.
        """
        epoch = _check_count(epoch, "set_epoch: epoch")
        if start is None:
            restored = self._restored
            start = self.position if restored is not None and restored[0] == epoch else 0
        start = _check_count(start, "set_epoch: start")
        if start > self.length:
            raise DataLoaderError(
                f"set_epoch: start={start} is past the end of the epoch ({self.length} samples)"
            )
        if self._restored is not None and self._restored[0] != epoch:
            self._restored = None  # another epoch: the saved root no longer matters
        self.epoch, self.position, self._pinned = epoch, start, True

    def _begin(self) -> int:
        """Commit to the next iteration: returns its token.  Checks the root seed."""
        self.epoch, self.position = self._plan()
        root = RUNTIME.require_root()
        restored = self._restored
        if restored is not None and self.position > 0 and restored[1] is not None and restored[1] != root:
            raise InvalidStateError(
                f"{self.path}: the saved position {self.position} of epoch {self.epoch} belongs to "
                f"root seed {restored[1]}, but the root seed is now {root}; restore the RNG state "
                "saved with it (rngstate.restore) before iterating, or set_epoch() another epoch"
            )
        self._pinned = False
        self._begun = True
        self._restored = None
        self._root = root
        self._start = self.position
        self._iteration += 1
        self.order(self.epoch)  # computed now, so the first batch is not late
        return self._iteration

    def __len__(self) -> int:
        _epoch, start = self._plan()
        return self.length - start

    def __iter__(self) -> Iterator[int]:
        token = self._begin()
        return self._yield_indices(token, self.order(self.epoch), self._start)

    def _yield_indices(self, token: int, order: np.ndarray, start: int) -> Iterator[int]:
        for position in range(start, self.length):
            if self._iteration != token:  # a newer iteration took over
                return
            self.position = position + 1
            yield int(order[position])

    # -- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The position as plain data (json, ``torch.save`` with ``weights_only``,
        ``paddle.save``).

        >>> import json, rngstate
        >>> _ = rngstate.seed_everything(0)
        >>> state = json.loads(json.dumps(rngstate.ResumableSampler(4, name="s").state_dict()))
        >>> state["path"], state["epoch"], state["position"], state["root_seed"]
        ('s', 0, 0, 0)
        """
        root = self._root if self._root is not None else RUNTIME.root
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "path": self.path,
            "n": self.n,
            "shuffle": self.shuffle,
            "epoch": self.epoch,
            "position": self.position,
            "root_seed": root,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the next iteration (or ``set_epoch`` of the saved
        epoch) continues at the saved position.  Raises :class:`~rngstate.InvalidStateError`
        when the state is malformed or belongs to another sampler."""
        where = f"{self.path}.load_state_dict"
        _check.mapping(state, where)
        version = _check.integer(state.get("version"), f"{where}: version", 1, 2**31)
        if version > STATE_VERSION:
            raise InvalidStateError(
                f"{where}: the state has version {version}, newer than {STATE_VERSION}; upgrade rngstate"
            )
        _check.mapping(state, where, _STATE_KEYS_V1 if version == 1 else _STATE_KEYS)
        _check.text(state["format"], f"{where}: format", (STATE_FORMAT,))
        world_size = 1 if version == 1 else _check.integer(
            state["world_size"], f"{where}: world_size", 1, 2**31
        )
        path = _check.text(state["path"], f"{where}: path")
        n = _check.integer(state["n"], f"{where}: n", 0, 2**63)
        if not isinstance(state["shuffle"], bool):
            raise InvalidStateError(f"{where}: shuffle must be a bool, got {_check.show(state['shuffle'])}")
        epoch = _check.integer(state["epoch"], f"{where}: epoch", 0, 2**63)
        position = _check.integer(state["position"], f"{where}: position", 0, _share(n, world_size))
        root = state["root_seed"]
        if root is not None:
            root = _check.integer(root, f"{where}: root_seed", 0, MAX_SEED)
        problems = []
        if path != self.path:
            problems.append(f"it was saved by {path!r}, this is {self.path!r}")
        if n != self.n:
            problems.append(f"it covers {n} samples, this dataset has {self.n}")
        if state["shuffle"] != self.shuffle:
            problems.append(f"it was saved with shuffle={state['shuffle']}, this has shuffle={self.shuffle}")
        if problems:
            raise InvalidStateError(f"{where}: the state does not belong here: " + "; ".join(problems))
        if world_size != self.world_size:
            # Positions count one rank's share; another sharding puts other samples there.
            # (Any rank's state fits every rank: data parallel ranks consume the same number.)
            # At an epoch boundary nothing is shared out yet, so the state carries over.
            if position == _share(n, world_size):
                position = self.length
            elif position != 0:
                raise TopologyError(
                    f"{where}: the state was saved with world_size={world_size}, this job has "
                    f"world_size={self.world_size}; a mid-epoch position cannot move to another "
                    f"sharding. Resume with the same world size, or start the next epoch: "
                    f"set_epoch({epoch + 1}) (or pass world_size={world_size} to keep the old sharding)"
                )
        self.epoch, self.position = epoch, position
        self._restored = (epoch, root)
        self._pinned = False
        self._begun = True  # a finished saved epoch moves on to the next one
        self._iteration += 1  # iterators started before the load stop counting

    def __repr__(self) -> str:
        shard = f", rank={self.rank}, world_size={self.world_size}" if self.world_size > 1 else ""
        return (
            f"{type(self).__name__}(n={self.n}, path={self.path!r}, shuffle={self.shuffle}{shard}, "
            f"epoch={self.epoch}, position={self.position})"
        )


class LoaderSampler(ResumableSampler):
    """The sampler inside the rngstate loaders: yields :class:`SampleKey` and counts what the
    training loop consumed (the loader reports it), not what the workers prefetched."""

    def __init__(
        self,
        n: int,
        *,
        name: str,
        shuffle: bool,
        batch_size: int | None,
        drop_last: bool,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__(n, name=name, shuffle=shuffle, rank=rank, world_size=world_size)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self._opened: int | None = None  # the iteration the owning loader began, until it ends

    def _min_remaining(self) -> int:
        return self.batch_size if self.drop_last and self.batch_size else 1

    def _begin(self) -> int:
        token = super()._begin()
        self._opened = token
        return token

    def __iter__(self) -> Iterator[SampleKey]:  # type: ignore[override]
        # The loader called _begin() already; the framework may call iter() later, lazily.
        # A loader rebuilt around this sampler by another library (accelerate's prepare or
        # skip_first_batches, Lightning's sampler replacement) iterates it without _begin:
        # it would neither count positions nor move to the next epoch.
        if self._root is None or self._opened != self._iteration:
            raise DataLoaderError(
                f"{self.path}: this rngstate loader's sampler is iterated by another DataLoader "
                "(accelerator.prepare, accelerate's skip_first_batches or a framework that rebuilt "
                "the loader), which cannot resume exactly. Iterate the rngstate loader itself: do "
                "not pass it to accelerator.prepare (register it with "
                "accelerator.register_for_checkpointing instead; batches are on the CPU, move them "
                "with .to(accelerator.device))"
            )
        return self._yield_keys(self._iteration, self.order(self.epoch), self._start)

    def _yield_keys(self, token: int, order: np.ndarray, start: int) -> Iterator[SampleKey]:
        epoch, root, size = self.epoch, self._root, self.batch_size or 1
        assert root is not None
        whole_epoch = self.global_positions  # seeds follow positions in the whole padded epoch
        for position in range(start, self.length):
            if self._iteration != token:
                return
            batch_start = start + (position - start) // size * size
            index = int(order[position])
            yield SampleKey(index, epoch, whole_epoch(position), whole_epoch(batch_start), root)

    def consumed(self, token: int, batches: int = 1) -> None:
        """The training loop took ``batches`` more batches of iteration ``token``."""
        if token == self._iteration:
            size = self.batch_size or 1
            self.position = min(self.position + batches * size, self.length)

    def exhausted(self, token: int) -> None:
        """Iteration ``token`` ended: its epoch is finished."""
        if token == self._iteration:
            self.position = self.length
            self._opened = None


class ResumingIterator:
    """Wraps a framework's DataLoader iterator and reports each batch the loop takes."""

    def __init__(self, iterator: Any, sampler: LoaderSampler, token: int) -> None:
        self._iterator = iterator
        self._sampler = sampler
        self._token = token

    def __iter__(self) -> ResumingIterator:
        return self

    def __next__(self) -> Any:
        try:
            batch = next(self._iterator)
        except StopIteration:
            self._sampler.exhausted(self._token)
            raise
        self._sampler.consumed(self._token)
        return batch

    def __len__(self) -> int:
        return len(self._iterator)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_iterator", "_sampler", "_token"):
            raise AttributeError(name)
        return getattr(self._iterator, name)


class ResumableLoader:
    """What ``rngstate.torch.DataLoader`` and ``rngstate.paddle.DataLoader`` add to their
    framework's DataLoader: the sampler, the wrapped dataset and collate_fn, epoch, position and
    state.  Mixed in before the framework class."""

    _rng_sampler: LoaderSampler
    _rng_worker_init: LoaderWorkerInit

    def _rng_setup(
        self,
        dataset: Any,
        *,
        name: str,
        shuffle: bool,
        batch_size: int | None,
        drop_last: bool,
        rank: int | None,
        world_size: int | None,
        collate_fn: Callable[[list[Any]], Any] | None,
        worker_init_fn: Callable[[int], Any] | None,
    ) -> tuple[SeededDataset, SeededCollate | None]:
        """Build the sampler and worker init; return the dataset and collate_fn to hand on."""
        check_batch_size(batch_size)
        sampler = LoaderSampler(
            dataset_length(dataset),
            name=name,
            shuffle=bool(shuffle),
            batch_size=batch_size,
            drop_last=bool(drop_last),
            rank=rank,
            world_size=world_size,
        )
        self._rng_sampler = sampler
        self._rng_worker_init = LoaderWorkerInit(worker_init_fn, sampler.parts)
        collate = SeededCollate(collate_fn, sampler.parts) if collate_fn is not None else None
        return SeededDataset(dataset, sampler.parts), collate

    def _rng_begin(self) -> int:
        """Start an iteration: returns the token its ResumingIterator reports with."""
        sampler = self._rng_sampler
        token = sampler._begin()
        assert sampler._root is not None
        self._rng_worker_init.root = sampler._root
        self._rng_worker_init.epoch = sampler.epoch
        _SEEDER.streams()  # resolved here once, so forked workers inherit it instead of each redoing it
        return token

    def set_epoch(self, epoch: int, start: int | None = None) -> None:
        """Make the next iteration run ``epoch`` (from sample ``start``; ``None``: from the
        beginning, or from the saved position right after ``load_state_dict``)."""
        self._rng_sampler.set_epoch(epoch, start)

    @property
    def epoch(self) -> int:
        """The epoch of the current (or last) iteration."""
        return self._rng_sampler.epoch

    @property
    def position(self) -> int:
        """Samples of the current epoch (this rank's share) the training loop has taken."""
        return self._rng_sampler.position

    def state_dict(self) -> dict[str, Any]:
        """Epoch and position as plain data, for the checkpoint."""
        return self._rng_sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`; raises InvalidStateError if it does not fit."""
        self._rng_sampler.load_state_dict(state)


def lazy_loader(module_globals: dict[str, Any], build: Callable[[], type]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that builds ``DataLoader`` on first use, so that importing the
    facade never imports its framework."""

    def module_getattr(name: str) -> Any:
        if name == "DataLoader":
            loader_class = build()
            loader_class.__module__ = module_globals["__name__"]
            loader_class.__qualname__ = "DataLoader"
            module_globals["DataLoader"] = loader_class
            return loader_class
        raise AttributeError(f"module {module_globals['__name__']!r} has no attribute {name!r}")

    return module_getattr


def _share(n: int, world_size: int) -> int:
    """Samples per rank and epoch: the epoch is padded to a multiple of ``world_size``."""
    return -(-n // world_size)


def _shard(rank: Any, world_size: Any) -> tuple[int, int]:
    """Validated (rank, world_size); what is not given comes from the job (rank_info)."""
    if rank is None or world_size is None:
        info = rank_info()
        if world_size is None:
            world_size = info.world_size
        if rank is None:
            if world_size == 1:
                rank = 0
            elif world_size == info.world_size:
                rank = info.rank
            else:
                raise DataLoaderError(
                    f"world_size={world_size} differs from the job's ({info.world_size}, from "
                    f"{info.source}): pass rank= as well"
                )
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise DataLoaderError(f"world_size must be a positive int, got {_check.show(world_size)}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise DataLoaderError(f"rank must be an int in [0, world_size={world_size}), got {_check.show(rank)}")
    return rank, world_size


def loader_parts(name: str) -> tuple[str, ...]:
    """Scope path of a loader called ``name`` created here."""
    return RUNTIME.current_parts() + split_path(name)


__all__ = [
    "DataLoaderError",
    "ResumableSampler",
    "SampleKey",
    "SeededCollate",
    "SeededDataset",
    "preserve_streams",
    "sample_seed",
    "worker_init_fn",
]
