"""Where a loader's training loop stands, for the resume guard and for gradient accumulation:
batches of the epoch taken, and what the next step will take (see :mod:`rngstate.guard`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rngstate.data.passes import ITERABLE, IterableState, Pass
from rngstate.data.sampler import SamplerState
from rngstate.runtime import RUNTIME


class Progress:
    """Mixed into :class:`~rngstate.data.loader.ResumableLoader`, whose state it reads."""

    # ResumableLoader's attributes and methods this reads.
    _rng_mode: str
    _rng_epoch: int
    _rng_start: int | None
    _rng_restored: SamplerState | IterableState | None
    _rng_last: Pass | None
    _rng_saved_rng: dict[str, Any] | None
    _rng_len_at: Callable[[int, int, int | None], int]
    _rng_plan: Callable[[], tuple[int, int]]
    _rng_remaining: Callable[[int, int, int | None], bool | None]

    def _rng_batches_before(self, epoch: int, start: int, root: int | None) -> int:
        """Batches of ``epoch`` before sample position ``start``."""
        if self._rng_mode == ITERABLE or start == 0:
            return start
        return self._rng_len_at(epoch, 0, root) - self._rng_len_at(epoch, start, root)

    @property
    def batches_taken(self) -> int:
        """Batches of the current epoch the training loop has taken, those before a restored
        position included: the count a hand-written loop's gradient accumulation goes by.

        >>> for batch in loader:  # doctest: +SKIP
        ...     loss.backward()
        ...     if loader.batches_taken % accumulation == 0 or loader.batches_taken == batches_per_epoch:
        ...         optimizer.step(); optimizer.zero_grad()
        """
        restored, last = self._rng_restored, self._rng_last
        if restored is not None or last is None or self._rng_start is not None:
            root = getattr(restored, "root_seed", None) if restored is not None else RUNTIME.root
            if isinstance(restored, IterableState):
                start = restored.batches
            else:
                start = restored.position if restored is not None else self._rng_start or 0
            return self._rng_batches_before(self._rng_epoch, start, root)
        return last.before + last.taken

    def _rng_next_step(self) -> tuple[int, int]:
        """(epoch, batches before it) of the batch the next step will take, as a run resumed
        from ``state_dict()`` now would begin."""
        restored, last = self._rng_restored, self._rng_last
        if restored is not None or last is None or self._rng_start is not None:
            epoch, start = self._rng_plan()
            root = getattr(restored, "root_seed", None) if restored is not None else RUNTIME.root
            return epoch, self._rng_batches_before(epoch, start, root)
        if self._rng_mode == ITERABLE:
            return (last.epoch + 1, 0) if last.finished else (last.epoch, last.taken)
        position = last.position()
        if last.finished or self._rng_remaining(last.epoch, position, last.root) is False:
            return last.epoch + 1, 0
        return last.epoch, self._rng_batches_before(last.epoch, position, last.root)

    def _rng_trust_restore(self) -> None:
        """A trainer integration restores the random state itself, after the first batch was
        fetched, and checks the resume with its own guard: no check of the loaded state here."""
        self._rng_saved_rng = None

