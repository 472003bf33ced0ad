"""Lightning integration: every random generator inside Lightning's own checkpoint.

``import rngstate.lightning`` imports ``lightning.pytorch`` (or ``pytorch_lightning`` when only
that is installed, or only that is imported); ``import rngstate`` alone imports neither.

>>> import rngstate.lightning
>>> callbacks = [rngstate.lightning.RNGStateCallback()]  # doctest: +SKIP

With ``rngstate.seed_everything`` and a ``train_dataloader()`` returning
``rngstate.torch.DataLoader(..., name=...)``, ``trainer.fit(model, ckpt_path=...)`` after a
mid-epoch ``ModelCheckpoint`` ends with the weights of a run that never stopped.  Lightning
saves and restores the loader's position itself (the loader is ``Stateful``); the callback adds
the generators, one entry per rank, as plain data (the checkpoint loads with
``torch.load(..., weights_only=True)``).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

from rngstate import _check, fileformat
from rngstate._trainers import is_rngstate_loader
from rngstate.backends import torch_distributed
from rngstate.data import DataLoaderError
from rngstate.diagnostics import fingerprint
from rngstate.distributed import TopologyError, rank_info
from rngstate.errors import InvalidStateError
from rngstate.guard import NextStep, check
from rngstate.snapshot import capture, restore
from rngstate.state import RNGState
from rngstate.tracing.hook import StepTracer

logger = logging.getLogger(__name__)

STATE_FORMAT = "rngstate.lightning"
STATE_VERSION = 1


def _lightning() -> Any:
    """``lightning.pytorch``, or ``pytorch_lightning`` when that is the one in use."""
    if "pytorch_lightning" in sys.modules and "lightning.pytorch" not in sys.modules:
        return importlib.import_module("pytorch_lightning")
    try:
        return importlib.import_module("lightning.pytorch")
    except ImportError:
        try:
            return importlib.import_module("pytorch_lightning")
        except ImportError:
            raise ImportError(
                "rngstate.lightning.RNGStateCallback needs Lightning: pip install lightning"
            ) from None


_pl = _lightning()


def _capture_ranks() -> dict[str, Any]:
    """Every rank's state, as plain data.  Collective under a process group: Lightning calls
    ``state_dict`` on every rank while it dumps a checkpoint (only rank 0 writes it)."""
    state = capture().to_dict()
    group = torch_distributed.process_group() if "torch" in sys.modules else None
    world_size = 1 if group is None else group[1]
    ranks = [state]
    if world_size > 1:
        blobs = torch_distributed.gather_bytes(fileformat.pack(state))
        if blobs is not None:  # rank 0: the one whose checkpoint is written
            ranks = [fileformat.unpack(blob) for blob in blobs]
    return {"format": STATE_FORMAT, "version": STATE_VERSION, "world_size": world_size, "ranks": ranks}


def _next_step(trainer: Any) -> dict[str, Any] | None:
    """What the step after this checkpoint must look like (None outside a fit's training)."""
    fit_loop = getattr(trainer, "fit_loop", None)
    epoch_loop = getattr(fit_loop, "epoch_loop", None)
    if epoch_loop is None or trainer.state.fn != "fit":
        return None
    k = int(trainer.accumulate_grad_batches)
    loaders = _rngstate_loaders(trainer)
    epoch, batches = loaders[0]._rng_next_step() if loaders else (trainer.current_epoch, 0)
    # Between two optimizer steps (a checkpoint written mid-accumulation) the gradients so far
    # are not in the checkpoint: the phase records it, and the resume refuses it.
    ready = int(epoch_loop.batch_progress.current.ready)
    phase = ready % k if ready and epoch_loop._should_accumulate() else 0
    return NextStep(epoch, batches, int(trainer.global_step), k, phase, fingerprint()).to_dict()


def _own_rank(saved: Any) -> RNGState:
    """This rank's entry of :func:`_capture_ranks`, validated."""
    where = "rngstate.lightning checkpoint entry"
    if isinstance(saved, dict):
        saved = {key: value for key, value in saved.items() if key != "next"}  # see load_state_dict
    _check.mapping(saved, where, ("format", "version", "world_size", "ranks"))
    _check.text(saved["format"], f"{where}: format", (STATE_FORMAT,))
    version = _check.integer(saved["version"], f"{where}: version", 1, 2**31)
    if version > STATE_VERSION:
        raise InvalidStateError(f"{where}: version {version} is newer than {STATE_VERSION}; upgrade rngstate")
    world_size = _check.integer(saved["world_size"], f"{where}: world_size", 1, 2**31)
    ranks = _check.sequence(saved["ranks"], f"{where}: ranks", world_size)
    live = rank_info()
    if world_size != live.world_size:
        raise TopologyError(
            f"the checkpoint holds the random state of {world_size} ranks, this job has "
            f"{live.world_size}: mid-epoch randomness cannot continue on another number of ranks. "
            "Resume with the same number of devices"
        )
    return RNGState.from_dict(ranks[live.rank])


class RNGStateCallback(_pl.Callback):  # type: ignore[misc,name-defined]
    """Puts every random generator (Python, NumPy, torch CPU and CUDA, tracked generators,
    substreams; each rank's own) into Lightning's checkpoints and restores it when
    ``trainer.fit(..., ckpt_path=...)`` resumes, right before the first training batch.

    It also keeps Lightning from rebuilding an ``rngstate.torch.DataLoader`` under DDP
    (that loader shards by rank itself) and keeps Lightning's loop counters right on a
    mid-epoch resume.

    ``trace="run.trace"`` also records a step trace (``rngstate.trace``; one file per rank):
    each training batch, its loss, the model and the first optimizer every 100 steps.

    >>> import lightning.pytorch as pl, rngstate.lightning      # doctest: +SKIP
    >>> trainer = pl.Trainer(callbacks=[rngstate.lightning.RNGStateCallback(),  # doctest: +SKIP
    ...                                 pl.callbacks.ModelCheckpoint(every_n_train_steps=50)])
    """

    def __init__(self, *, check_resume: bool = True, trace: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.check_resume = check_resume  # False: a deliberate change on resume, unchecked
        self._pending: RNGState | None = None
        self._training: RNGState | None = None  # the training run's state while validation runs
        self._trainer: Any = None
        self._expected: NextStep | None = None
        self._fingerprint: str | None = None  # right after the restore
        self._trace = StepTracer(trace)
        self._epoch_fields: _EpochFields | None = None

    @property
    def state_key(self) -> str:
        return "rngstate"

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        _keep_rngstate_samplers(trainer)
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        state = _capture_ranks()
        following = None if self._trainer is None else _next_step(self._trainer)
        return state if following is None else {**state, "next": following}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Applied in on_train_start: Lightning restores callbacks before it builds the
        # loaders and runs the sanity check, which would draw from the restored state.
        self._pending = _own_rank(state_dict)
        following = state_dict.get("next")
        where = "rngstate.lightning checkpoint entry: next"
        self._expected = None if following is None else NextStep.from_dict(following, where)
        if not self.check_resume:
            self._expected = None

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        # Validation inside fit draws (a torch DataLoader draws its base seed from the global
        # generator at iter()).  A checkpoint of the batch after which validation runs holds the
        # state from before it, and the resumed run does not validate again: validation must
        # leave the training streams as it found them.
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._training = capture()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self._training is not None:
            training, self._training = self._training, None
            restore(training)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # A resumed epoch gets no on_train_epoch_start: forget a previous fit's fields here too.
        self._epoch_fields = None
        loaders = _rngstate_loaders(trainer)
        _count_whole_epochs(trainer, loaders)
        for loader in loaders:
            _ignore_next_set_epoch(loader, loader.epoch)
        if self._pending is not None:
            pending, self._pending = self._pending, None
            restore(pending)
            logger.info("rngstate: random state restored from the checkpoint")
            self._fingerprint = fingerprint()
        for loader in loaders:
            loader._rng_trust_restore()  # checked by the callback at the first batch

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self._expected is None:
            return
        expected, self._expected = self._expected, None
        where = "rngstate.lightning: the first batch after resuming"
        k = int(trainer.accumulate_grad_batches)
        check(expected, where, global_step=int(trainer.global_step), accumulation=k)
        loaders = _rngstate_loaders(trainer)
        current = loaders[0]._rng_last if loaders else None
        if current is not None:
            check(expected, f"{where} (the loader)", epoch=current.epoch, batches=current.before)
        check(expected, f"{where} (Lightning)", epoch=int(trainer.current_epoch), batches=batch_idx, phase=0)
        if rank_info().rank == 0:
            check(expected, where, fingerprint=self._fingerprint)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._epoch_fields = None  # read again at this epoch's first batch (see _EpochFields)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        trace = self._trace.open()
        if trace is None:
            return
        # Right after a training step every Lightning property is a walk down cold loops:
        # what holds for the whole epoch is read once (see _EpochFields).
        fields = self._epoch_fields
        if fields is None:
            fields = self._epoch_fields = _EpochFields(trainer)
        accumulate = fields.accumulate
        phase = batch_idx % accumulate
        stepped = phase == accumulate - 1 or batch_idx == fields.last
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        steps = fields.steps
        global_step = trainer.global_step if steps is None else steps.completed
        trace.step(step=global_step + (0 if stepped else 1), epoch=fields.epoch, position=batch_idx,
                   phase=phase if accumulate > 1 else None, batch=batch, loss=loss, model=pl_module,
                   optimizer=fields.optimizer)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._trace.close()


class _EpochFields:
    """What a step record takes from the trainer and what stays the same for a whole training
    epoch, read at its first batch (after every callback's ``on_train_epoch_start``: a
    ``GradientAccumulationScheduler`` sets the epoch's accumulation there; the number of
    batches is set when the epoch's loader is, and by ``_count_whole_epochs`` on a resume).

    ``steps`` is the counter behind ``trainer.global_step`` (the epoch loop's optimizer step
    tracker, automatic or manual), read with one attribute load instead of a walk through the
    loop, the module and the progress objects; None where this Lightning keeps it elsewhere."""

    __slots__ = ("accumulate", "epoch", "last", "optimizer", "steps")

    def __init__(self, trainer: Any) -> None:
        self.accumulate = max(1, int(trainer.accumulate_grad_batches))
        self.last = trainer.num_training_batches - 1  # the epoch's last batch steps the optimizer
        self.epoch = trainer.current_epoch
        optimizers = trainer.optimizers
        self.optimizer = optimizers[0] if optimizers else None
        self.steps = _step_tracker(trainer)


def _step_tracker(trainer: Any) -> Any:
    """The object whose ``completed`` is ``trainer.global_step`` (Lightning 2.x's
    ``_TrainingEpochLoop.global_step``; its progress objects are updated in place, also when a
    checkpoint is loaded), or None."""
    epoch_loop = trainer.fit_loop.epoch_loop
    module = trainer.lightning_module
    try:
        if module is None or module.automatic_optimization:
            tracker = epoch_loop.automatic_optimization.optim_progress.optimizer.step.total
        else:
            tracker = epoch_loop.manual_optimization.optim_step_progress.total
        same = tracker.completed == trainer.global_step
    except AttributeError:
        return None
    return tracker if same else None


def _keep_rngstate_samplers(trainer: Any) -> None:
    """Under DDP Lightning re-creates every training loader with a ``DistributedSampler``
    (``use_distributed_sampler``).  An rngstate loader already shards by rank, and a rebuilt
    one would lose its resumable order; exempt exactly those loaders."""
    connector: Any = getattr(trainer, "_data_connector", None)
    requires = getattr(connector, "_requires_distributed_sampler", None)
    if requires is None or getattr(requires, "_rngstate", False):
        return  # another Lightning version, or already done

    def requires_distributed_sampler(dataloader: Any) -> bool:
        return not is_rngstate_loader(dataloader) and bool(requires(dataloader))

    requires_distributed_sampler._rngstate = True  # type: ignore[attr-defined]
    connector._requires_distributed_sampler = requires_distributed_sampler


def _rngstate_loaders(trainer: Any) -> list[Any]:
    """The rngstate loaders among the training loaders Lightning iterates."""
    combined = getattr(trainer.fit_loop, "_combined_loader", None)
    return [loader for loader in getattr(combined, "flattened", []) if is_rngstate_loader(loader)]


def _ignore_next_set_epoch(loader: Any, epoch: int) -> None:
    """Lightning creates the training iterator (``FitLoop.setup_data``) before it calls
    ``set_epoch(epoch)`` on the loader's samplers at the start of that epoch.  On an rngstate
    loader whose pass has begun, ``set_epoch`` sets up the *next* pass, and the position it saves
    would read 0 (a fresh run's first epoch) or the resumed start while the iterator goes on;
    that one call, for the epoch already running, is skipped.  The objects are the ones
    Lightning's ``_set_sampler_epoch`` calls."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    candidates = (getattr(loader, "sampler", None), getattr(batch_sampler, "sampler", None))
    targets = {id(c): c for c in candidates if callable(getattr(c, "set_epoch", None))}
    for target in targets.values():
        _skip_once(target, epoch)


def _skip_once(target: Any, epoch: int) -> None:
    def set_epoch(new_epoch: int, *args: Any, **kwargs: Any) -> None:
        del target.set_epoch  # one call only; the class's method is back
        if new_epoch != epoch or args or kwargs:
            target.set_epoch(new_epoch, *args, **kwargs)

    target.set_epoch = set_epoch


def _count_whole_epochs(trainer: Any, loaders: list[Any]) -> None:
    """Lightning counts the batches of a resumed epoch from the start of the epoch, but sizes
    the epoch with ``len(loader)`` taken after the loader's position was restored (the batches
    left).  Size it from the loader lengths Lightning took before restoring the position."""
    if not loaders:
        return
    fit_loop = trainer.fit_loop
    combined = getattr(fit_loop, "_combined_loader", None)
    fetcher = getattr(fit_loop, "_data_fetcher", None)
    limits = getattr(combined, "limits", None)
    if not limits or fetcher is None or not hasattr(fetcher, "length"):
        raise DataLoaderError(
            "rngstate.lightning does not know this Lightning version's training loop "
            f"({type(fit_loop).__name__} without _combined_loader.limits / _data_fetcher.length); "
            "resume from an end-of-epoch checkpoint, or use a Lightning version from 2.2 to 2.6"
        )
    whole = min(limits) if getattr(combined, "_mode", "max_size_cycle") == "min_size" else max(limits)
    fit_loop.max_batches = whole
    if fetcher.length is not None:
        fetcher.length = whole


__all__ = ["RNGStateCallback"]
