"""What the rngstate loaders hand their framework instead of bare index batches and collate_fn.

The user's dataset itself is handed on untouched (workers, ``get_worker_info().dataset`` and
``loader.dataset`` see it); the seeding rides on the batches of indices instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from rngstate.data.seeding import BATCH_SAMPLES, LOCAL, SAMPLE, SEEDER, batch_parts, epoch_parts, seeded
from rngstate.runtime import RUNTIME

_pid = os.getpid()  # this process's, kept by a fork handler: os.getpid() is a system call a batch


def _forked() -> None:
    global _pid
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class SeededBatch(list[Any]):
    """A batch of dataset indices that seeds the sample streams right before each index is
    handed out.

    The frameworks' fetchers load a batch as ``[dataset[i] for i in batch]`` (torch passes the
    list to ``dataset.__getitems__`` when there is one): iterating it seeds Python, NumPy,
    torch and paddle as sample ``position`` of the sequence (root, loader path, "#sample",
    epoch) before each sample loads, and bases the scopes opened there on that sample.  With
    ``seed_per="batch"`` they are seeded once, before the first index, as sample ``position
    of the first sample`` of the sequence (root, loader path, "#samples", epoch), and the
    other samples continue those generators.  In the training process
    (``pid``) the outer generators and scopes are put back when the iteration ends; in a worker
    nothing else runs between samples, so it is not worth the copies.

    >>> import random
    >>> batch = SeededBatch([7, 3], root=0, parts=("loader",), epoch=0, first=0)
    >>> state = random.getstate()
    >>> [(i, round(random.random(), 6)) for i in batch] == [(i, round(random.random(), 6)) for i in batch]
    True
    >>> random.getstate() == state
    True
    """

    __slots__ = (
        "batch_start", "entered", "epoch", "first", "hold", "parts", "pid", "root", "seed_per", "step"
    )

    def __init__(
        self,
        indices: list[Any],
        *,
        root: int,
        parts: tuple[str, ...],
        epoch: int,
        first: int,
        step: int = 1,
        pid: int | None = None,
        seed_per: str = "sample",
        hold: bool = False,
    ) -> None:
        super().__init__(indices)
        self.root = root
        self.parts = parts
        self.epoch = epoch
        self.first = first  # position of the first sample in the whole (padded) epoch
        self.step = step  # positions of the next ones: first + k * step (sharded epochs: world size)
        self.batch_start = first
        self.pid = _pid if pid is None else pid
        self.seed_per = seed_per
        # For a dataset fetched whole by __getitems__: the first iteration seeds as usual (a
        # dataset drawing per sample as it iterates gets per-sample seeds); after it the batch's
        # streams are seeded and held through the rest of the call (an HF datasets transform
        # runs after reading the keys, maybe several times), put back by SeededCollate.
        self.hold = hold
        self.entered = False

    def __reduce__(self) -> Any:
        # Not the default list pickling: that would iterate, and iterating seeds.
        fields = (
            self.root, self.parts, self.epoch, self.first, self.step, self.pid, self.seed_per, self.hold
        )
        return (_rebuild, (list.copy(self), *fields))

    def __iter__(self) -> Iterator[Any]:
        if self.hold and self.entered:
            return list.__iter__(self)
        return self._seeding()

    def _seeding(self) -> Iterator[Any]:
        here, outer_scopes, items = self._begin()
        saved = None
        try:
            if self.seed_per == "sample":
                saved = SEEDER.save() if here else None
                rebase = RUNTIME.rebase_sample
                for index, sample_root in zip(items, self._roots(), strict=True):  # seeds each sample
                    rebase(sample_root)  # scopes derive from the sample
                    yield index
            elif len(self):  # the first sample's streams only; the others continue them
                saved = self._seed_batch(here)
                yield from items
        finally:
            self._end(here, outer_scopes, saved)

    def load(self, dataset: Any) -> list[Any]:
        """``[dataset[i] for i in self]``, each sample seeded as iterating seeds it, in one loop
        instead of a generator resumed per sample (what :class:`SeededFetcher` calls)."""
        if self.hold:
            return [dataset[index] for index in self]
        here, outer_scopes, items = self._begin()
        saved = None
        try:
            if self.seed_per == "sample":
                saved = SEEDER.save() if here else None
                rebase, data = RUNTIME.rebase_sample, list[Any]()
                append = data.append
                for index, sample_root in zip(items, self._roots(), strict=True):
                    rebase(sample_root)
                    append(dataset[index])
                return data
            if not len(self):
                return []
            saved = self._seed_batch(here)
            return [dataset[index] for index in items]
        finally:
            self._end(here, outer_scopes, saved)

    def _begin(self) -> tuple[bool, Any, Iterator[Any]]:
        here = _pid == self.pid
        if self.hold:
            self.entered = True
            put_back_held()  # a previous call that raised before its collate
        outer_scopes = RUNTIME.rebase(RUNTIME.root)
        items = list.__iter__(self)
        # sample_seed() finds the sample's position from what is left of ``items``: cheaper
        # than recording it per sample.
        LOCAL.sample = (self.root, self.parts, self.epoch, self.first, self.step, items, len(self))
        return here, outer_scopes, items

    def _roots(self) -> Iterator[int]:
        """Seeds the sample streams for each sample in turn; yields its scope root."""
        parts = epoch_parts(self.parts, SAMPLE, self.epoch)
        return SEEDER.positions(self.root, parts, self.first, self.step, len(self))

    def _seed_batch(self, here: bool) -> Any:
        """seed_per="batch": the first sample's streams, for the whole batch; the outer state
        they replaced when loading in the training process."""
        batch_samples = epoch_parts(self.parts, BATCH_SAMPLES, self.epoch)
        saved = None
        if here:
            saved, sample_root = SEEDER.enter(self.root, batch_samples, self.first)
        else:
            sample_root = SEEDER.seed(self.root, batch_samples, self.first)
        RUNTIME.rebase(sample_root)
        return saved

    def _end(self, here: bool, outer_scopes: Any, saved: Any) -> None:
        root, parts, epoch, first = self.root, self.parts, self.epoch, self.first
        LOCAL.sample = None
        LOCAL.batch = (root, parts, epoch, self.batch_start, here)
        if self.hold:
            if self.seed_per == "sample":  # seed_per="batch": its streams continue
                RUNTIME.rebase(SEEDER.seed(root, epoch_parts(parts, BATCH_SAMPLES, epoch), first))
            LOCAL.held = (saved, outer_scopes)
        else:
            RUNTIME.rebase(*outer_scopes)
            SEEDER.put_back(saved)


def _rebuild(indices: list[Any], root: int, parts: tuple[str, ...], epoch: int, first: int,
             step: int, pid: int, seed_per: str, hold: bool = False) -> SeededBatch:
    return SeededBatch(
        indices, root=root, parts=parts, epoch=epoch, first=first, step=step, pid=pid, seed_per=seed_per,
        hold=hold,
    )


def put_back_held() -> None:
    """After a held batch's ``__getitems__``: the outer generators and scopes back."""
    held = getattr(LOCAL, "held", None)
    if held is not None:
        LOCAL.held = None
        saved, outer_scopes = held
        RUNTIME.rebase(*outer_scopes)
        SEEDER.put_back(saved)


