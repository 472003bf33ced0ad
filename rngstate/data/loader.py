"""The loader mixin: what rngstate.torch.DataLoader and rngstate.paddle.DataLoader add to their
framework's DataLoader (sampler, epoch, position, state)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from rngstate import _check
from rngstate.data.sampler import ResumableSampler
from rngstate.data.seeding import SEEDER
from rngstate.data.workers import LoaderWorkerInit
from rngstate.data.wrappers import SampleKey, SeededCollate, SeededDataset
from rngstate.derive import split_path
from rngstate.errors import DataLoaderError
from rngstate.runtime import RUNTIME


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

    def _min_remaining(self) -> int:
        return self.batch_size if self.drop_last and self.batch_size else 1

    def __iter__(self) -> Iterator[SampleKey]:  # type: ignore[override]
        # The loader called _begin() already; the framework may call iter() later, lazily.
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
        SEEDER.streams()  # resolved here once, so forked workers inherit it instead of each redoing it
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


def loader_parts(name: str) -> tuple[str, ...]:
    """Scope path of a loader called ``name`` created here."""
    return RUNTIME.current_parts() + split_path(name)
