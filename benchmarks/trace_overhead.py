"""What a step trace costs: the trainer examples' training step with ``trace.step(...)`` against
the same loop without it, in the same run.

    python benchmarks/trace_overhead.py            # 7 rounds
    python benchmarks/trace_overhead.py --quick    # 3 rounds

The step is the one of ``examples/trainer_lightning.py`` and ``examples/resume_torch.py``, in a
hand-written loop (the strictest case: no trainer around it to hide a cost) and in Lightning:
the 16-32-4 MLP with dropout, SGD with momentum, batches of 8 from ``rngstate.torch.DataLoader``
over the augmenting dataset (Python, NumPy and torch noise per sample), one thread.  The traced
step records what the issue asks: every stream's fingerprint, the batch (features and labels),
the loss, and with ``weights_every=100`` (K=100) the weights and optimizer state every 100
steps.  Rows:

- ``trace (time in trace.step)``: one plus the time spent inside ``trace.step`` over the rest
  of the traced steps (measured call by call, the figure the load of other processes disturbs
  least);
- ``trace (best epochs)``: the best traced epoch's step time over the best untraced one's;
- ``trace, 3 scopes``: the same with the model built in three scopes and one of them entered at
  every step (a substream touched each step is fingerprinted again);
- ``Lightning, trace=``: ``examples/trainer_lightning.py``'s model and data in ``Trainer.fit``
  with ``rngstate.lightning.RNGStateCallback(trace=...)`` against the same callback without a
  trace: one plus the time spent in the callback's ``on_train_batch_end`` (where it records)
  over the rest of the traced fit's epochs, and the best epoch's time a step of each (the
  target: at most 1.03).

In a round one job alternates traced and untraced epochs (which goes first alternates between
rounds), so load from other processes hits both alike; the median and the range of the rounds
are reported.  Times are this thread's CPU time (``time.thread_time``): on a shared machine wall
time mostly measures the other processes.  That is all the CPU a trace spends: it runs no thread
of its own, and thread CPU time counts the kernel's work for the thread too (the page faults of
the first copy into each page of the mapped room, the ``posix_fallocate`` every MiB, the
``write`` of a file system that cannot reserve room); only the kernel's later writeback of the
page cache, as for any ``write``, is not the thread's.

Measured (2-core shared machine, format 4, nine ``--quick`` runs alternating with format 3):
``trace (time in trace.step)`` 1.104 (1.102-1.109) against 1.136 (1.129-1.139);
``Lightning, trace= (in callback)`` 1.072 (1.069-1.078) against 1.086 (1.085-1.091).  Both miss
the 3% target on this tiny step; docs/diagnostics.md ("Cost") says where the time goes.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))

import torch
from resume_torch import AugmentedPoints  # the examples' dataset
from torch import nn

import rngstate
import rngstate.torch

EPOCHS_PER_ROUND = 6
TARGET = 1.03


def _job(scopes: bool) -> tuple[nn.Module, Any, Any]:
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
    dataset = AugmentedPoints()
    dataset.points = dataset.points.repeat(4, axis=0)  # 192 samples: 24 steps an epoch
    dataset.labels = dataset.labels.repeat(4)
    loader = rngstate.torch.DataLoader(dataset, name="train", batch_size=8, shuffle=True)
    return model, optimizer, loader


def _epoch(model: nn.Module, optimizer: Any, loader: Any, epoch: int, trace: Any,
           scopes: bool) -> tuple[float, float]:
    """(seconds per step, of which seconds per step inside trace.step)."""
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
        loss.backward()
        optimizer.step()
        if trace is not None:
            before = time.thread_time()
            trace.step(epoch=epoch, position=position, batch=(features, labels), loss=loss,
                       model=model, optimizer=optimizer)
            tracing += time.thread_time() - before
    return (time.thread_time() - start) / len(loader), tracing / len(loader)


def _round(folder: str, index: int, scopes: bool) -> tuple[float, float, float]:
    """One job whose epochs alternate traced and untraced: (best untraced step, best traced
    step, the traced epochs' share of time in trace.step over the rest of their step)."""
    model, optimizer, loader = _job(scopes)
    best = {True: float("inf"), False: float("inf")}
    inside, total = 0.0, 0.0
    with rngstate.trace(os.path.join(folder, f"{scopes}.{index}.trace"), weights_every=100) as trace:
        for epoch in range(2 * EPOCHS_PER_ROUND):
            traced = (epoch + index) % 2 == 1  # alternate, and which goes first, per round
            step, tracing = _epoch(model, optimizer, loader, epoch, trace if traced else None, scopes)
            best[traced] = min(best[traced], step)
            inside, total = inside + tracing, total + (step if traced else 0.0)
    return best[False], best[True], inside / (total - inside)


def _lightning_round(folder: str, index: int, epochs: int) -> tuple[float, float, float]:
    """examples/trainer_lightning.py's model and data in ``Trainer.fit``, with the rngstate
    callback without and with ``trace=`` (fits alternate; which goes first alternates between
    rounds): the best epoch's CPU seconds per step of each, and the traced fit's share of time
    in the callback's ``on_train_batch_end`` (where it records) over the rest of its epochs."""
    import lightning.pytorch as pl
    from trainer_lightning import Classifier

    import rngstate.lightning

    class EpochTimer(pl.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.best, self.start, self.total = float("inf"), 0.0, 0.0

        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            self.start = time.thread_time()

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            self.total += time.thread_time() - self.start
            self.best = min(self.best, (time.thread_time() - self.start) / trainer.num_training_batches)

    class TimedCallback(rngstate.lightning.RNGStateCallback):  # type: ignore[misc]
        inside = 0.0

        def on_train_batch_end(self, *args: Any) -> None:
            before = time.thread_time()
            super().on_train_batch_end(*args)
            self.inside += time.thread_time() - before

    best, share = {}, 0.0
    for traced in ((False, True) if index % 2 == 0 else (True, False)):
        rngstate.seed_everything(0)
        timer = EpochTimer()
        trace = os.path.join(folder, f"lightning.{index}.trace") if traced else None
        callback = TimedCallback(trace=trace)
        trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False,
                             callbacks=[callback, timer])
        trainer.fit(Classifier(False, 0))
        best[traced] = timer.best
        if traced:
            share = callback.inside / (timer.total - callback.inside)
    return best[False], best[True], share


def _row(label: str, ratios: list[float], target: float | None = None) -> str:
    over = target is not None and statistics.median(ratios) > target
    verdict = "" if target is None else f"  OVER {target}" if over else "  ok"
    return f"{label:<34} {statistics.median(ratios):.3f}  ({min(ratios):.3f}-{max(ratios):.3f}){verdict}"


def main(argv: list[str]) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rounds = 3 if args.quick else 7
    with tempfile.TemporaryDirectory() as folder:
        plain = [_round(folder, index, False) for index in range(rounds)]
        scoped = [_round(folder, index, True) for index in range(rounds)]
        lightning = [_lightning_round(folder, index, 2 * EPOCHS_PER_ROUND) for index in range(rounds)]
    print(f"python {platform.python_version()}, torch {torch.__version__}, {platform.machine()}, "
          f"{rounds} rounds of {2 * EPOCHS_PER_ROUND} epochs x 24 steps, K=100")
    print(f"step time without a trace: {statistics.median(r[0] for r in plain) * 1e6:.0f} us, "
          f"in trace.step: {statistics.median(r[2] * r[0] for r in plain) * 1e6:.0f} us")
    print("ratio to the same loop without a trace, median (range)")
    print(_row("trace (time in trace.step)", [1 + r[2] for r in plain]))
    print(_row("trace (best epochs)", [r[1] / r[0] for r in plain]))
    print(_row("trace, 3 scopes (time in step)", [1 + r[2] for r in scoped]))
    print(_row("trace, 3 scopes (best epochs)", [r[1] / r[0] for r in scoped]))
    print(f"Lightning (examples/trainer_lightning.py, 6 steps an epoch): "
          f"{statistics.median(r[0] for r in lightning) * 1e6:.0f} us a step without a trace")
    print(_row("Lightning, trace= (in callback)", [1 + r[2] for r in lightning], TARGET))
    print(_row("Lightning, trace= (best epochs)", [r[1] / r[0] for r in lightning], TARGET))


if __name__ == "__main__":
    main(sys.argv[1:])
