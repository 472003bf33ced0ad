"""What a step trace costs: the trainer examples' training step with ``trace.step(...)`` (or
the integration's ``trace=``) against the same training without it, in the same run.

    python benchmarks/trace_overhead.py            # 7 rounds
    python benchmarks/trace_overhead.py --quick    # 3 rounds

The step is the one of ``examples/resume_torch.py`` and ``examples/trainer_*.py``: the 16-32-4
MLP with dropout, SGD with momentum, batches of 8 from the framework's rngstate loader over the
augmenting dataset (Python, NumPy and framework noise per sample), its 48 samples repeated 4
times (24 steps an epoch), one thread where the framework lets it.  The traced step records what
the issue asks: every stream's fingerprint, the batch, the loss, and with ``weights_every=100``
(K=100) the weights and optimizer state every 100 steps.  Rows, each a ratio to the same
training without a trace, median (range) over the rounds:

- ``trace (time in trace.step)``: a hand-written loop (the strictest case: no trainer around
  it to hide a cost): one plus the time spent inside ``trace.step`` over the rest of the traced
  steps (measured call by call, the figure the load of other processes disturbs least);
- ``trace (best epochs)``: the best traced epoch's step time over the best untraced one's;
- ``trace, 3 scopes``: the same with the model built in three scopes and one of them entered at
  every step (a substream touched each step is fingerprinted again);
- ``accelerate``: ``examples/trainer_accelerate.py``'s loop (model and optimizer through
  ``accelerator.prepare``, ``accelerator.backward``, the rngstate loader not prepared), the same
  two figures.

In a round one job alternates traced and untraced epochs (which goes first alternates between
rounds), so load from other processes hits both alike.  Then each trainer, in its own process
(their imports stay apart: a framework imported is a stream every record reads), with the
example's model and data in the trainer's own loop and the rngstate callback without and with
``trace=`` (fits of 12 epochs, 288 steps, alternate; which goes first alternates between
rounds):

- ``Lightning``: ``Trainer.fit``; the callback's ``on_train_batch_end`` records;
- ``HF Trainer``: ``RNGStateMixin`` + ``transformers.Trainer``; the callback's
  ``trace_micro_batch``, called by the mixin's ``training_step``, records;
- ``Keras fit``: ``model.fit`` on the example's ``PyDataset`` (TensorFlow backend); the
  callback's ``on_train_batch_end`` records;
- ``Paddle fit``: ``paddle.Model.fit`` on the rngstate loader; ``on_train_batch_end`` records;

each as ``(in callback)``, one plus the time the trace adds in the recording hook (the hook's
time in the traced fit less its time a call in the untraced one: the hook's other work and the
clock's own cost) over the rest of the traced fit's epochs, and ``(best epochs)``.  Both leave
the first epoch out (it builds the graphs and opens the trace file: once a run).  The callbacks
back up nothing (``save_freq`` past the end).  The rows of the trainers and of accelerate are
marked against the target: at most 1.03.

Times are CPU time: on a shared machine wall time mostly measures the other processes.  That is
all the CPU a trace spends: it runs no thread of its own, and thread CPU time counts the
kernel's work for the thread too (the page faults of the first copy into each page of the
mapped room, the ``posix_fallocate`` every MiB, the ``write`` of a file system that cannot
reserve room); only the kernel's later writeback of the page cache, as for any ``write``, is
not the thread's.  So the times are the thread's (``time.thread_time``), but for Keras: it runs
its compiled step in TensorFlow's threads (about half its CPU time), and its hook and epochs
are timed over the whole process (``time.process_time``, about the wall time there).

Measured (2-core shared machine, trace format 5, two ``--quick`` runs on an otherwise idle
machine, median (range of the rounds) of each): ``trace (time in trace.step)`` 1.097
(1.090-1.098) and 1.095 (1.095-1.099); ``trace, 3 scopes`` 1.147 (1.133-1.148, a separate run)
and 1.140 (1.135-1.142); ``accelerate`` 1.074 (1.072-1.076), 1.075 (1.073-1.076);
``Lightning`` 1.052 (1.051-1.052), 1.053 (1.052-1.055); ``HF Trainer`` 1.054 (1.053-1.054),
1.056 (1.054-1.057); ``Keras fit`` 1.059 (1.059-1.061), 1.054 (1.054-1.058); ``Paddle fit``
1.045 (1.045-1.046), 1.047 (1.046-1.047).  Before this pass (format 4, three runs): 1.105,
3 scopes 1.21-1.23, accelerate 1.081, Lightning 1.058, HF 1.060, Keras 1.065, Paddle 1.201.  All
miss the 3% target on these tiny steps (0.4 to 2.4 ms); docs/diagnostics.md ("Cost") says
where the time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))

import rngstate  # no framework: each part imports its own

EPOCHS_PER_ROUND = 6
TRAINER_EPOCHS = 12  # 288 steps: weights and optimizer digested at steps 100 and 200
STEPS_PER_EPOCH = 24
TARGET = 1.03
TRAINERS = {"lightning": "Lightning", "transformers": "HF Trainer", "keras": "Keras fit",
            "paddle": "Paddle fit"}


def _four_times(dataset: Any) -> Any:
    """The examples' 48 samples, each 4 times: 24 steps an epoch, as in a longer epoch."""
    dataset.points = dataset.points.repeat(4, axis=0)
    dataset.labels = dataset.labels.repeat(4, axis=0)
    return dataset


