"""``paddle.Model.fit`` (the high-level API): exact mid-epoch resume through its callbacks.

``rngstate.paddle.RNGStateCallback`` is defined here and re-exported by ``rngstate.paddle``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import paddle.callbacks

from rngstate._trainers import is_rngstate_loader, read_progress, replace_folder
from rngstate.diagnostics import fingerprint
from rngstate.errors import PaddleResumeError as PaddleResumeError  # re-exported: raised here
from rngstate.guard import NextStep, check
from rngstate.snapshot import restore
from rngstate.storage import load, save
from rngstate.tracing.hook import StepTracer

logger = logging.getLogger(__name__)

PROGRESS_FORMAT = "rngstate.paddle.fit"
PROGRESS_VERSION = 1


def _write_backup(folder: Path, model: Any, loader: Any, progress: dict[str, Any]) -> None:
    """Weights and optimizer (``paddle.Model.save``), every generator, the loader position and
    the progress, into ``folder``."""

    def write(partial: Path) -> None:
        model.save(str(partial / "model"))
        save(partial / "rng.state")
        (partial / "loader.json").write_text(json.dumps(loader.state_dict()))
        (partial / "progress.json").write_text(json.dumps(progress))

    replace_folder(folder, write)


class RNGStateCallback(paddle.callbacks.Callback):  # type: ignore[misc,name-defined]
    """Backs up ``paddle.Model.fit`` every ``save_freq`` steps (weights, optimizer, every
    random generator, the loader's position) into ``backup_dir``; ``fit`` called again with
    the same callback and the same ``epochs`` resumes exactly, even mid-epoch.

    With ``fit(accumulate_grad_batches=k)`` a backup is written only right after an optimizer
    step (a due backup waits for the end of the accumulation): the gradients accumulated so far
    are not part of ``Model.save``.  The backup records what the next step must look like
    (epoch, batches, steps, accumulation, RNG fingerprint); a resume that disagrees raises
    :class:`rngstate.guard.ResumeMismatchError` naming the counter.

    ``train_data`` must be the ``rngstate.paddle.DataLoader`` given to ``fit`` (a bare
    Dataset would get Paddle's own loader, which cannot resume).  ``Model.fit`` always
    counts epochs from 0: after a resume the callback stops ``fit`` once the original
    number of epochs is done, so epoch numbers seen by other callbacks are counted from
    the resume.

    ``trace="run.trace"`` also records a step trace (``rngstate.trace``; one file per rank):
    each step's random streams and loss, the network and optimizer every 100 steps.

    >>> backup = rngstate.paddle.RNGStateCallback("backup", loader, save_freq=50)  # doctest: +SKIP
    >>> model.fit(loader, epochs=5, callbacks=[backup])  # doctest: +SKIP
    """

    def __init__(
        self,
        backup_dir: str | os.PathLike[str],
        train_data: Any,
        *,
        save_freq: int,
        check_resume: bool = True,
        trace: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        self.check_resume = check_resume  # False: a deliberate change on resume, unchecked
        self._trace = StepTracer(trace)
        if not is_rngstate_loader(train_data):
            raise PaddleResumeError(
                "train_data must be the rngstate.paddle.DataLoader passed to Model.fit, got "
                f"{type(train_data).__name__}"
            )
        if isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1:
            raise PaddleResumeError(f"save_freq must be a positive int (steps), got {save_freq!r}")
        self.folder = Path(backup_dir)
        self.loader = train_data
        self.save_freq = save_freq
        self._steps = 0
        self._epoch = 0  # the loader's epoch that fit's current epoch trains
        self._due = False  # a backup is due at the next optimizer step
        self._expected: NextStep | None = None
        self._fingerprint: str | None = None  # right after the restore

    def on_train_begin(self, logs: Any = None) -> None:
        self._steps, self._due, self._expected = 0, False, None
        if not (self.folder / "progress.json").exists():
            return
        progress = read_progress(self.folder, PROGRESS_FORMAT, PROGRESS_VERSION, PaddleResumeError)
        self.model.load(str(self.folder / "model"))  # type: ignore[union-attr]
        self.loader.load_state_dict(json.loads((self.folder / "loader.json").read_text()))
        restore(load(self.folder / "rng.state"))
        self.loader._rng_trust_restore()  # checked at the first batch (on_train_batch_begin)
        self._fingerprint = fingerprint()
        self._steps = progress["steps"]
        if self.check_resume and "next" in progress:
            self._expected = NextStep.from_dict(progress["next"], f"{self.folder / 'progress.json'}: next")
        logger.info("rngstate.paddle: resumed after step %d from %s", self._steps, self.folder)

    def _accumulation(self) -> int:
        return int(getattr(self.model, "_accumulate", 1) or 1)

    def on_train_batch_begin(self, step: int, logs: Any = None) -> None:
        if step == 0:  # the loader's iteration has begun: its epoch is the one trained now
            self._epoch = self.loader.epoch
        if self._expected is not None:
            expected, self._expected = self._expected, None
            where = f"rngstate.paddle: the first batch after resuming from {self.folder}"
            k = self._accumulation()
            check(expected, where, global_step=self._steps, accumulation=k, fingerprint=self._fingerprint)
            current = self.loader._rng_last
            check(expected, f"{where} (the loader)", epoch=current.epoch, batches=current.before)
            # Model.fit counts a resumed epoch's steps from 0: its accumulation is aligned only
            # when the loader resumed at a multiple of k (or at an epoch's start).
            check(expected, f"{where} (Model.fit)", phase=(current.before + step) % k)

    def on_train_batch_end(self, step: int, logs: Any = None) -> None:
        self._steps += 1
        trace = self._trace.open()
        if trace is not None:
            loss, model = (logs or {}).get("loss"), self.model
            trace.step(step=self._steps, epoch=self._epoch, loss=loss[0] if isinstance(loss, list) else loss,
                       model=model.network, optimizer=model._optimizer)  # type: ignore[union-attr]
        self._due = self._due or self._steps % self.save_freq == 0
        k = self._accumulation()
        # Model.fit steps the optimizer when (step + 1) % k == 0 or at the epoch's last batch.
        stepped = (step + 1) % k == 0 or step + 1 == len(self.loader)
        if self._due and stepped:
            self._due = False
            epoch, batches = self.loader._rng_next_step()
            following = NextStep(epoch, batches, self._steps, k, 0, fingerprint())
            progress = {
                "format": PROGRESS_FORMAT, "version": PROGRESS_VERSION, "steps": self._steps,
                "next": following.to_dict(),
            }
            _write_backup(self.folder, self.model, self.loader, progress)

    def on_train_end(self, logs: Any = None) -> None:
        self._trace.close()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        # fit counts epochs from 0 again after a resume; the loader knows the real one.
        epochs = (self.params or {}).get("epochs")
        if epochs is not None and self._epoch + 1 >= epochs:
            self.model.stop_training = True  # type: ignore[union-attr]
