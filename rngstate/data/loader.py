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
from collections.abc import Iterator
from typing import Any

from rngstate import _check, guard
from rngstate.data.passes import (
    BATCH_SAMPLER,
    DATASET_STATE,
    FAST_FORWARD,
    ITERABLE,
    ORDER,
    SAMPLER,
    IterableState,
    LoaderPart,
    OrderPart,
    Pass,
    PassBatches,
    chunks,
    count_batches,
    load_dataset_state,
    replica_of,
    seeded_batches,
    skip_batches,
    skip_to_start,
)
from rngstate.data.progress import Progress
from rngstate.data.sampler import ResumableSampler, SamplerState, check_count, sampler_at, shard, share
from rngstate.data.seeding import SEED_PER as SEED_PER_MODES
from rngstate.data.seeding import check_seed_per, seeded
from rngstate.data.wrappers import SeededBatch
from rngstate.derive import split_path
from rngstate.errors import DataLoaderError, DataLoaderTypeError, InvalidStateError
from rngstate.fingerprints import fingerprint
from rngstate.runtime import RUNTIME

logger = logging.getLogger(__name__)

SEED_PER = "seed_per"  # the state_dict key of the loader's seeding mode


class ResumableLoader(Progress):
    """Mixed in before the framework's DataLoader class; see ``rngstate.torch.DataLoader``."""

    _rng_mode: str = ORDER
    _rng_hold = False  # the dataset is fetched whole by __getitems__: seeded per batch

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
        self._rng_saved_rng: dict[str, Any] | None = None  # the RNG record of a loaded state
        self._rng_loaded = False
        guard.register(self)

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
        # Before anything draws: is the live random state the one the position belongs to?
        record, self._rng_saved_rng = self._rng_saved_rng, None
        if record is not None:
            guard.check_rng(record, self._rng_path, fingerprint)
        restored = self._rng_restored
        if restored is not None and start > 0 and restored.root_seed not in (None, root):
            raise InvalidStateError(
                f"{self._rng_path}: the saved position {start} of epoch {epoch} belongs to root "
                f"seed {restored.root_seed}, but the root seed is now {root}; restore the RNG state "
                "saved with it (rngstate.restore) before iterating, or set_epoch() another epoch"
            )
        current = Pass(epoch, start, root)
        current.before = self._rng_batches_before(epoch, start, root)
        if self._rng_last is None and not self._rng_loaded:
            guard.check_first_pass(self._rng_path, epoch, current.before)
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
            pieces = chunks(order.tolist(), start, size, self._rng_drop_last)
        elif self._rng_mode == SAMPLER:
            indices = self._rng_draw(epoch, root)
            replicas, rank = replica_of(self._rng_source)
            step, offset = replicas, rank
            current.length = len(indices)
            pieces = chunks(indices, start, size, self._rng_drop_last)
        else:
            batches = self._rng_draw(epoch, root)
            step, offset = replica_of(self._rng_source)
            current.length = sum(len(batch) for batch in batches)
            pieces = skip_batches(batches, start, self._rng_path)
        seed_per, hold = self._rng_seed_per, self._rng_hold
        return seeded_batches(self._rng_parts, current, pieces, step, offset, seed_per, hold)

    def _rng_len(self, current: Pass | None = None) -> int:
        """Batches of ``current``, of the pass running now, or else of the next pass
        (``len(loader)``: the rest of the epoch right after a restored position)."""
        last = self._rng_last
        running = last is not None and not last.finished and self._rng_pending is None
        if current is None and running and self._rng_restored is None and self._rng_start is None:
            # One number while a pass runs: Paddle's Model.fit reads len(loader) at every
            # step to end the epoch's gradient accumulation (step + 1 == len).
            current = last
        if current is None:
            epoch, start = self._rng_plan()
            return self._rng_len_at(epoch, start, getattr(self._rng_restored, "root_seed", None))
        return self._rng_len_at(current.epoch, current.start, current.root)

    def _rng_len_at(self, epoch: int, start: int, root: int | None) -> int:
        size = self._rng_batch_size or 1
        if self._rng_mode == BATCH_SAMPLER:
            if start == 0 or root is None:
                return len(self._rng_source)
            return sum(1 for _ in skip_batches(self._rng_draw(epoch, root), start, ""))
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
        # Which random state this position belongs to: the first batch after load_state_dict
        # checks that the live generators are back in it (guard.check_rng).
        record = {guard.RNG_KEY: guard.rng_record(fingerprint())}
        restored = self._rng_restored
        if restored is not None:
            return {**self._rng_with_mode(restored.to_dict()), **record}
        if self._rng_mode == ITERABLE:
            return {**self._rng_iterable_state().to_dict(), **record}
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
        ).to_dict()) | record

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
        # HF datasets' IterableDataset resumes a batched map by re-running the batch's earlier
        # examples: their randomness would come from another sample's seeds. Replay instead.
        own_state = own_state and not type(dataset).__module__.startswith("datasets.")
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
        state, record = guard.split_record(state, where)
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
            self._rng_loaded_with(record)
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
        self._rng_loaded_with(record)

    def _rng_loaded_with(self, record: dict[str, Any] | None) -> None:
        self._rng_saved_rng, self._rng_loaded = record, True
        guard.loaded(self._rng_path)

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


__all__ = [
    "BATCH_SAMPLER",
    "ITERABLE",
    "ORDER",
    "SAMPLER",
    "DATASET_STATE",
    "FAST_FORWARD",
    "IterableState",
    "LoaderPart",
    "OrderPart",
    "Pass",
    "PassBatches",
    "ResumableLoader",
    "check_batch_size",
    "count_batches",
    "load_dataset_state",
    "skip_to_start",
]