def _job(scopes: bool, accelerate: bool = False) -> tuple[Any, Any, Any, Any]:
    """(model, optimizer, loader, backward: None for ``loss.backward()``)."""
    import torch
    from resume_torch import AugmentedPoints  # the examples' dataset
    from torch import nn

    import rngstate.torch

    rngstate.seed_everything(0)
    if scopes:
        with rngstate.rng_scope("encoder"):
            first = nn.Linear(16, 32)
        with rngstate.rng_scope("dropout"):
            dropout = nn.Dropout(0.3)
        with rngstate.rng_scope("head"):
            head = nn.Linear(32, 4)
        model = nn.Sequential(first, nn.ReLU(), dropout, head)
    else:
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    data = _four_times(AugmentedPoints())
    loader: Any = rngstate.torch.DataLoader(data, name="train", batch_size=8, shuffle=True)
    if not accelerate:
        return model, optimizer, loader, None
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model, optimizer = accelerator.prepare(model, optimizer)  # the loader is not (as in the example)
    return model, optimizer, loader, accelerator.backward


def _epoch(model: Any, optimizer: Any, loader: Any, backward: Any, epoch: int, trace: Any,
           scopes: bool) -> tuple[float, float]:
    """(seconds per step, of which seconds per step inside trace.step)."""
    from torch import nn

    loader.set_epoch(epoch)
    tracing = 0.0
    start = time.thread_time()
    for position, (features, labels) in enumerate(loader):
        if scopes:
            with rngstate.rng_scope("dropout"):
                out = model(features)
        else:
            out = model(features)
        loss = nn.functional.cross_entropy(out, labels)
        optimizer.zero_grad()
        if backward is None:
            loss.backward()  # type: ignore[no-untyped-call]
        else:
            backward(loss)
        optimizer.step()
        if trace is not None:
            before = time.thread_time()
            trace.step(epoch=epoch, position=position, batch=(features, labels), loss=loss,
                       model=model, optimizer=optimizer)
            tracing += time.thread_time() - before
    return (time.thread_time() - start) / len(loader), tracing / len(loader)


def _round(folder: str, index: int, scopes: bool, accelerate: bool = False) -> tuple[float, float, float]:
    """One job whose epochs alternate traced and untraced: (best untraced step, best traced
    step, the traced epochs' share of time in trace.step over the rest of their step)."""
    model, optimizer, loader, backward = _job(scopes, accelerate)
    best = {True: float("inf"), False: float("inf")}
    inside, total = 0.0, 0.0
    path = os.path.join(folder, f"{scopes}.{accelerate}.{index}.trace")
    with rngstate.trace(path, weights_every=100) as trace:
        for epoch in range(2 * EPOCHS_PER_ROUND):
            traced = (epoch + index) % 2 == 1  # alternate, and which goes first, per round
            tracer = trace if traced else None
            step, tracing = _epoch(model, optimizer, loader, backward, epoch, tracer, scopes)
            best[traced] = min(best[traced], step)
            inside, total = inside + tracing, total + (step if traced else 0.0)
    return best[False], best[True], inside / (total - inside)


class _Clock:
    """One fit's CPU times from its second epoch on: each epoch's, and the recording hook's,
    call by call."""

    def __init__(self, clock: Any = time.thread_time) -> None:
        self.clock = clock
        self.epochs: list[float] = []
        self.hook, self.calls, self._start = 0.0, 0, 0.0

    def begin(self) -> None:
        if len(self.epochs) == 1:  # the first epoch builds graphs and opens the trace: left out
            self.hook, self.calls = 0.0, 0
        self._start = self.clock()

    def end(self) -> None:
        self.epochs.append(self.clock() - self._start)

    def wrap(self, callback: Any, hook: str) -> None:
        """Time ``callback.<hook>`` (set on the instance: the trainers look hooks up there)."""
        method, clock = getattr(callback, hook), self.clock

        def timed(*args: Any, **kwargs: Any) -> Any:
            before = clock()
            result = method(*args, **kwargs)
            self.hook += clock() - before
            self.calls += 1
            return result

        setattr(callback, hook, timed)

    def timer(self, base: type, begin: str, end: str) -> Any:
        """A callback of the trainer's class whose epoch hooks start and stop this clock."""
        hooks = {begin: lambda _, *args, **kwargs: self.begin(), end: lambda _, *args, **kwargs: self.end()}
        return type("EpochClock", (base,), hooks)()