class SeededFetcher:
    """Stands in for torch's map-style fetcher where batches load in the training process
    (``num_workers=0``): a :class:`SeededBatch` loads itself in one loop
    (:meth:`SeededBatch.load`); anything else, and a dataset with ``__getitems__``, goes to
    torch's fetcher, whose other attributes it shows."""

    def __init__(self, fetcher: Any) -> None:
        self._fetcher = fetcher
        self.dataset = fetcher.dataset
        self.collate_fn = fetcher.collate_fn
        # Looked at once, as the loader does for its seeding (``_rng_hold``).
        self._whole = bool(getattr(fetcher.dataset, "__getitems__", None))

    def fetch(self, batch: Any) -> Any:
        if self._whole or type(batch) is not SeededBatch:
            return self._fetcher.fetch(batch)
        return self.collate_fn(batch.load(self.dataset))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fetcher, name)


class SeededCollate:
    """Wraps a ``collate_fn`` so that randomness in it (mixup, cutmix) derives from (root,
    loader path, epoch, position of the batch's first sample), not from the worker.

    >>> SeededCollate(list)([1, 2])
    [1, 2]
    """

    def __init__(self, collate_fn: Callable[[list[Any]], Any]) -> None:
        self.collate_fn = collate_fn

    def __call__(self, batch: list[Any]) -> Any:
        put_back_held()
        # The samples of this batch were just loaded by this thread; they left the batch's key.
        info = getattr(LOCAL, "batch", None)
        LOCAL.batch = None
        if info is None:
            return self.collate_fn(batch)
        root, parts, epoch, batch_start, in_training_process = info
        with seeded(root, batch_parts(parts, epoch, batch_start), in_training_process):
            return self.collate_fn(batch)


class Unbatch:
    """The collate_fn of a loader without automatic batching (``batch_size=None``): the
    framework fetched a one-sample :class:`SeededBatch`; hand the sample on alone.

    >>> Unbatch(str)([5])
    '5'
    """

    def __init__(self, convert: Callable[[Any], Any]) -> None:
        self.convert = convert

    def __call__(self, batch: list[Any]) -> Any:
        return self.convert(batch[0])
