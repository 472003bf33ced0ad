"""A loader's passes: the state of an IterableDataset loader, one pass's bookkeeping, the
framework iterator counting the batches the training loop took, the parts a loader hands its
framework, and the batches of a pass as SeededBatch lists (see :mod:`rngstate.data.loader`)."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

from rngstate import _check
from rngstate.data.sampler import share
from rngstate.data.wrappers import SeededBatch
from rngstate.derive import MAX_SEED
from rngstate.errors import DataLoaderError, InvalidStateError

ORDER, SAMPLER, BATCH_SAMPLER, ITERABLE = "order", "sampler", "batch_sampler", "iterable"
ITERABLE_FORMAT = "rngstate.loader.iterable"
DATASET_STATE, FAST_FORWARD = "dataset_state_dict", "fast_forward"



@dataclass(frozen=True)
class IterableState:
    """Where a loader over an IterableDataset stands: batches taken of an epoch, and how a
    resume gets back there (``dataset_state_dict``: the dataset's own ``state_dict``, saved
    here; ``fast_forward``: the epoch is replayed with the same seeds and the batches skipped).

    >>> state = IterableState("train", 1, 3, False, 0, 2, FAST_FORWARD, None)
    >>> IterableState.from_dict(state.to_dict()) == state
    True
    """

    path: str
    epoch: int
    batches: int
    finished: bool
    root_seed: int | None
    num_workers: int
    resume: str
    dataset_state: Any

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the dataset's state as its ``state_dict`` gave it)."""
        return {"format": ITERABLE_FORMAT, "version": 1, **asdict(self)}

    @classmethod
    def from_dict(cls, state: Any, where: str = "IterableState") -> IterableState:
        """Validate a :meth:`to_dict`; raises :class:`~rngstate.errors.InvalidStateError`."""
        keys = ("format", "version", *(field.name for field in fields(cls)))
        _check.mapping(state, where, keys)
        _check.text(state["format"], f"{where}: format", (ITERABLE_FORMAT,))
        _check.integer(state["version"], f"{where}: version", 1, 1)
        for flag in ("finished",):
            if not isinstance(state[flag], bool):
                raise InvalidStateError(f"{where}: {flag} must be a bool, got {_check.show(state[flag])}")
        root = state["root_seed"]
        return cls(
            path=_check.text(state["path"], f"{where}: path"),
            epoch=_check.integer(state["epoch"], f"{where}: epoch", 0, 2**63),
            batches=_check.integer(state["batches"], f"{where}: batches", 0, 2**63),
            finished=state["finished"],
            root_seed=None if root is None else _check.integer(root, f"{where}: root_seed", 0, MAX_SEED),
            num_workers=_check.integer(state["num_workers"], f"{where}: num_workers", 0, 2**31),
            resume=_check.text(state["resume"], f"{where}: resume", (DATASET_STATE, FAST_FORWARD)),
            dataset_state=state["dataset_state"],
        )


def load_dataset_state(dataset: Any, current: Pass) -> None:
    """Before the framework iterator calls ``iter(dataset)``: put an IterableDataset back to the
    state saved with the position, when the resume goes through its own ``state_dict``."""
    if current.dataset_state is not None:
        dataset.load_state_dict(current.dataset_state)


def skip_to_start(iterator: Iterator[Any], current: Pass) -> None:
    """After the framework iterator over an IterableDataset was built: reach the saved
    position, by the dataset's restored state (nothing to skip) or by replaying the epoch with
    the same seeds and dropping the batches the training loop already took."""
    if current.dataset_state is not None:
        current.taken = current.start
        return
    for _ in range(current.start):
        try:
            next(iterator)
        except StopIteration:
            return


class Pass:
    """One iteration of a loader: its epoch, first position, root seed, and what was taken."""

    def __init__(self, epoch: int, start: int, root: int) -> None:
        self.epoch = epoch
        self.start = start
        self.root = root
        self.before = 0  # batches of the epoch before ``start``
        self.ends: list[int] = []  # sample position after each batch handed to the framework
        self.length: int | None = None  # samples in this rank's epoch, once known
        self.taken = 0  # batches the training loop took
        self.finished = False
        self.dataset_state: Any = None  # an IterableDataset's saved state_dict to resume from

    def position(self) -> int:
        """Samples of the epoch taken, as ``state_dict`` saves it (the whole epoch once done)."""
        if self.finished:
            return self.length if self.length is not None else (self.ends[-1] if self.ends else self.start)
        return self.ends[self.taken - 1] if self.taken else self.start


_COUNTING: dict[tuple[type, Any], type] = {}


def count_batches(iterator: Any, current: Pass, next_batch: Callable[[Any], Any] | None = None) -> Any:
    """Make the framework's own iterator report each batch it hands the loop to ``current``.

    The iterator keeps its type (a subclass of it is swapped in), so code that checks it or
    reaches into it keeps working; a persistent-workers iterator is reported to its new pass.
    ``next_batch(iterator)``, if given, stands in for the type's own ``__next__``.
    """
    base = type(iterator)
    if base not in _COUNTING.values():
        counting = _COUNTING.get((base, next_batch))
        if counting is None:
            step = base.__next__ if next_batch is None else next_batch

            def counted_next(self: Any) -> Any:
                reported = self._rngstate_pass
                try:
                    batch = step(self)
                except StopIteration:
                    reported.finished = True
                    raise
                reported.taken += 1
                return batch

            counting = type(base.__name__, (base,), {"__next__": counted_next, "__module__": base.__module__})
            counting.__qualname__ = base.__qualname__
            _COUNTING[base, next_batch] = counting
        iterator.__class__ = counting
    iterator._rngstate_pass = current
    return iterator


