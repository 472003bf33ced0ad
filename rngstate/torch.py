"""PyTorch helpers: tracked generators and a drop-in DataLoader that resumes exactly.

``import rngstate.torch`` imports torch (``import rngstate`` alone imports no framework).

>>> import rngstate, rngstate.torch
>>> _ = rngstate.seed_everything(0)
>>> loader_rng = rngstate.torch.generator("train_loader")
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.utils.data as torch_data
from torch.autograd import _profiler_enabled  # type: ignore[attr-defined]
from torch.utils.data._utils.fetch import _MapDatasetFetcher
from torch.utils.data.dataloader import _BaseDataLoaderIter

from rngstate import backends
from rngstate.backends import torch_backend
from rngstate.data.loader import (
    BATCH_SAMPLER,
    ITERABLE,
    ORDER,
    SAMPLER,
    OrderPart,
    Pass,
    PassBatches,
    ResumableLoader,
    count_batches,
    load_dataset_state,
    skip_to_start,
)
from rngstate.data.seeding import SEEDER, Isolated, preserve_streams, seeded
from rngstate.data.workers import WorkerScopes
from rngstate.data.wrappers import SeededCollate, SeededFetcher, Unbatch
from rngstate.derive import derive_bytes
from rngstate.initialize.torch import init_by_name as init_by_name
from rngstate.tracking import tracked_generator

T_co = TypeVar("T_co", covariant=True)


def generator(name: str = "generator", *, device: str = "cpu") -> Any:
    """A ``torch.Generator`` seeded from the current scope path and ``name``, included in every
    capture; the same name in the same scope returns the same object.

    >>> import rngstate, rngstate.torch, torch
    >>> _ = rngstate.seed_everything(0)
    >>> g = rngstate.torch.generator("loader")
    >>> loader = torch.utils.data.DataLoader(range(8), shuffle=True, generator=g)
    """
    kind = backends.kind("torch.Generator")
    return tracked_generator(name, kind, lambda: torch_backend.new_generator(device))


class DataLoader(ResumableLoader, torch_data.DataLoader[T_co]):  # type: ignore[misc,name-defined]
    """``torch.utils.data.DataLoader`` (same arguments, same behaviour) whose order,
    per-sample randomness and position come from rngstate, so training resumes
    bit-for-bit, even mid-epoch.

    * The order of epoch ``e`` derives from (root seed, scope path, ``name``, ``e``).
      A ``sampler=`` or ``batch_sampler=`` of your own is used instead, drawn with the
      global generators and its own ``generator`` seeded from (root seed, loader path,
      epoch), so that a resume replays it exactly; it decides about ranks.
    * Before each sample is loaded, Python ``random``, NumPy's global generator and torch's
      CPU generator (and paddle's, if imported) are seeded from (root seed, loader path,
      epoch, position in the epoch), and scopes opened there derive from the sample:
      results do not depend on ``num_workers``, on which worker loads a sample, on
      prefetching or on where training resumed.  A ``collate_fn`` is seeded per batch the
      same way.  In the training process the outer generators are put back after each
      sample, so loading with ``num_workers=0`` does not shift dropout.
    * Each ``iter()`` is a whole epoch, as with torch: the next one without ``set_epoch``.
      The workers' base seed (``get_worker_info().seed``) derives from (root seed, loader
      path, epoch), or is drawn from ``generator=`` when you pass one.
    * ``set_epoch(e)``, ``state_dict()`` (plain data) and ``load_state_dict(sd)``: after a
      load, the next ``iter()`` continues mid-epoch.
    * Under data parallelism the loader's own order is sharded like ``DistributedSampler``
      (``rank``/``world_size`` default to the process group or ``RANK``/``WORLD_SIZE``;
      ``group=`` shards by a ProcessGroup or 1-D DeviceMesh, e.g. the data-parallel one
      under tensor parallelism; ``world_size=1`` loads everything on every rank).  A
      sample's randomness depends on its position in the whole epoch, so it is the same
      whatever the world size.
    * ``seed_per="batch"`` seeds once per batch instead (from its first sample's position;
      faster on cheap samples, but a sample's randomness then depends on ``batch_size``).
      ``state_dict`` records it; ``load_state_dict`` refuses a state of the other mode.

    >>> import rngstate, rngstate.torch, torch
    >>> _ = rngstate.seed_everything(0)
    >>> loader = rngstate.torch.DataLoader(torch.arange(10.0), batch_size=4, shuffle=True,
    ...                                    name="train")
    >>> first = next(iter(loader))
    >>> checkpoint = {"loader": loader.state_dict(), "rng": rngstate.capture().to_dict()}
    """

    _rng_ready = False
    collate_fn: Any
    generator: Any
    worker_init_fn: Any

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Any = None,
        batch_sampler: Any = None,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], Any] | None = None,
        multiprocessing_context: Any = None,
        generator: Any = None,
        *,
        name: str = "loader",
        rank: int | None = None,
        world_size: int | None = None,
        group: Any = None,
        seed_per: str = "sample",
        **kwargs: Any,
    ) -> None:
        iterable = isinstance(dataset, torch_data.IterableDataset)
        own_order = sampler is None and batch_sampler is None and not iterable
        mode = ORDER if own_order else SAMPLER if batch_sampler is None else BATCH_SAMPLER
        if iterable:
            mode = ITERABLE  # torch rejects a sampler, a batch_sampler and shuffle for it
        self._rng_setup(
            dataset,
            name=name,
            shuffle=bool(shuffle),
            batch_size=batch_size,
            drop_last=drop_last,
            source=sampler if batch_sampler is None else batch_sampler,
            mode=mode,
            rank=rank,
            world_size=world_size,
            group=group,
            seed_per=seed_per,
        )
        if own_order:
            sampler, shuffle = _OrderSampler(self), None
        # torch checks the arguments and sets its attributes (sampler, batch_sampler,
        # batch_size, drop_last, collate_fn, generator) exactly as for its own class.
        # Keywords: code that records and replays the arguments (Lightning re-creating the
        # loader with a DistributedSampler) then finds each one under its name.
        super().__init__(
            dataset=dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler,
            batch_sampler=batch_sampler, num_workers=num_workers, collate_fn=collate_fn,
            pin_memory=pin_memory, drop_last=drop_last, timeout=timeout,
            worker_init_fn=worker_init_fn, multiprocessing_context=multiprocessing_context,
            generator=generator, **kwargs,
        )
        self.name = name  # public, like the other arguments: a re-created loader keeps them
        self.seed_per = seed_per
        self._rng_batching = self.batch_sampler is not None
        # torch hands a dataset with __getitems__ (HF datasets) the whole batch in one call:
        # it is seeded per batch, whatever seed_per says, so that results never depend on
        # num_workers (its transform runs once for the batch).
        self._rng_hold = bool(getattr(self.dataset, "__getitems__", None))
        self._rng_ready = True

    _rng_building = False  # an iterator is being built (it reads the two below)

    @property
    def _auto_collation(self) -> bool:
        # The iterators fetch a list (a SeededBatch) every time: without batching, a list
        # of one, which Unbatch hands on alone.  Everyone else sees torch's answer.
        if self._rng_building and self._rng_mode != ITERABLE:
            return True
        return self.batch_sampler is not None

    @property
    def _index_sampler(self) -> Any:
        if not self._rng_ready or self._rng_mode == ITERABLE:
            return super()._index_sampler
        return PassBatches(self)

    def __len__(self) -> int:
        if self._rng_mode == ITERABLE:
            return int(super().__len__())
        return self._rng_len()

    def __iter__(self) -> Any:
        current = self._rng_begin()
        load_dataset_state(self.dataset, current)
        iterator = super().__iter__()
        lean = self._rng_mode != ITERABLE and type(iterator).__next__ is _BaseDataLoaderIter.__next__
        iterator = count_batches(iterator, current, _next_batch if lean else None)
        if self._rng_mode == ITERABLE:
            skip_to_start(iterator, current)
        return iterator

    def _get_iterator(self) -> Any:
        # What the iterator and its workers take from the loader while it is built: the
        # collate_fn seeded per batch, and a base seed derived for this epoch.
        current = self._rng_pending
        user = (self.collate_fn, self.generator, self.worker_init_fn)
        collate = self.collate_fn
        if self._rng_mode != ITERABLE:
            own = collate not in (torch_data.default_collate, torch_data.default_convert)
            if not self._rng_batching:
                collate = Unbatch(collate)
            if own or self._rng_hold:  # randomness in the user's collate_fn (mixup) is seeded per batch
                collate = SeededCollate(collate)  # (and it puts back what a held batch seeded)
        self.collate_fn = collate
        self.worker_init_fn = WorkerScopes(self.worker_init_fn)
        if self.generator is None and current is not None:
            base = torch.Generator()
            parts = (*self._rng_parts, "#workers", str(current.epoch))
            material = derive_bytes(current.root, parts, "torch")
            base.manual_seed(int.from_bytes(material[:8], "big") >> 1)
            self.generator = base
        self._rng_building = True
        try:
            if self._rng_mode == ITERABLE and self.num_workers == 0 and current is not None:
                return self._rng_iterable_here(current)
            with preserve_streams():
                iterator = super()._get_iterator()
            fetcher = getattr(iterator, "_dataset_fetcher", None)
            if type(fetcher) is _MapDatasetFetcher and fetcher.auto_collation:  # num_workers=0
                iterator._dataset_fetcher = SeededFetcher(fetcher)  # type: ignore[attr-defined]
            return iterator
        finally:
            self.collate_fn, self.generator, self.worker_init_fn = user
            self._rng_building = False

    def _rng_iterable_here(self, current: Pass) -> Any:
        """An IterableDataset read in this process: ``iter(dataset)`` and every ``next``
        see the sample streams seeded from (root, loader path, epoch, worker 0), swapped in
        around each ``next`` so that training and loading do not shift each other."""
        parts = (*self._rng_parts, "#worker", str(current.epoch), "0")
        with preserve_streams(), seeded(current.root, parts):
            iterator = super()._get_iterator()
            inner = SEEDER.save()
        fetcher = iterator._dataset_fetcher  # type: ignore[attr-defined]
        fetcher.dataset_iter = Isolated(fetcher.dataset_iter, inner)
        return iterator

    def _rng_seed_sampler_generators(self, root: int, parts: tuple[str, ...]) -> Any:
        return _seeding_generators(self._rng_source, root, parts)

def _next_batch(iterator: Any) -> Any:
    """torch's ``__next__`` of a map-style loader's iterator, without its ``record_function``
    when no profiler is on (5 us a batch, as much as what seeding a batch adds); under a
    profiler, torch's own, so the profile shows the loader as usual."""
    if _profiler_enabled():
        return _BaseDataLoaderIter.__next__(iterator)
    if iterator._sampler_iter is None:
        iterator._reset()
    data = iterator._next_data()
    iterator._num_yielded += 1
    return data


class _OrderSampler(OrderPart, torch_data.Sampler[int]):  # type: ignore[misc,name-defined]
    """``loader.sampler`` of a loader that uses rngstate's own order: ``len``, ``set_epoch``
    (the loader's) and the shard; iterating it raises (see ``OrderPart``)."""

    @property
    def rank(self) -> int:
        """This process's shard (see ``world_size``)."""
        return int(self._loader._rng_rank)

    @property
    def world_size(self) -> int:
        """Shards the epoch is split into (1: every rank loads everything)."""
        return int(self._loader._rng_world_size)




@contextlib.contextmanager
def _seeding_generators(source: Any, root: int, parts: tuple[str, ...]) -> Iterator[None]:
    """Seed the ``torch.Generator`` a sampler owns (RandomSampler, WeightedRandomSampler,
    SubsetRandomSampler take one) from (root, parts) for the block, then put it back."""
    found: list[tuple[Any, Any]] = []
    for owner in (source, getattr(source, "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(g is not generator for g, _ in found):
            found.append((generator, generator.get_state()))
    for generator, _state in found:
        material = derive_bytes(root, parts, "torch.Generator")
        generator.manual_seed(int.from_bytes(material[:8], "big") >> 1)
    try:
        yield
    finally:
        for generator, state in found:
            generator.set_state(state)



__all__ = ["DataLoader", "generator", "init_by_name"]
