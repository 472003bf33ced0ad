"""Hugging Face ``transformers.Trainer`` integration: exact mid-epoch resume with dataloader workers.

``import rngstate.transformers`` imports ``transformers`` (``import rngstate`` alone imports no
framework).

Two pieces:

* :class:`RNGStateCallback` writes every random generator into each checkpoint folder as an
  rngstate file (``rngstate.state``, msgpack, never a pickle; one entry per rank under
  torch.distributed) and the rngstate loader's position as ``rngstate_loader.json``; on
  resume it restores both, the generators right before the first resumed step (after the
  Trainer's own ``rng_state.pth`` was loaded).
* :class:`RNGStateMixin`, the unavoidable hook: put it before ``Trainer`` in your trainer's
  bases.  Its ``get_train_dataloader`` returns an ``rngstate.torch.DataLoader`` built from the
  Trainer's dataset, batch size, collator and ``dataloader_*`` arguments; its
  ``get_resumed_dataloader`` hands the Trainer that same loader (it continues at its saved
  position itself; the Trainer's ``skip_first_batches`` would rebuild it), so that the Trainer
  still counts the resumed epoch's batches from where it stopped (gradient accumulation and the
  epoch's last, shorter accumulation stay aligned); its ``train`` tells the callback which
  checkpoint to resume from.  The loader is not passed through ``accelerator.prepare``; the
  Trainer moves each batch to the device itself.

With each checkpoint the callback also writes what the next step must look like
(``rngstate_next.json``: epoch, batches of it taken, global step, accumulation, RNG
fingerprint) and checks it at the first resumed step: a resume off the uninterrupted path
raises :class:`rngstate.guard.ResumeMismatchError` naming the counter that disagrees.

>>> import rngstate, rngstate.transformers                       # doctest: +SKIP
>>> class Trainer(rngstate.transformers.RNGStateMixin, transformers.Trainer):  # doctest: +SKIP
...     pass
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

import transformers
import transformers.trainer_utils

from rngstate._trainers import is_rngstate_loader
from rngstate.data import DataLoaderError
from rngstate.diagnostics import fingerprint
from rngstate.guard import NextStep, check
from rngstate.snapshot import restore
from rngstate.state import RNGState
from rngstate.storage import load, save
from rngstate.torch import DataLoader as TorchDataLoader  # the Trainer needs torch anyway
from rngstate.tracing.hook import StepTracer

logger = logging.getLogger(__name__)

STATE_FILE = "rngstate.state"
LOADER_FILE = "rngstate_loader.json"
NEXT_FILE = "rngstate_next.json"


def _checkpoint_folder(args: Any, state: Any) -> Path:
    # The folder Trainer._save_checkpoint has just written (without hyperparameter search).
    return Path(args.output_dir) / f"{transformers.trainer_utils.PREFIX_CHECKPOINT_DIR}-{state.global_step}"


class RNGStateCallback(transformers.TrainerCallback):  # type: ignore[misc,name-defined]
    """Saves the random state (and the rngstate loader's position) in each checkpoint
    folder and restores them when training resumes.  Use it with :class:`RNGStateMixin`,
    which adds it when missing.

    ``trace="run.trace"`` also records a step trace (``rngstate.trace``; one file per rank):
    with :class:`RNGStateMixin`, each micro-batch and its loss (the Trainer's callbacks see
    neither), the model and optimizer every 100 steps.

    >>> trainer.add_callback(rngstate.transformers.RNGStateCallback())  # doctest: +SKIP
    """

    def __init__(self, *, check_resume: bool = True, trace: str | os.PathLike[str] | None = None) -> None:
        self.check_resume = check_resume  # False: a deliberate change on resume, unchecked
        self.resume_from: str | None = None  # set by RNGStateMixin.train
        self.trainer_batches = 0  # batches the Trainer skips in the resumed epoch (set by the mixin)
        self._pending: RNGState | None = None
        self._expected: NextStep | None = None
        self._loader: Any = None
        self._trace = StepTracer(trace)
        self._phase = 0  # micro-batches of the optimizer step under way
        self.fed_by_trainer = False  # RNGStateMixin records each micro-batch itself

    def trace_micro_batch(self, state: Any, inputs: Any, loss: Any, model: Any, optimizer: Any) -> None:
        """Record one micro-batch (called by :class:`RNGStateMixin.training_step`)."""
        self.fed_by_trainer = True
        trace = self._trace.open()
        if trace is None:
            return
        trace.step(step=state.global_step + 1, epoch=int(state.epoch or 0), phase=self._phase,
                   batch=inputs, loss=loss, model=model, optimizer=optimizer)
        self._phase += 1

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self.fed_by_trainer and self._trace.enabled:  # a plain Trainer: streams, weights only
            self._trace.step(step=state.global_step, epoch=int(state.epoch or 0),
                             model=kwargs.get("model"), optimizer=kwargs.get("optimizer"))
        self._phase = 0

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._trace.close()

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = _checkpoint_folder(args, state)
        if not folder.is_dir():
            raise DataLoaderError(
                f"rngstate: the Trainer did not write the checkpoint folder {folder} this "
                "callback expects (hyperparameter search runs are not supported)"
            )
        save(folder / STATE_FILE)  # collective under torch.distributed: every rank calls on_save
        loader: Any = kwargs.get("train_dataloader")
        if is_rngstate_loader(loader) and state.is_world_process_zero:
            # Data parallel ranks take the same number of batches: one position fits all.
            (folder / LOADER_FILE).write_text(json.dumps(loader.state_dict()))
            epoch, batches = loader._rng_next_step()
            # The Trainer saves right after an optimizer step: phase 0.
            k = args.gradient_accumulation_steps
            expected = NextStep(epoch, batches, state.global_step, k, 0, fingerprint())
            (folder / NEXT_FILE).write_text(json.dumps(expected.to_dict()))

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._pending, self._expected, self.trainer_batches = None, None, 0
        if self.resume_from is None:
            return
        folder = Path(self.resume_from)
        if not (folder / STATE_FILE).is_file():
            raise DataLoaderError(
                f"{folder} holds no {STATE_FILE}: it was not saved with "
                "rngstate.transformers.RNGStateCallback, so it cannot resume exactly"
            )
        loader: Any = kwargs.get("train_dataloader")
        if is_rngstate_loader(loader):
            loader.load_state_dict(json.loads((folder / LOADER_FILE).read_text()))
            loader._rng_trust_restore()  # restored below, at the first step; checked there
            self._loader = loader
            # The record is absent in checkpoints written before the resume guard.
            if self.check_resume and (folder / NEXT_FILE).is_file():
                where = f"{folder / NEXT_FILE}"
                self._expected = NextStep.from_dict(json.loads((folder / NEXT_FILE).read_text()), where)
        self._pending = load(folder / STATE_FILE)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # The Trainer restores its own rng_state.pth at the start of the resumed epoch;
        # the first step begins after it and after the batch was fetched.
        if self._pending is not None:
            pending, self._pending = self._pending, None
            restore(pending)
            logger.info("rngstate: random state restored from %s", self.resume_from)
            if self._expected is not None:
                self._check_resume(args, state)

    def _check_resume(self, args: Any, state: Any) -> None:
        """The first resumed step is where the checkpoint said it would be, for the Trainer
        (global step, batches it counts in the epoch) and for the loader (its epoch and
        position), with the same accumulation and random state."""
        expected, self._expected = self._expected, None
        assert expected is not None
        current = self._loader._rng_last
        where = f"rngstate.transformers: resuming from {self.resume_from}"
        k = args.gradient_accumulation_steps
        check(expected, where, global_step=state.global_step, accumulation=k)
        check(expected, f"{where} (the loader)", epoch=current.epoch, batches=current.before)
        skipped = self.trainer_batches
        check(expected, f"{where} (the Trainer)", batches=skipped, phase=skipped % k)
        if state.is_world_process_zero:
            check(expected, where, fingerprint=fingerprint())


class RNGStateMixin:
    """Put before ``transformers.Trainer`` (or any subclass of it) in your trainer's bases: the
    train loader becomes an ``rngstate.torch.DataLoader`` and ``train(resume_from_checkpoint=...)``
    resumes exactly, mid-epoch, with any ``dataloader_num_workers``.

    >>> class Trainer(rngstate.transformers.RNGStateMixin, transformers.Trainer):  # doctest: +SKIP
    ...     pass
    """

    args: Any
    train_dataset: Any
    data_collator: Any
    callback_handler: Any
    _train_batch_size: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not any(isinstance(c, RNGStateCallback) for c in self.callback_handler.callbacks):
            self.add_callback(RNGStateCallback())  # type: ignore[attr-defined]

    def get_train_dataloader(self) -> Any:
        """An ``rngstate.torch.DataLoader`` named ``"train"`` over ``train_dataset``."""
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        dataset, collator = self.train_dataset, self.data_collator
        datasets = importlib.import_module("datasets") if _has("datasets") else None
        if datasets is not None and isinstance(dataset, datasets.Dataset):
            dataset = self._remove_unused_columns(dataset, description="training")  # type: ignore[attr-defined]
        else:
            collator = self._get_collator_with_removed_columns(collator, description="training")  # type: ignore[attr-defined]
        args = self.args
        options: dict[str, Any] = {
            "pin_memory": args.dataloader_pin_memory,
            "persistent_workers": args.dataloader_persistent_workers,
        }
        if args.dataloader_num_workers > 0 and args.dataloader_prefetch_factor is not None:
            options["prefetch_factor"] = args.dataloader_prefetch_factor
        return TorchDataLoader(
            dataset,
            name="train",
            batch_size=self._train_batch_size,
            shuffle=True,
            collate_fn=collator,
            num_workers=args.dataloader_num_workers,
            drop_last=args.dataloader_drop_last,
            **options,
        )

    def get_resumed_dataloader(self, dataloader: Any, num_batches: int) -> Any:
        """The rngstate loader itself: it continues at its saved position.  The Trainer counts
        the ``num_batches`` it believes taken; the callback checks both agree at the first step."""
        if not is_rngstate_loader(dataloader):
            return super().get_resumed_dataloader(dataloader, num_batches)  # type: ignore[misc]
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, RNGStateCallback):
                callback.trainer_batches = num_batches
        return dataloader

    def training_step(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """``Trainer.training_step``; records the micro-batch and its loss in the step trace of
        an ``RNGStateCallback(trace=...)``."""
        loss = super().training_step(model, inputs, *args, **kwargs)  # type: ignore[misc]
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, RNGStateCallback):
                callback.trace_micro_batch(self.state, inputs, loss, model, self.optimizer)  # type: ignore[attr-defined]
        return loss

    def train(self, resume_from_checkpoint: Any = None, *args: Any, **kwargs: Any) -> Any:
        """``Trainer.train``; a resume continues exactly where the checkpoint was saved."""
        handler = self.callback_handler
        callbacks: list[Any] = [c for c in handler.callbacks if isinstance(c, RNGStateCallback)]
        if not callbacks:
            raise DataLoaderError("RNGStateMixin: the RNGStateCallback was removed from this trainer")
        if resume_from_checkpoint is True:
            resume_from_checkpoint = transformers.trainer_utils.get_last_checkpoint(  # type: ignore[no-untyped-call]
                self.args.output_dir
            )
            if resume_from_checkpoint is None:
                raise ValueError(f"No valid checkpoint found in output directory ({self.args.output_dir})")
        resume = os.fspath(resume_from_checkpoint) if resume_from_checkpoint else None
        for callback in callbacks:
            callback.resume_from = resume
        if resume and self.args.ignore_data_skip:
            raise DataLoaderError(
                "RNGStateMixin: ignore_data_skip=True makes the Trainer count the resumed epoch "
                "from its first batch while the rngstate loader continues at its saved position: "
                "gradient accumulation and the epoch's end would fall on other batches. Leave "
                "ignore_data_skip=False (the loader skips nothing; it starts at the saved position)"
            )
        return super().train(resume, *args, **kwargs)  # type: ignore[misc]


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


__all__ = ["RNGStateCallback", "RNGStateMixin"]
