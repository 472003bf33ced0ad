"""PaddlePaddle helpers: a drop-in ``paddle.io.DataLoader`` that resumes exactly.

``import rngstate.paddle`` does not import paddle; ``rngstate.paddle.DataLoader`` does, on first
use.

>>> import rngstate, rngstate.paddle
>>> _ = rngstate.seed_everything(0)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from rngstate.data.loader import ResumableLoader, ResumingIterator, lazy_loader
from rngstate.data.seeding import preserve_streams
from rngstate.errors import DataLoaderError

if TYPE_CHECKING:
    DataLoader: Any

_UNSUPPORTED = {
    "batch_sampler": "the order and the seeds come from rngstate (name=, shuffle=); to keep your "
    "own, use paddle.io.DataLoader with rngstate.ResumableSampler in a paddle.io.BatchSampler and "
    "worker_init_fn=rngstate.worker_init_fn",
    "feed_list": "static-graph feeding is not supported; use dynamic mode (return_list=True)",
}


class _SameThreadBatches:
    """Batches for ``num_workers=0``, loaded in the calling thread.

    Paddle's own single-process iterator loads in a background thread while the training loop
    runs: random calls in ``__getitem__`` would then race with dropout on the same global
    generators.  Here each batch is loaded when ``next`` is called, and then converted the way
    Paddle's iterator does (arrays become Tensors, the batch structure is kept).
    """

    def __init__(self, loader: Any, modules: _PaddleModules) -> None:
        self._batches = iter(loader.batch_sampler)
        self._dataset = loader.dataset
        self._collate = loader.collate_fn or modules.default_collate_fn
        self._modules = modules
        self._place = loader.places[0] if loader.places else None
        self._length = len(loader.batch_sampler)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __len__(self) -> int:
        return self._length

    def __next__(self) -> Any:
        keys = next(self._batches)
        batch = self._collate(self._dataset.__getitems__(keys))
        modules = self._modules
        slots, structure = modules.flatten_batch(batch)
        if not slots:
            return structure
        tensor_type, to_tensor = modules.paddle.Tensor, modules.paddle.to_tensor
        tensors = [
            slot if isinstance(slot, tensor_type) else to_tensor(slot, place=self._place)
            for slot in slots
        ]
        return modules.restore_batch(tensors, structure)


class _PaddleModules:
    """What the loader uses from paddle, imported on first use of rngstate.paddle.DataLoader."""

    def __init__(self) -> None:
        self.paddle = importlib.import_module("paddle")
        self.io = importlib.import_module("paddle.io")
        # The helpers Paddle's own single-process iterator uses to turn a collated batch into
        # Tensors; reused so that num_workers=0 returns exactly what Paddle would.
        flat = importlib.import_module("paddle.io.dataloader.flat")
        self.flatten_batch = flat._flatten_batch
        self.restore_batch = flat._restore_batch
        self.default_collate_fn = importlib.import_module("paddle.io.dataloader.collate").default_collate_fn


def _build_dataloader() -> type:
    modules = _PaddleModules()
    io = modules.io

    class DataLoader(ResumableLoader, io.DataLoader):  # type: ignore[misc,name-defined]
        """A ``paddle.io.DataLoader`` whose order, per-sample randomness and position come from
        rngstate, so training resumes bit-for-bit, even mid-epoch.

        Same behaviour as ``rngstate.torch.DataLoader``: the order of epoch ``e`` derives from
        (root seed, scope path, ``name``, ``e``); each sample's loading sees Python ``random``,
        NumPy and paddle seeded from (root seed, loader path, epoch, position), whatever the
        worker; creating an iterator does not move NumPy's global generator (Paddle draws its
        workers' base seed from it); ``set_epoch``, ``state_dict`` and ``load_state_dict``
        resume mid-epoch; under data parallelism each rank loads its shard (``rank`` and
        ``world_size`` as for ``rngstate.ResumableSampler``).  With ``num_workers=0`` batches
        are loaded in the calling thread.

        Other keywords go to ``paddle.io.DataLoader``; ``batch_sampler`` and ``feed_list`` are
        not accepted, ``batch_size=None`` neither.

        >>> import rngstate, rngstate.paddle, numpy as np
        >>> _ = rngstate.seed_everything(0)
        >>> loader = rngstate.paddle.DataLoader(np.arange(10.0), name="train", batch_size=4,
        ...                                     shuffle=True)
        >>> loader.set_epoch(0)
        >>> first = next(iter(loader))
        >>> checkpoint = {"loader": loader.state_dict(), "rng": rngstate.capture().to_dict()}
        """

        def __init__(
            self,
            dataset: Any,
            *,
            name: str = "loader",
            batch_size: int = 1,
            shuffle: bool = False,
            num_workers: int = 0,
            collate_fn: Callable[[list[Any]], Any] | None = None,
            drop_last: bool = False,
            worker_init_fn: Callable[[int], Any] | None = None,
            rank: int | None = None,
            world_size: int | None = None,
            return_list: bool = True,
            **kwargs: Any,
        ) -> None:
            for key, why in _UNSUPPORTED.items():
                if kwargs.get(key) is not None:
                    raise DataLoaderError(f"rngstate.paddle.DataLoader does not take {key}=: {why}")
            if not return_list:
                raise DataLoaderError(
                    "rngstate.paddle.DataLoader supports return_list=True (dynamic mode) only"
                )
            if batch_size is None:
                raise DataLoaderError(
                    "rngstate.paddle.DataLoader needs a batch_size (Paddle loads batch_size=None "
                    "without a sampler, so there are no positions to resume from)"
                )
            if isinstance(dataset, io.IterableDataset):
                raise DataLoaderError(
                    "rngstate.paddle.DataLoader needs a map-style dataset (__getitem__ and "
                    "__len__): an IterableDataset has no positions to resume from"
                )
            seeded, collate = self._rng_setup(
                dataset,
                name=name,
                shuffle=shuffle,
                batch_size=batch_size,
                drop_last=drop_last,
                rank=rank,
                world_size=world_size,
                collate_fn=collate_fn,
                worker_init_fn=worker_init_fn,
            )
            super().__init__(
                seeded,
                batch_sampler=io.BatchSampler(
                    sampler=self._rng_sampler, batch_size=batch_size, drop_last=bool(drop_last)
                ),
                collate_fn=collate,
                num_workers=num_workers,
                worker_init_fn=self._rng_worker_init,
                return_list=True,
                **kwargs,
            )
            self.batch_size = batch_size  # Paddle sets None when given a batch_sampler
            self.drop_last = bool(drop_last)

        def __iter__(self) -> Any:
            token = self._rng_begin()
            if self.num_workers == 0:
                iterator: Any = _SameThreadBatches(self, modules)
            else:
                # Paddle draws the workers' base seed from NumPy's global generator.
                with preserve_streams():
                    iterator = super().__iter__()
            return ResumingIterator(iterator, self._rng_sampler, token)

        def __call__(self) -> Any:
            return self.__iter__()

    return DataLoader


__getattr__ = lazy_loader(globals(), _build_dataloader)