def _fit_lightning(trace: str | None, clock: _Clock, folder: str) -> None:
    import lightning.pytorch as pl
    from trainer_lightning import AugmentedPoints, Classifier

    import rngstate.lightning
    import rngstate.torch

    class Longer(Classifier):  # type: ignore[misc]
        def train_dataloader(self) -> Any:
            data = _four_times(AugmentedPoints())
            return rngstate.torch.DataLoader(data, name="train", batch_size=8, shuffle=True)

    callback = rngstate.lightning.RNGStateCallback(trace=trace)
    clock.wrap(callback, "on_train_batch_end")
    timer = clock.timer(pl.Callback, "on_train_epoch_start", "on_train_epoch_end")
    trainer = pl.Trainer(max_epochs=TRAINER_EPOCHS, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[callback, timer])
    trainer.fit(Longer(False, 0))


def _fit_transformers(trace: str | None, clock: _Clock, folder: str) -> None:
    import transformers
    from trainer_transformers import AugmentedPoints, Trainer, build_model

    import rngstate.transformers

    args = transformers.TrainingArguments(  # the example's, without checkpoints
        output_dir=folder, num_train_epochs=TRAINER_EPOCHS, per_device_train_batch_size=8,
        learning_rate=0.05, optim="sgd", optim_args="momentum=0.9", lr_scheduler_type="constant",
        weight_decay=0.0, max_grad_norm=0.0, seed=0, dataloader_num_workers=0, save_strategy="no",
        logging_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
    )
    callback = rngstate.transformers.RNGStateCallback(trace=trace)
    clock.wrap(callback, "trace_micro_batch")
    timer = clock.timer(transformers.TrainerCallback, "on_epoch_begin", "on_epoch_end")
    trainer = Trainer(model=build_model("mlp"), args=args, train_dataset=_four_times(AugmentedPoints(False)),
                      callbacks=[callback, timer])
    trainer.train()


def _fit_keras(trace: str | None, clock: _Clock, folder: str) -> None:
    import keras
    import trainer_keras as example

    import rngstate.keras

    if len(example.LABELS) == 48:  # its PyDataset reads the module's arrays
        example.LABELS, example.POINTS = example.LABELS.repeat(4, axis=0), example.POINTS.repeat(4, axis=0)
    data = example.Points()
    callback = rngstate.keras.RNGStateCallback(folder, save_freq=10**9, data=data, trace=trace)
    clock.wrap(callback, "on_train_batch_end")
    timer = clock.timer(keras.callbacks.Callback, "on_epoch_begin", "on_epoch_end")
    model = example.build_model()
    model.fit(data, epochs=TRAINER_EPOCHS, shuffle=False, callbacks=[callback, timer], verbose=0)


def _fit_paddle(trace: str | None, clock: _Clock, folder: str) -> None:
    import paddle
    from paddle import nn
    from trainer_paddle import AugmentedPoints

    import rngstate.paddle

    paddle.set_device("cpu")  # type: ignore[attr-defined]
    network = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4))
    model = paddle.Model(network)
    optimizer = paddle.optimizer.Momentum(learning_rate=0.05, momentum=0.9, parameters=network.parameters())
    model.prepare(optimizer, nn.CrossEntropyLoss())
    data = _four_times(AugmentedPoints())
    loader = rngstate.paddle.DataLoader(data, name="train", batch_size=8, shuffle=True)
    callback = rngstate.paddle.RNGStateCallback(folder, loader, save_freq=10**9, trace=trace)
    clock.wrap(callback, "on_train_batch_end")
    timer = clock.timer(paddle.callbacks.Callback, "on_epoch_begin", "on_epoch_end")
    model.fit(loader, epochs=TRAINER_EPOCHS, callbacks=[callback, timer], verbose=0)


FITS = {"lightning": _fit_lightning, "transformers": _fit_transformers, "keras": _fit_keras,
        "paddle": _fit_paddle}
# Keras runs its compiled step in TensorFlow's threads (about half its CPU time): the whole
# process's CPU time, about its wall time, for its hook and epochs alike.
CLOCKS = {"keras": time.process_time}


