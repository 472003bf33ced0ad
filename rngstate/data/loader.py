"""The loader mixin: what rngstate.torch.DataLoader and rngstate.paddle.DataLoader add to their
framework's DataLoader.

Each ``iter(loader)`` is a *pass*: one epoch (or the rest of one, right after a restored
position), whose batches of indices come from one of three sources:

* ``order``: rngstate's own order (:class:`~rngstate.data.sampler.ResumableSampler`), sharded
  by rank like ``DistributedSampler``;
* ``sampler`` / ``batch_sampler``: the user's, iterated with the global generators (and the
  sampler's own ``generator``) seeded from (root, loader path, epoch), so that replaying it
  gives the same epoch again; the sampler decides about ranks.

Batches are :class:`~rngstate.data.wrappers.SeededBatch` lists, which seed each sample as the
framework's fetcher reads them.  The framework iterator counts the batches the training loop
took (:func:`count_batches`), which is the position ``state_dict`` saves.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

from rngstate import _check
from rngstate.data.sampler import ResumableSampler, SamplerState, check_count, sampler_at, shard, share
from rngstate.data.seeding import SEED_PER as SEED_PER_MODES
from rngstate.data.seeding import check_seed_per, seeded
from rngstate.data.wrappers import SeededBatch
from rngstate.derive import MAX_SEED, split_path
from rngstate.errors import DataLoaderError, DataLoaderTypeError, InvalidStateError
from rngstate.runtime import RUNTIME

logger = logging.getLogger(__name__)

ORDER, SAMPLER, BATCH_SAMPLER, ITERABLE = "order", "sampler", "batch_sampler", "iterable"
ITERABLE_FORMAT = "rngstate.loader.iterable"
DATASET_STATE, FAST_FORWARD = "dataset_state_dict", "fast_forward"
SEED_PER = "seed_per"  # the state_dict key of the loader's seeding mode


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


_COUNTING: dict[type, type] = {}


def count_batches(iterator: Any, current: Pass) -> Any:
    """Make the framework's own iterator report each batch it hands the loop to ``current``.

    The iterator keeps its type (a subclass of it is swapped in), so code that checks it or
    reaches into it keeps working; a persistent-workers iterator is reported to its new pass.
    """
    base = type(iterator)
    if base not in _COUNTING.values():
        counting = _COUNTING.get(base)
        if counting is None:

            def counted_next(self: Any) -> Any:
                reported = self._rngstate_pass
                try:
                    batch = base.__next__(self)
                except StopIteration:
                    reported.finished = True
                    raise
                reported.taken += 1
                return batch

            counting = type(base.__name__, (base,), {"__next__": counted_next, "__module__": base.__module__})
            counting.__qualname__ = base.__qualname__
            _COUNTING[base] = counting
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


class ResumableLoader:
    """Mixed in before the framework's DataLoader class; see ``rngstate.torch.DataLoader``."""

    _rng_mode: str = ORDER

    def _rng_setup(
        self,
        dataset: Any,
        *,
        name: str,
        shuffle: bool,
        batch_size: int | None,
        drop_last: bool,
        source: Any = None,
        mode: str = ORDER,
        rank: int | None = None,
        world_size: int | None = None,
        group: Any = None,
        seed_per: str = "sample",
    ) -> None:
        """Record what the passes need; call before the framework's ``__init__``."""
        if not isinstance(name, str):
            raise DataLoaderTypeError(f"name must be a str, got {type(name).__name__}")
        self._rng_parts = RUNTIME.current_parts() + split_path(name)
        self._rng_path = "/".join(self._rng_parts)
        self._rng_dataset = dataset
        self._rng_shuffle = bool(shuffle)
        self._rng_batch_size = batch_size
        self._rng_drop_last = bool(drop_last)
        self._rng_mode = mode
        # Saved by state_dict and checked by load_state_dict: resuming needs the same mode.
        self._rng_seed_per = check_seed_per(seed_per)
        self._rng_source = source  # the user's sampler or batch_sampler
        if mode == ORDER:
            self._rng_rank, self._rng_world_size = shard(rank, world_size, group)
        else:
            self._rng_rank, self._rng_world_size = 0, 1  # the user's sampler decides
        self._rng_orders: ResumableSampler | None = None
        self._rng_drawn: tuple[int, int, list[Any]] | None = None  # (epoch, root, sampler output)
        self._rng_epoch = 0
        self._rng_start: int | None = None  # set_epoch's start for the next pass
        self._rng_restored: SamplerState | IterableState | None = None
        self._rng_last: Pass | None = None
        self._rng_pending: Pass | None = None

    # -- where the next pass starts ---------------------------------------------------------

    def _rng_plan(self) -> tuple[int, int]:
        """(epoch, start) of the next pass, without committing to it."""
        restored = self._rng_restored
        if isinstance(restored, IterableState):
            if restored.finished and self._rng_start is None:
                return restored.epoch + 1, 0
            return restored.epoch, restored.batches
        if restored is not None:
            # A finished saved epoch moves on, unless set_epoch asked for that epoch again.
            pinned = self._rng_start is not None
            left = self._rng_remaining(restored.epoch, restored.position, restored.root_seed)
            if not pinned and left is False:
                return restored.epoch + 1, 0
            return restored.epoch, restored.position
        if self._rng_start is not None:
            return self._rng_epoch, self._rng_start
        last = self._rng_last
        return (self._rng_epoch, 0) if last is None else (last.epoch + 1, 0)

    def _rng_remaining(self, epoch: int, start: int, root: int | None) -> bool | None:
        """Whether a pass from ``start`` has batches left (None: unknown without drawing)."""
        length = self._rng_epoch_length(epoch, root)
        if length is None:
            return None
        least = self._rng_batch_size if self._rng_drop_last and self._rng_batch_size else 1
        return length - start >= least

    def _rng_epoch_length(self, epoch: int, root: int | None) -> int | None:
        if self._rng_mode == ORDER:
            return share(self._rng_n(), self._rng_world_size)
        if self._rng_mode == SAMPLER:
            try:
                return len(self._rng_source)
            except TypeError:
                return None
        if root is None:
            return None
        return sum(len(batch) for batch in self._rng_draw(epoch, root))

    def _rng_begin(self) -> Pass:
        """Commit to the next pass (iter() calls it); checks the root seed."""
        epoch, start = self._rng_plan()
        root = RUNTIME.require_root()
        restored = self._rng_restored
        if restored is not None and start > 0 and restored.root_seed not in (None, root):
            raise InvalidStateError(
                f"{self._rng_path}: the saved position {start} of epoch {epoch} belongs to root "
                f"seed {restored.root_seed}, but the root seed is now {root}; restore the RNG state "
                "saved with it (rngstate.restore) before iterating, or set_epoch() another epoch"
            )
        current = Pass(epoch, start, root)
        if isinstance(restored, IterableState) and start > 0 and restored.resume == DATASET_STATE:
            current.dataset_state = restored.dataset_state
        self._rng_restored = None
        self._rng_start = None
        self._rng_epoch = epoch
        self._rng_last = self._rng_pending = current
        return current

    def _rng_take_pass(self) -> Pass:
        """The pass iter(loader) just began, or a new one for a direct iter() of the batches."""
        current, self._rng_pending = self._rng_pending, None
        return current if current is not None else self._rng_begin()

    # -- the batches of a pass --------------------------------------------------------------

    def _rng_n(self) -> int:
        """The dataset's length now (a growing dataset grows the next pass)."""
        try:
            return len(self._rng_dataset)
        except TypeError:
            raise DataLoaderTypeError(
                f"the dataset ({type(self._rng_dataset).__name__}) has no __len__; a map-style "
                "dataset needs one (an IterableDataset goes to rngstate.torch.DataLoader as is)"
            ) from None

    def _rng_order(self, epoch: int) -> Any:
        n = self._rng_n()
        sampler = self._rng_orders
        if sampler is None or sampler.n != n:
            sampler = self._rng_orders = self._rng_order_probe()
        return sampler.order(epoch)

    def _rng_draw(self, epoch: int, root: int) -> list[Any]:
        """The user's sampler (or batch sampler) output for ``epoch``, drawn with the global
        generators and its own generator seeded from (root, loader path, epoch)."""
        drawn = self._rng_drawn
        if drawn is not None and drawn[0] == epoch and drawn[1] == root:
            return drawn[2]
        parts = (*self._rng_parts, "#sampler", str(epoch))
        with seeded(root, parts), self._rng_seed_sampler_generators(root, parts):
            items = list(self._rng_source)
        self._rng_drawn = (epoch, root, items)
        return items

    def _rng_seed_sampler_generators(self, root: int, parts: tuple[str, ...]) -> Any:
        """A context in which generators the user's sampler owns are seeded (frameworks
        override it: torch seeds ``sampler.generator``)."""
        return contextlib.nullcontext()

    def _rng_batches(self, current: Pass) -> Iterator[SeededBatch]:
        epoch, start, root = current.epoch, current.start, current.root
        size = self._rng_batch_size or 1
        step, offset = 1, 0
        if self._rng_mode == ORDER:
            order = self._rng_order(epoch)
            step, offset = self._rng_world_size, self._rng_rank
            current.length = len(order)
            chunks = _chunks(order.tolist(), start, size, self._rng_drop_last)
        elif self._rng_mode == SAMPLER:
            indices = self._rng_draw(epoch, root)
            replicas, rank = _replica_of(self._rng_source)
            step, offset = replicas, rank
            current.length = len(indices)
            chunks = _chunks(indices, start, size, self._rng_drop_last)
        else:
            batches = self._rng_draw(epoch, root)
            step, offset = _replica_of(self._rng_source)
            current.length = sum(len(batch) for batch in batches)
            chunks = _skip_batches(batches, start, self._rng_path)
        return _seeded_batches(self._rng_parts, current, chunks, step, offset, self._rng_seed_per)

    def _rng_len(self, current: Pass | None = None) -> int:
        """Batches of the next pass (``len(loader)``: the rest of the epoch right after a
        restored position), or of ``current``."""
        epoch, start = self._rng_plan() if current is None else (current.epoch, current.start)
        size = self._rng_batch_size or 1
        if self._rng_mode == BATCH_SAMPLER:
            root = current.root if current is not None else getattr(self._rng_restored, "root_seed", None)
            if start == 0 or root is None:
                return len(self._rng_source)
            return sum(1 for _ in _skip_batches(self._rng_draw(epoch, root), start, ""))
        length = self._rng_epoch_length(epoch, None)
        if length is None:
            raise DataLoaderTypeError(f"{self._rng_path}: the sampler has no __len__")
        left = max(length - start, 0)
        return left // size if self._rng_drop_last else -(-left // size)

    # -- epoch, position and state -----------------------------------------------------------

    def set_epoch(self, epoch: int, start: int | None = None) -> None:
        """Make the next iteration run ``epoch`` (from sample ``start``; ``None``: from the
        beginning, or from the saved position right after ``load_state_dict`` of that epoch).
        A sampler you passed that has ``set_epoch`` gets it too."""
        epoch = check_count(epoch, "set_epoch: epoch")
        restored = self._rng_restored
        if start is None and restored is not None and restored.epoch == epoch:
            # Continue the saved epoch where it stopped.
            self._rng_start = restored.batches if isinstance(restored, IterableState) else restored.position
        else:
            self._rng_restored = None
            self._rng_epoch, self._rng_start = epoch, check_count(start or 0, "set_epoch: start")
        for source in (self._rng_source, getattr(self._rng_source, "sampler", None)):
            set_source_epoch = getattr(source, "set_epoch", None)
            if callable(set_source_epoch):
                set_source_epoch(epoch)

    @property
    def epoch(self) -> int:
        """The epoch of the current (or last) iteration."""
        return self._rng_epoch

    @property
    def position(self) -> int:
        """Samples of the current epoch (this rank's share) the training loop has taken."""
        restored = self._rng_restored
        if restored is not None:
            return restored.batches if isinstance(restored, IterableState) else restored.position
        last = self._rng_last
        if last is None:
            return self._rng_start or 0
        return last.taken if self._rng_mode == ITERABLE else last.position()

    def state_dict(self) -> dict[str, Any]:
        """Epoch and position as plain data, for the checkpoint.

        After a pass has begun, what the training loop took of it (prefetched batches do not
        count); before, what ``set_epoch`` or ``load_state_dict`` set up.
        """
        restored = self._rng_restored
        if restored is not None:
            return self._rng_with_mode(restored.to_dict())
        if self._rng_mode == ITERABLE:
            return self._rng_iterable_state().to_dict()
        last = self._rng_last
        if last is None or self._rng_start is not None:
            epoch, position, root = self._rng_epoch, self._rng_start or 0, RUNTIME.root
        else:
            epoch, position, root = last.epoch, last.position(), last.root
        return self._rng_with_mode(SamplerState(
            self._rng_path,
            self._rng_n(),
            self._rng_shuffle,
            epoch,
            position,
            root,
            self._rng_world_size,
        ).to_dict())

    def _rng_with_mode(self, state: dict[str, Any]) -> dict[str, Any]:
        # seed_per decides every sample's randomness: a resumed loader must use the same.
        if self._rng_mode == ITERABLE:
            return state
        return {**state, SEED_PER: self._rng_seed_per}

    def _rng_iterable_state(self) -> IterableState:
        last, workers = self._rng_last, int(getattr(self, "num_workers", 0))
        if last is None or self._rng_start is not None:
            epoch, batches, finished, root = self._rng_epoch, self._rng_start or 0, False, RUNTIME.root
        else:
            epoch, batches, finished, root = last.epoch, last.taken, last.finished, last.root
        dataset = self._rng_dataset
        own_state = callable(getattr(dataset, "state_dict", None)) and callable(
            getattr(dataset, "load_state_dict", None)
        )
        # Workers iterate copies of the dataset whose state this process cannot see.
        if own_state and workers == 0 and batches > 0 and not finished:
            return IterableState(
                self._rng_path, epoch, batches, finished, root, workers, DATASET_STATE, dataset.state_dict()
            )
        return IterableState(self._rng_path, epoch, batches, finished, root, workers, FAST_FORWARD, None)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next iteration (or ``set_epoch`` of the saved
        epoch) starts at the saved position.  Raises InvalidStateError if it does not fit."""
        where = f"{self._rng_path}.load_state_dict"
        if self._rng_mode == ITERABLE:
            saved_iterable = IterableState.from_dict(state, where)
            if saved_iterable.path != self._rng_path:
                raise InvalidStateError(
                    f"{where}: the state does not belong here: it was saved by {saved_iterable.path!r}, "
                    f"this is {self._rng_path!r}"
                )
            workers = int(getattr(self, "num_workers", 0))
            mid_epoch = saved_iterable.batches > 0 and not saved_iterable.finished
            if mid_epoch and saved_iterable.num_workers != workers:
                raise DataLoaderError(
                    f"{where}: the state was saved mid-epoch with num_workers={saved_iterable.num_workers}, "
                    f"this loader has num_workers={workers}; an IterableDataset's stream is split by "
                    "worker, so resume with the same num_workers (or start the next epoch)"
                )
            self._rng_restored = saved_iterable
            self._rng_start = None
            self._rng_epoch = saved_iterable.epoch
            return
        state = self._rng_check_mode(state, where)
        saved = SamplerState.from_dict(state, where)
        problems = []
        if saved.path != self._rng_path:
            problems.append(f"it was saved by {saved.path!r}, this is {self._rng_path!r}")
        if saved.shuffle != self._rng_shuffle:
            problems.append(
                f"it was saved with shuffle={saved.shuffle}, this has shuffle={self._rng_shuffle}"
            )
        if saved.n != self._rng_n():  # any order: sampler= and batch_sampler= ones too
            problems.append(f"it covers {saved.n} samples, this dataset has {self._rng_n()}")
        if problems:
            raise InvalidStateError(f"{where}: the state does not belong here: " + "; ".join(problems))
        if self._rng_mode == ORDER:
            # Borrow the sampler's rules for another world size (positions count one rank's share).
            probe = self._rng_order_probe()
            probe.load_state_dict(state)
            saved = SamplerState(
                saved.path,
                saved.n,
                saved.shuffle,
                probe.epoch,
                probe.position,
                saved.root_seed,
                self._rng_world_size,
            )
        self._rng_restored = saved
        self._rng_start = None
        self._rng_epoch = saved.epoch

    def _rng_check_mode(self, state: Any, where: str) -> Any:
        """The sampler part of ``state``, once its ``seed_per`` (absent in a ResumableSampler's
        state) is found to be this loader's."""
        if not isinstance(state, dict):
            return state
        saved = state.get(SEED_PER, "sample")  # absent: a ResumableSampler's, seeded per sample
        if not isinstance(saved, str) or saved not in SEED_PER_MODES:
            raise InvalidStateError(
                f"{where}: seed_per must be 'sample' or 'batch', got {_check.show(saved)}"
            )
        if saved != self._rng_seed_per:
            raise DataLoaderError(
                f"{where}: the state was saved by a loader with seed_per={saved!r}, this one has "
                f"seed_per={self._rng_seed_per!r}; every sample's randomness depends on it, so "
                f"build the loader with seed_per={saved!r} to resume"
            )
        return {key: value for key, value in state.items() if key != SEED_PER}

    def _rng_order_probe(self) -> ResumableSampler:
        return sampler_at(
            self._rng_parts,
            self._rng_n(),
            shuffle=self._rng_shuffle,
            rank=self._rng_rank,
            world_size=self._rng_world_size,
        )


