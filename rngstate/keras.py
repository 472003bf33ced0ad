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
from rngstate.diagnostics import fingerprint
from rngstate.errors import KerasResumeError as KerasResumeError  # re-exported: raised here
from rngstate.initialize.keras import init_by_name as init_by_name
from rngstate.keras_feed import Feed, fit_epoch_iterator, make_feed
from rngstate.storage import load, save
from rngstate.tracing.hook import StepTracer

logger = logging.getLogger(__name__)

PROGRESS_FORMAT = "rngstate.keras.fit"
PROGRESS_VERSION = 2  # 2: "next" (what the next step must look like) and "feed"


def _write_backup(partial: Path, model: Any, progress: dict[str, Any]) -> None:
    """Weights, optimizer variables, every generator and the progress, into ``partial``."""
    np.savez(partial / "weights.npz", *model.get_weights())
    np.savez(partial / "optimizer.npz", *[np.asarray(v.numpy()) for v in model.optimizer.variables])
    save(partial / "rng.state")
    (partial / "progress.json").write_text(json.dumps(progress))


def _arrays(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def _accumulation(optimizer: Any) -> dict[str, int]:
    """The optimizer's raw step count and where it stands in gradient accumulation."""
    steps = int(getattr(optimizer, "gradient_accumulation_steps", None) or 1)
    raw = getattr(optimizer, "_iterations", None)
    iterations = int(np.asarray(raw.numpy() if raw is not None else optimizer.iterations.numpy()))
    return {"gradient_accumulation_steps": steps, "optimizer_iterations": iterations,
            "accumulation_phase": iterations % steps}


class RNGStateCallback(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
    """Backs up ``model.fit`` every ``save_freq`` steps (weights, optimizer variables --
    gradient accumulators included --, every random generator -- Python, NumPy, TensorFlow,
    Keras seeds --, the data position) into ``backup_dir``; a ``fit`` started again with the
    same callback resumes exactly, even mid-epoch.  Like ``keras.callbacks.BackupAndRestore``,
    but exact.

    * NumPy arrays (or dicts of them) given to ``fit``: the callback takes over the order
      (``shuffle=True`` or ``"batch"``) from ``rngstate.derive_seed``, so it needs
      ``rngstate.seed_everything`` first.
    * A ``tf.data.Dataset``: saved with ``tf.train.Checkpoint(iterator=...)``; build it with
      seeds from ``rngstate.derive_seed`` (see ``rngstate.tf_data``).
    * A ``keras.utils.PyDataset`` given as ``data`` (with ``fit(..., shuffle=False)``): batch
      ``i`` must depend only on ``(epoch, i)`` and it must have ``set_epoch(epoch)``, called
      before each epoch; a mid-epoch resume trains the rest of the epoch with
      ``train_on_batch`` before ``fit`` goes on.

    Each backup records what the next step must look like (epoch, step, data position,
    optimizer step and accumulation phase, RNG fingerprint); a resume that disagrees raises
    ``KerasResumeError`` naming the counter.

    ``trace="run.trace"`` also records a step trace (``rngstate.trace``): each step's random
    streams and loss (``fit`` shows callbacks no batch), weights and optimizer every 100 steps.

    >>> backup = rngstate.keras.RNGStateCallback("backup", save_freq=50)  # doctest: +SKIP
    >>> model.fit(x, y, batch_size=32, epochs=5, callbacks=[backup])  # doctest: +SKIP
    """

    def __init__(self, backup_dir: str | os.PathLike[str], *, save_freq: int | str = "epoch",
                 data: Any = None, delete_on_end: bool = False, name: str = "train",
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
        self.folder = Path(backup_dir)
        self.save_freq = save_freq
        self.data = data
        self.delete_on_end = delete_on_end
        self.name = name
        self._feed: Feed | None = None
        self._epoch = 0
        self._steps = 0  # optimizer steps since the start of training

    def on_train_begin(self, logs: Any = None) -> None:
        self._epoch, self._steps = 0, 0
        self._feed = None
        if self.data is None:
            epoch_iterator = fit_epoch_iterator(self.model)
            self._feed = None if epoch_iterator is None else make_feed(epoch_iterator, self.name)
            if self._feed is None and self.save_freq != "epoch":
                raise KerasResumeError(
                    "a mid-epoch backup (save_freq=<steps>) needs NumPy arrays or a tf.data.Dataset "
                    "given to fit, or data=<the keras.utils.PyDataset given to fit>"
                )
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
        self._check(progress)
        epoch, batch, self._steps = progress["epoch"], progress["batch"], progress["steps"]
        if self._feed is not None:
            if not isinstance(progress.get("feed"), dict):
                raise KerasResumeError(
                    f"{self.folder}: this backup holds no position in the data fit gets now (written "
                    "for a PyDataset or by an older rngstate); delete it to start over"
                )
            self._feed.load(self.folder, progress["feed"], batch)
        elif batch > 0:
            self._finish_epoch(epoch, batch)
            epoch += 1
        self._epoch = epoch
        # What keras.callbacks.BackupAndRestore does: fit starts at this epoch.
        model._initial_epoch = epoch
        logger.info("rngstate.keras: resumed at epoch %d, step %d from %s", epoch, batch, self.folder)

    def _check(self, progress: dict[str, Any]) -> None:
        """Exact or loud: the restored run must be where the saved one would have gone on."""
        expected = progress.get("next", {})
        live = {**_accumulation(self.model.optimizer), "fingerprint": fingerprint()}
        if self._feed is not None:
            live.update(self._feed.describe())
        elif "kind" in expected:
            live["kind"] = "PyDataset" if self.data is not None else "other"
        for counter, value in expected.items():
            if counter in live and live[counter] != value:
                raise KerasResumeError(
                    f"{self.folder}: cannot resume exactly: {counter} is {live[counter]!r} in this "
                    f"run but {value!r} in the backup; resume with the same data, batch size, "
                    "optimizer and model, or delete the backup to start over"
                )

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
        if self._feed is not None:
            self._feed.epoch = epoch
        if self.data is not None:
            self.data.set_epoch(epoch)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self._steps += 1
        trace = self._trace.open()
        if trace is not None:
            model = self.model  # a property (it checks the backend): once, not twice
            trace.step(step=self._steps, epoch=self._epoch, position=batch, loss=(logs or {}).get("loss"),
                       model=model, optimizer=model.optimizer)
        if self.save_freq != "epoch" and self._steps % int(self.save_freq) == 0:
            self._save(self._epoch, batch + 1)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self.save_freq == "epoch":
            self._save(epoch + 1, 0)

    def _save(self, epoch: int, batch: int) -> None:
        feed = self._feed
        if feed is None and self.data is not None and batch >= len(self.data):
            epoch, batch = epoch + 1, 0  # the last batch of an epoch: the next one begins
        expected: dict[str, Any] = {**_accumulation(self.model.optimizer), "fingerprint": fingerprint()}
        expected.update(feed.describe() if feed is not None else
                        {"kind": "PyDataset" if self.data is not None else "other"})
        progress = {"format": PROGRESS_FORMAT, "version": PROGRESS_VERSION, "epoch": epoch,
                    "batch": batch, "steps": self._steps, "next": expected,
                    "feed": feed.state() if feed is not None else None}

        replace_folder(self.folder, lambda partial: _write_backup(partial, self.model, progress))

    def on_train_end(self, logs: Any = None) -> None:
        self._trace.close()
        self.model._initial_epoch = None  # a later fit of this model starts where it is told
        self._feed = None
        if self.delete_on_end:
            shutil.rmtree(self.folder, ignore_errors=True)


__all__ = ["KerasResumeError", "RNGStateCallback", "init_by_name"]