class LoaderPart:
    """What a loader hands its framework (its sampler, its batches): refers back to the loader
    weakly, so that no cycle keeps a loader, and the workers of its persistent iterator, alive
    after the program let go of it."""

    def __init__(self, loader: Any) -> None:
        self._ref = weakref.ref(loader)

    @property
    def _loader(self) -> Any:
        loader = self._ref()
        if loader is None:
            raise DataLoaderError("the DataLoader this belongs to no longer exists")
        return loader


class PassBatches(LoaderPart):
    """The batches a framework's iterator reads (torch's ``_index_sampler``, Paddle's batch
    sampler): those of the pass ``iter(loader)`` began.  torch's multiprocessing iterator asks
    twice while it starts (``__init__``, ``_reset``); both times get that pass."""

    _pass: Pass | None

    def __init__(self, loader: Any) -> None:
        super().__init__(loader)
        self._pass = None

    def __len__(self) -> int:
        return int(self._loader._rng_len(self._pass))

    def __iter__(self) -> Iterator[Any]:
        loader = self._loader
        if loader._rng_pending is not None or self._pass is None:
            self._pass = loader._rng_take_pass()
        self._pass.ends.clear()
        return iter(loader._rng_batches(self._pass))


class OrderPart(LoaderPart):
    """``loader.sampler`` of a loader that uses rngstate's own order (the frameworks' facades
    add their ``Sampler`` base).  The loader never iterates it: its batches come from the pass
    ``iter(loader)`` begins.  Whoever iterates it rebuilt the loader around it (accelerate's
    ``prepare`` or ``skip_first_batches``, a framework replacing the loader) and would get
    batches without per-sample seeds or a saved position; that is refused with what to do."""

    def __len__(self) -> int:
        loader = self._loader
        return share(loader._rng_n(), loader._rng_world_size)

    def __iter__(self) -> Iterator[int]:
        raise DataLoaderError(
            f"{self._loader._rng_path}: this rngstate loader's sampler is iterated by another "
            "DataLoader (accelerator.prepare, accelerate's skip_first_batches or a framework that "
            "rebuilt the loader), which cannot resume exactly. Iterate the rngstate loader itself: "
            "do not pass it to accelerator.prepare; register it with "
            "accelerator.register_for_checkpointing; move batches with .to(accelerator.device)"
        )

    def set_epoch(self, epoch: int) -> None:
        """The loader's ``set_epoch`` (what samplers offer to trainers)."""
        self._loader.set_epoch(epoch)



def seeded_batches(
    parts: tuple[str, ...],
    current: Pass,
    chunks: Iterator[tuple[int, list[Any]]],
    step: int,
    offset: int,
    seed_per: str,
    hold: bool = False,
) -> Iterator[SeededBatch]:
    """The batches of a pass as SeededBatch lists.  Not a method: the framework iterator holds
    this generator, and it must not keep the loader (and its persistent workers) alive."""
    ends = current.ends
    for first, indices in chunks:
        ends.append(first + len(indices))
        yield SeededBatch(
            indices,
            root=current.root,
            parts=parts,
            epoch=current.epoch,
            first=first * step + offset,
            step=step,
            seed_per=seed_per,
            hold=hold,
        )


def chunks(indices: list[Any], start: int, size: int, drop_last: bool) -> Iterator[tuple[int, list[Any]]]:
    """(first position, indices) of each batch from position ``start``."""
    end = len(indices)
    for first in range(start, end, size):
        chunk = indices[first : first + size]
        if drop_last and len(chunk) < size:
            return
        yield first, chunk


def skip_batches(batches: list[Any], start: int, where: str) -> Iterator[tuple[int, list[Any]]]:
    """(first position, indices) of each batch of a batch sampler's epoch from sample ``start``."""
    first = 0
    for batch in batches:
        indices = list(batch)
        if first >= start:
            yield first, indices
        elif first + len(indices) > start:
            raise DataLoaderError(
                f"{where}: the saved position {start} falls inside a batch of the batch sampler "
                f"(samples {first}..{first + len(indices) - 1}); the batch sampler does not "
                "replay the epoch it was saved in (does it draw from a generator of its own?)"
            )
        first += len(indices)


def replica_of(sampler: Any) -> tuple[int, int]:
    """(replicas, rank) of a distributed sampler (torch's DistributedSampler, Paddle's
    DistributedBatchSampler), else (1, 0): positions in the whole epoch then seed the samples,
    as in the loader's own sharding, so ranks do not share augmentations."""
    for replicas_name, rank_name in (("num_replicas", "rank"), ("nranks", "local_rank")):
        replicas, rank = getattr(sampler, replicas_name, None), getattr(sampler, rank_name, None)
        if type(replicas) is int and type(rank) is int and 0 <= rank < replicas:
            return replicas, rank
    return 1, 0


__all__ = [
    "BATCH_SAMPLER",
    "DATASET_STATE",
    "FAST_FORWARD",
    "ITERABLE",
    "ORDER",
    "SAMPLER",
    "IterableState",
    "LoaderPart",
    "OrderPart",
    "Pass",
    "PassBatches",
    "chunks",
    "count_batches",
    "load_dataset_state",
    "replica_of",
    "seeded_batches",
    "skip_batches",
    "skip_to_start",
]
