"""PaddlePaddle helpers: a drop-in ``paddle.io.DataLoader`` that resumes exactly.

``import rngstate.paddle`` imports paddle (``import rngstate`` alone imports no framework).

>>> import rngstate, rngstate.paddle
>>> _ = rngstate.seed_everything(0)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import paddle
import paddle.io as paddle_io
from paddle.io.dataloader import collate as paddle_collate
from paddle.io.dataloader import flat as paddle_flat

from rngstate.data.loader import (
    BATCH_SAMPLER,
    ITERABLE,
    ORDER,
    OrderPart,
    Pass,
    PassBatches,
    ResumableLoader,
    check_batch_size,
    count_batches,
    load_dataset_state,
    skip_to_start,
)
from rngstate.data.seeding import SEEDER, Isolated, preserve_streams, seeded
from rngstate.data.workers import LoaderWorkerInit
from rngstate.data.wrappers import SeededCollate, Unbatch
from rngstate.errors import DataLoaderError
from rngstate.initialize.paddle import init_by_name as init_by_name

_UNSUPPORTED = {
    "feed_list": "static-graph feeding is not supported; use dynamic mode (return_list=True)",
}


def _as_tensors(batch: Any, modules: _PaddleModules, place: Any) -> Any:
    """A collated batch converted the way Paddle's iterator does (arrays become Tensors, the
    batch structure is kept)."""
    slots, structure = modules.flatten_batch(batch)
    if not slots:
        return structure
    tensor_type, to_tensor = modules.paddle.Tensor, modules.paddle.to_tensor
    tensors = [slot if isinstance(slot, tensor_type) else to_tensor(slot, place=place) for slot in slots]
    return modules.restore_batch(tensors, structure)


class _SameThreadBatches:
    """Batches for ``num_workers=0``, loaded in the calling thread.

    Paddle's own single-process iterator loads in a background thread while the training loop
    runs: random calls in ``__getitem__`` would then race with dropout on the same global
    generators.  Here each batch is loaded when ``next`` is called, and then converted the way
    Paddle's iterator does.
    """

    def __init__(self, loader: Any, batches: Any, modules: _PaddleModules) -> None:
        self._batches = iter(batches)
        self._dataset = loader.dataset
        collate = loader.collate_fn
        if loader._rng_unbatched:  # one-sample batches, each sample handed on alone
            convert = modules.default_convert_fn if collate is None else collate
            self._collate: Any = Unbatch(convert) if collate is None else SeededCollate(Unbatch(convert))
        else:
            self._collate = modules.default_collate_fn if collate is None else SeededCollate(collate)
        self._modules = modules
        self._place = loader.places[0] if loader.places else None
        self._length = len(batches)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __len__(self) -> int:
        return self._length

    def __next__(self) -> Any:
        indices = next(self._batches)
        dataset = self._dataset
        batch = self._collate([dataset[index] for index in indices])
        return _as_tensors(batch, self._modules, self._place)


class _SameThreadStream:
    """An IterableDataset read in the calling thread (``num_workers=0``): ``iter(dataset)`` and
    every ``next`` see the sample streams seeded from (root, loader path, epoch, worker 0),
    swapped in around each ``next``, so that training and loading do not shift each other;
    batches are cut and collated as Paddle's fetcher does (``drop_last`` drops a short last
    one; ``batch_size=None`` hands on single samples)."""

    def __init__(self, loader: Any, current: Pass, modules: _PaddleModules) -> None:
        parts = (*loader._rng_parts, "#worker", str(current.epoch), "0")
        with preserve_streams(), seeded(current.root, parts):
            samples = iter(loader.dataset)
            inner = SEEDER.save()
        self._samples = Isolated(samples, inner)
        self._size: int | None = loader.batch_size
        self._drop_last = bool(loader.drop_last)
        default = modules.default_convert_fn if self._size is None else modules.default_collate_fn
        self._collate = loader.collate_fn or default
        self._modules = modules
        self._place = loader.places[0] if loader.places else None

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        size = self._size
        if size is None:
            batch = self._collate(next(self._samples))
        else:
            data = list(itertools.islice(self._samples, size))
            if not data or (self._drop_last and len(data) < size):
                raise StopIteration
            batch = self._collate(data)
        return _as_tensors(batch, self._modules, self._place)


class _PaddleModules:
    """What the loader uses from paddle."""

    def __init__(self) -> None:
        self.paddle = paddle
        self.io = paddle_io
        # The helpers Paddle's own single-process iterator uses to turn a collated batch into
        # Tensors; reused so that num_workers=0 returns exactly what Paddle would.
        self.flatten_batch: Any = paddle_flat._flatten_batch
        self.restore_batch: Any = paddle_flat._restore_batch
        self.default_collate_fn = paddle_collate.default_collate_fn
        self.default_convert_fn = paddle_collate.default_convert_fn


_MODULES = _PaddleModules()


class DataLoader(ResumableLoader, paddle_io.DataLoader):  # type: ignore[misc,name-defined]
    """``paddle.io.DataLoader`` (same arguments) whose order, per-sample randomness and
    position come from rngstate, so training resumes bit-for-bit, even mid-epoch.

    Same behaviour as ``rngstate.torch.DataLoader``: the order of epoch ``e`` derives from
    (root seed, scope path, ``name``, ``e``), or comes from your ``batch_sampler=`` drawn
    with the global generators seeded from (root seed, loader path, epoch); each sample's
    loading sees Python ``random``, NumPy and paddle seeded from (root seed, loader path,
    epoch, position), whatever the worker; each ``iter()`` is a whole epoch; creating an
    iterator does not move NumPy's global generator (Paddle draws its workers' base seed
    from it); ``set_epoch``, ``state_dict`` and ``load_state_dict`` resume mid-epoch; the
    loader's own order is sharded by rank (``rank``/``world_size``/``group`` as for
    ``rngstate.ResumableSampler``).  With ``num_workers=0`` batches are loaded in the
    calling thread.  An ``IterableDataset`` is read as by ``rngstate.torch.DataLoader``:
    worker ``w``'s stream seeded from (root seed, loader path, epoch, ``w``), resumed
    mid-epoch through the dataset's ``state_dict``/``load_state_dict`` (``num_workers=0``)
    or by replaying the epoch; a mid-epoch state needs the same ``num_workers``.
    ``batch_size=None`` hands on single samples (and, unlike Paddle, honours ``shuffle``).
    ``feed_list`` (static graph) is not accepted.  ``seed_per="batch"`` seeds once per
    batch (faster on cheap samples; a sample's randomness then depends on ``batch_size``;
    ``state_dict`` records it and ``load_state_dict`` refuses a state of the other mode).

    >>> import rngstate, rngstate.paddle, numpy as np
    >>> _ = rngstate.seed_everything(0)
    >>> loader = rngstate.paddle.DataLoader(np.arange(10.0), batch_size=4, shuffle=True,
    ...                                     name="train")
    >>> first = next(iter(loader))
    >>> checkpoint = {"loader": loader.state_dict(), "rng": rngstate.capture().to_dict()}
    """

    worker_init_fn: Any
    batch_sampler: Any
    collate_fn: Any
    _persistent_workers: bool

    def __init__(
        self,
        dataset: Any,
        feed_list: Any = None,
        places: Any = None,
        return_list: bool = True,
        batch_sampler: Any = None,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        collate_fn: Any = None,
        num_workers: int = 0,
        *args: Any,
        name: str = "loader",
        rank: int | None = None,
        world_size: int | None = None,
        group: Any = None,
        seed_per: str = "sample",
        **kwargs: Any,
    ) -> None:
        if feed_list is not None or not return_list:
            why = _UNSUPPORTED["feed_list"]
            raise DataLoaderError(f"rngstate.paddle.DataLoader does not take feed_list=: {why}")
        iterable = isinstance(dataset, paddle_io.IterableDataset)
        own_order = batch_sampler is None and not iterable
        mode = ITERABLE if iterable else ORDER if own_order else BATCH_SAMPLER
        self._rng_setup(
            dataset,
            name=name,
            shuffle=bool(shuffle),
            batch_size=check_batch_size(batch_size) if own_order else None,
            drop_last=drop_last,
            source=batch_sampler,
            mode=mode,
            rank=rank,
            world_size=world_size,
            group=group,
            seed_per=seed_per,
        )
        self.seed_per = seed_per
        if iterable:  # Paddle checks the arguments (no shuffle, no batch_sampler) and batches
            super().__init__(
                dataset, feed_list, places, return_list, batch_sampler, batch_size, shuffle,
                drop_last, collate_fn, num_workers, *args, **kwargs,
            )
            return
        if own_order:
            # batch_size=None: one-sample batches, each sample handed on alone (Unbatch).
            batch_sampler = paddle_io.BatchSampler(
                sampler=_OrderSampler(self), batch_size=batch_size or 1, drop_last=bool(drop_last)
            )
        super().__init__(
            dataset, feed_list, places, return_list, batch_sampler, 1, False, False,
            collate_fn, num_workers, *args, **kwargs,
        )
        if own_order:
            self.batch_size = batch_size  # Paddle sets None when given a batch_sampler
            self.drop_last = bool(drop_last)
        self._rng_unbatched = own_order and batch_size is None
        if self._rng_unbatched:  # what Paddle's own loader shows for batch_size=None
            self.batch_sampler, self.auto_collate_batch = None, False

    _rng_unbatched = False

    def __len__(self) -> int:
        if self._rng_mode == ITERABLE:
            return int(super().__len__())  # Paddle raises: an IterableDataset has no length
        return self._rng_len()

    def __iter__(self) -> Any:
        current = self._rng_begin()
        if self._rng_mode == ITERABLE:
            return self._rng_iterable_pass(current)
        batches = PassBatches(self)
        if self.num_workers == 0:
            return count_batches(_SameThreadBatches(self, batches, _MODULES), current)
        # Paddle's iterators read these from the loader while they start; its workers'
        # base seed is drawn from NumPy's global generator, put back afterwards.
        user = (self.batch_sampler, self.collate_fn, self.worker_init_fn, self.auto_collate_batch)
        self.batch_sampler = batches
        if self._rng_unbatched:  # workers fetch one-sample batches and hand the sample on
            self.auto_collate_batch = True
            self.collate_fn = Unbatch(self.collate_fn or _MODULES.default_convert_fn)
        if user[1] is not None:
            self.collate_fn = SeededCollate(self.collate_fn)
        self.worker_init_fn = self._rng_worker_init(current)
        try:
            with preserve_streams():
                iterator = super().__iter__()
        finally:
            self.batch_sampler, self.collate_fn, self.worker_init_fn, self.auto_collate_batch = user
        return count_batches(iterator, current)

    def _rng_worker_init(self, current: Pass) -> LoaderWorkerInit:
        worker_init = LoaderWorkerInit(self.worker_init_fn, self._rng_parts)
        worker_init.root, worker_init.epoch = current.root, current.epoch
        return worker_init

    def _rng_iterable_pass(self, current: Pass) -> Any:
        """A pass over an IterableDataset: worker ``w``'s stream (``iter(dataset)`` and
        every sample) sees the generators seeded from (root, loader path, epoch, ``w``);
        a restored position is reached as the torch loader does (rngstate.data.loader)."""
        load_dataset_state(self.dataset, current)
        if self.num_workers == 0:
            iterator = count_batches(_SameThreadStream(self, current, _MODULES), current)
        else:
            user = (self.worker_init_fn, self._persistent_workers)
            self.worker_init_fn = self._rng_worker_init(current)
            # Persistent workers would start the next epoch without worker_init_fn, so
            # seeded for the epoch before: every pass starts its own, seeded for it.
            self._persistent_workers = False
            try:
                with preserve_streams():
                    iterator = count_batches(super().__iter__(), current)
            finally:
                self.worker_init_fn, self._persistent_workers = user
        skip_to_start(iterator, current)
        return iterator

    def __call__(self) -> Any:
        return self.__iter__()

class _OrderSampler(OrderPart, paddle_io.Sampler):  # type: ignore[misc,name-defined,type-arg]
    """The sampler inside ``loader.batch_sampler`` when rngstate's own order is used
    (iterating it raises: see ``OrderPart``)."""


from rngstate.paddle_fit import RNGStateCallback as RNGStateCallback  # noqa: E402  (imports paddle.callbacks)

__all__ = ["DataLoader", "RNGStateCallback", "init_by_name"]