def _seeded_batches(
    parts: tuple[str, ...],
    current: Pass,
    chunks: Iterator[tuple[int, list[Any]]],
    step: int,
    offset: int,
    seed_per: str,
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
        )


def _chunks(indices: list[Any], start: int, size: int, drop_last: bool) -> Iterator[tuple[int, list[Any]]]:
    """(first position, indices) of each batch from position ``start``."""
    end = len(indices)
    for first in range(start, end, size):
        chunk = indices[first : first + size]
        if drop_last and len(chunk) < size:
            return
        yield first, chunk


def _skip_batches(batches: list[Any], start: int, where: str) -> Iterator[tuple[int, list[Any]]]:
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


def _replica_of(sampler: Any) -> tuple[int, int]:
    """(replicas, rank) of a distributed sampler (torch's DistributedSampler, Paddle's
    DistributedBatchSampler), else (1, 0): positions in the whole epoch then seed the samples,
    as in the loader's own sharding, so ranks do not share augmentations."""
    for replicas_name, rank_name in (("num_replicas", "rank"), ("nranks", "local_rank")):
        replicas, rank = getattr(sampler, replicas_name, None), getattr(sampler, rank_name, None)
        if type(replicas) is int and type(rank) is int and 0 <= rank < replicas:
            return replicas, rank
    return 1, 0


def check_batch_size(batch_size: Any) -> int | None:
    """Return ``batch_size`` if it is a positive int or None, else raise DataLoaderError (a
    ValueError, as torch raises) or DataLoaderTypeError for a non-int."""
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise DataLoaderTypeError(
            f"batch_size must be a positive int or None, got {type(batch_size).__name__}"
        )
    if batch_size < 1:
        raise DataLoaderError(f"batch_size must be a positive int or None, got {batch_size}")
    return batch_size


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


__all__ = [
    "BATCH_SAMPLER",
    "ITERABLE",
    "ORDER",
    "SAMPLER",
    "LoaderPart",
    "OrderPart",
    "Pass",
    "ResumableLoader",
    "count_batches",
    "lazy_loader",
    "load_dataset_state",
    "skip_to_start",
]
