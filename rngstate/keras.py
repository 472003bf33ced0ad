"""Keras 3 helpers: exact mid-epoch resume for ``model.fit`` (:class:`RNGStateCallback`) and
:func:`init_by_name`, which re-initializes a built model layer by layer, by name.

``import rngstate.keras`` imports Keras (``import rngstate`` alone imports no framework).

>>> import rngstate.keras
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np

from rngstate._trainers import read_progress, replace_folder
from rngstate.errors import KerasResumeError as KerasResumeError  # re-exported: raised here
from rngstate.initialize.keras import init_by_name as init_by_name
from rngstate.storage import load, save
from rngstate.tracing.hook import StepTracer

logger = logging.getLogger(__name__)

PROGRESS_FORMAT = "rngstate.keras.fit"
PROGRESS_VERSION = 1


def _write_backup(folder: Path, model: Any, progress: dict[str, Any]) -> None:
    """Weights, optimizer variables, every generator and the progress, into ``folder``."""

    def write(partial: Path) -> None:
        np.savez(partial / "weights.npz", *model.get_weights())
        np.savez(partial / "optimizer.npz", *[np.asarray(v.numpy()) for v in model.optimizer.variables])
        save(partial / "rng.state")
        (partial / "progress.json").write_text(json.dumps(progress))

    replace_folder(folder, write)


def _arrays(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


class RNGStateCallback(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
    """Backs up ``model.fit`` every ``save_freq`` steps (weights, optimizer variables, every
    random generator -- Python, NumPy, TensorFlow, Keras seeds -- and the position) into
    ``backup_dir``; a ``fit`` started again with the same callback resumes exactly, even
    mid-epoch.  Like ``keras.callbacks.BackupAndRestore``, but exact and with optimizer state.

    ``data`` is the ``keras.utils.PyDataset`` passed to ``fit`` (with ``shuffle=False``): its
    batch ``i`` must depend only on ``(epoch, i)``, and it must have ``set_epoch(epoch)``, which
    the callback calls before each epoch.  Order it with ``rngstate.ResumableSampler.order``
    and draw its randomness from generators seeded with ``rngstate.derive_seed``.  On a
    mid-epoch resume the rest of the interrupted epoch is trained with ``train_on_batch``
    (the same step function) before ``fit`` goes on with the next epoch.

    ``trace="run.trace"`` also records a step trace (``rngstate.trace``): each step's random
    streams and loss (``fit`` shows callbacks no batch), weights and optimizer every 100 steps.

    >>> backup = rngstate.keras.RNGStateCallback("backup", save_freq=50, data=train)  # doctest: +SKIP
    >>> model.fit(train, epochs=5, shuffle=False, callbacks=[backup])  # doctest: +SKIP
    """

    def __init__(self, backup_dir: str | os.PathLike[str], *, save_freq: int | str = "epoch",
                 data: Any = None, delete_on_end: bool = False,
                 trace: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self._trace = StepTracer(trace)
        steps = not isinstance(save_freq, bool) and isinstance(save_freq, int) and save_freq >= 1
        if save_freq != "epoch" and not steps:
            raise KerasResumeError(f"save_freq must be 'epoch' or a positive int, got {save_freq!r}")
        if data is not None and not callable(getattr(data, "set_epoch", None)):
            raise KerasResumeError(
                "data must have set_epoch(epoch) (a keras.utils.PyDataset whose batches depend "
                "only on the epoch and the batch index)"
            )
        if save_freq != "epoch" and data is None:
            raise KerasResumeError(
                "a mid-epoch backup (save_freq=<steps>) needs data=<the PyDataset given to fit> "
                "to finish the interrupted epoch on resume"
            )
        self.folder = Path(backup_dir)
        self.save_freq = save_freq
        self.data = data
        self.delete_on_end = delete_on_end
        self._epoch = 0
        self._steps = 0  # optimizer steps since the start of training

    def on_train_begin(self, logs: Any = None) -> None:
        self._epoch, self._steps = 0, 0
        if not (self.folder / "progress.json").exists():
            return
        progress = read_progress(self.folder, PROGRESS_FORMAT, PROGRESS_VERSION, KerasResumeError)
        model = self.model
        model.set_weights(_arrays(self.folder / "weights.npz"))
        optimizer = model.optimizer
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        saved = _arrays(self.folder / "optimizer.npz")
        if len(saved) != len(optimizer.variables):
            raise KerasResumeError(
                f"{self.folder}: the backup holds {len(saved)} optimizer variables, this "
                f"optimizer has {len(optimizer.variables)}; resume with the same model and optimizer"
            )
        for variable, value in zip(optimizer.variables, saved, strict=True):
            variable.assign(value)
        from rngstate.snapshot import restore

        restore(load(self.folder / "rng.state"))  # after building: Keras seeds exist now
        epoch, batch, self._steps = progress["epoch"], progress["batch"], progress["steps"]
        if batch > 0:
            self._finish_epoch(epoch, batch)
            epoch += 1
        self._epoch = epoch
        # What keras.callbacks.BackupAndRestore does: fit starts at this epoch.
        model._initial_epoch = epoch
        logger.info("rngstate.keras: resumed at epoch %d from %s", epoch, self.folder)

    def _finish_epoch(self, epoch: int, batch: int) -> None:
        data = self.data
        assert data is not None
        data.set_epoch(epoch)
        for index in range(batch, len(data)):
            x, y = data[index][:2]
            self.model.train_on_batch(x, y)
            self._steps += 1  # (its loss is the batch's, fit's is the epoch's running mean: not traced)
            self._trace.step(step=self._steps, epoch=epoch, position=index, model=self.model,
                             optimizer=self.model.optimizer)
        on_epoch_end = getattr(data, "on_epoch_end", None)
        if callable(on_epoch_end):
            on_epoch_end()

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._epoch = epoch
        if self.data is not None:
            self.data.set_epoch(epoch)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self._steps += 1
        if self._trace.enabled:
            self._trace.step(step=self._steps, epoch=self._epoch, position=batch,
                             loss=(logs or {}).get("loss"), model=self.model, optimizer=self.model.optimizer)
        if self.save_freq != "epoch" and self._steps % int(self.save_freq) == 0:
            self._save(self._epoch, batch + 1)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self.save_freq == "epoch":
            self._save(epoch + 1, 0)

    def _save(self, epoch: int, batch: int) -> None:
        if self.data is not None and batch >= len(self.data):
            epoch, batch = epoch + 1, 0  # the last batch of an epoch: the next one begins
        progress = {"format": PROGRESS_FORMAT, "version": PROGRESS_VERSION,
                    "epoch": epoch, "batch": batch, "steps": self._steps}
        _write_backup(self.folder, self.model, progress)

    def on_train_end(self, logs: Any = None) -> None:
        self._trace.close()
        if self.delete_on_end:
            shutil.rmtree(self.folder, ignore_errors=True)


__all__ = ["KerasResumeError", "RNGStateCallback", "init_by_name"]