def _trainer_round(name: str, folder: str, index: int) -> tuple[float, float, float, float]:
    """The trainer's fit without and with ``trace=`` (which goes first alternates between
    rounds): the best epoch's CPU seconds a step of each, the time the trace adds in the
    recording hook over the rest of the traced fit's epochs, and that time a step (all from
    the second epoch on)."""
    clocks = {}
    for traced in ((False, True) if index % 2 == 0 else (True, False)):
        rngstate.seed_everything(0)
        clock = clocks[traced] = _Clock(CLOCKS.get(name, time.thread_time))
        trace = os.path.join(folder, f"{name}.{index}.trace") if traced else None
        FITS[name](trace, clock, os.path.join(folder, f"{name}.{index}.{traced}"))
        if clock.calls != STEPS_PER_EPOCH * (TRAINER_EPOCHS - 1):
            raise SystemExit(f"{name}: the hook ran {clock.calls} times, not once a step")
    plain, traced_ = clocks[False], clocks[True]
    added = traced_.hook - plain.hook / plain.calls * traced_.calls
    rest = sum(traced_.epochs[1:]) - traced_.hook
    best = min(plain.epochs[1:]) / STEPS_PER_EPOCH, min(traced_.epochs[1:]) / STEPS_PER_EPOCH
    return best[0], best[1], added / rest, added / traced_.calls


def _trainer_rounds(name: str, rounds: int) -> list[tuple[float, ...]] | str:
    """The rounds of one trainer, run in a process of its own; or why there are none."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, os.path.abspath(__file__), "--trainer", name, "--rounds", str(rounds)]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in result.stdout.splitlines():
        if line.startswith("ROUNDS "):
            return [tuple(r) for r in json.loads(line[len("ROUNDS "):])]
    why = result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}"
    return why.splitlines()[-1]


def _child(name: str, rounds: int) -> None:
    if name in ("lightning", "transformers"):  # not imported by the others: it would be one more stream
        import torch

        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        results = [_trainer_round(name, folder, index) for index in range(rounds)]
    print("ROUNDS " + json.dumps(results), flush=True)


def _row(label: str, ratios: list[float], target: float | None = None) -> str:
    over = target is not None and statistics.median(ratios) > target
    verdict = "" if target is None else f"  OVER {target}" if over else "  ok"
    return f"{label:<34} {statistics.median(ratios):.3f}  ({min(ratios):.3f}-{max(ratios):.3f}){verdict}"


def main(argv: list[str]) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    parser.add_argument("--trainer", choices=sorted(FITS), help=argparse.SUPPRESS)  # one trainer's process
    parser.add_argument("--rounds", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.trainer:
        _child(args.trainer, args.rounds)
        return
    import torch

    torch.set_num_threads(1)
    rounds = 3 if args.quick else 7
    with tempfile.TemporaryDirectory() as folder:
        plain = [_round(folder, index, False) for index in range(rounds)]
        scoped = [_round(folder, index, True) for index in range(rounds)]
        accelerated = [_round(folder, index, False, accelerate=True) for index in range(rounds)]
    trainers = {name: _trainer_rounds(name, rounds) for name in TRAINERS}
    print(f"python {platform.python_version()}, torch {torch.__version__}, {platform.machine()}, "
          f"{rounds} rounds, {STEPS_PER_EPOCH} steps an epoch, K=100")
    print(f"hand loop: {2 * EPOCHS_PER_ROUND} epochs a round, a step without a trace "
          f"{statistics.median(r[0] for r in plain) * 1e6:.0f} us, in trace.step "
          f"{statistics.median(r[2] * r[0] for r in plain) * 1e6:.0f} us")
    print("ratio to the same training without a trace, median (range)")
    print(_row("trace (time in trace.step)", [1 + r[2] for r in plain]))
    print(_row("trace (best epochs)", [r[1] / r[0] for r in plain]))
    print(_row("trace, 3 scopes (time in step)", [1 + r[2] for r in scoped]))
    print(_row("trace, 3 scopes (best epochs)", [r[1] / r[0] for r in scoped]))
    print(_row("accelerate (time in trace.step)", [1 + r[2] for r in accelerated], TARGET))
    print(_row("accelerate (best epochs)", [r[1] / r[0] for r in accelerated], TARGET))
    print(f"trainers: {TRAINER_EPOCHS} epochs a fit; a step without a trace, the trace's time in the hook:")
    for name, label in TRAINERS.items():
        results = trainers[name]
        if isinstance(results, str):
            print(f"{label}: not measured: {results}")
            continue
        step = statistics.median(r[0] for r in results)
        print(f"{label + ' (us)':<34} {step * 1e6:.0f}, {statistics.median(r[3] for r in results) * 1e6:.0f}")
    for name, label in TRAINERS.items():
        results = trainers[name]
        if not isinstance(results, str):
            print(_row(f"{label} (in callback)", [1 + r[2] for r in results], TARGET))
            print(_row(f"{label} (best epochs)", [r[1] / r[0] for r in results], TARGET))


if __name__ == "__main__":
    main(sys.argv[1:])
