"""``trace=`` on every integration's callback: each run of a small training writes a step trace;
two runs of the same job compare identical, and the records hold what the trainer shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from rngstate.tracing import compare, read_trace
from tests.conftest import PRELOAD_KERAS, PRELOAD_LIGHTNING, PRELOAD_PADDLE, PRELOAD_TRANSFORMERS, run_python

slow = pytest.mark.slow

# The Lightning scripts' module; each script defines ``loader()`` before it.
LIGHTNING_NET = """
class Net(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.Linear(8, 2))
    def training_step(self, batch, index):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)
    def train_dataloader(self):
        return loader()
"""

LIGHTNING = """
import sys, torch, lightning.pytorch as pl, rngstate, rngstate.lightning, rngstate.torch
from torch import nn

def loader():
    data = [(torch.randn(4), i % 2) for i in range(24)]
    return rngstate.torch.DataLoader(data, name="train", batch_size=4, shuffle=True)
""" + LIGHTNING_NET + """

torch.set_num_threads(1)
rngstate.seed_everything(0)
trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, accumulate_grad_batches=2,
                     callbacks=[rngstate.lightning.RNGStateCallback(trace=sys.argv[1])])
trainer.fit(Net())
"""

# 7 batches an epoch (14 samples, batches of 2): no accumulation of 2 or 3 divides it, so each
# epoch ends on a shorter accumulation that Lightning steps at the epoch's last batch.
# argv: trace, checkpoint folder, mode ("schedule": accumulation 3, 2, 1 by epoch through a
# GradientAccumulationScheduler listed after the rngstate callback; "full"/"die"/"resume":
# accumulation 3, the run killed after the checkpoint of optimizer step 4 and resumed).
LIGHTNING_ACCUMULATION = """
import os, sys, torch, lightning.pytorch as pl, rngstate, rngstate.lightning, rngstate.torch
from torch import nn

def loader():
    data = [(torch.randn(4, generator=torch.Generator().manual_seed(i)), i % 2) for i in range(14)]
    return rngstate.torch.DataLoader(data, name="train", batch_size=2, shuffle=True)
""" + LIGHTNING_NET + """

class CheckpointThenDie(pl.callbacks.ModelCheckpoint):  # Lightning runs checkpoints last
    def on_train_batch_end(self, trainer, *args):
        super().on_train_batch_end(trainer, *args)
        if trainer.global_step == 4:
            os._exit(0)  # as if killed, right after the checkpoint of step 4

torch.set_num_threads(1)
rngstate.seed_everything(0)
trace, folder, mode = sys.argv[1:4]
callbacks = [rngstate.lightning.RNGStateCallback(trace=trace)]
options = {"accumulate_grad_batches": 3}
if mode == "schedule":
    callbacks.append(pl.callbacks.GradientAccumulationScheduler({0: 3, 1: 2, 2: 1}))
    options = {}
if mode == "die":
    callbacks.append(CheckpointThenDie(dirpath=folder, filename="at4", every_n_train_steps=4, save_top_k=-1))
trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=mode == "die",
                     enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks, **options)
trainer.fit(Net(), ckpt_path=os.path.join(folder, "at4.ckpt") if mode == "resume" else None)
"""

TRANSFORMERS = """
import sys, torch, transformers, rngstate, rngstate.transformers
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.Linear(8, 2))
    def forward(self, x, labels):
        return {"loss": nn.functional.cross_entropy(self.net(x), labels)}

class Trainer(rngstate.transformers.RNGStateMixin, transformers.Trainer):
    pass

torch.set_num_threads(1)
rngstate.seed_everything(0)
data = [{"x": torch.randn(4), "labels": i % 2} for i in range(24)]
args = transformers.TrainingArguments(output_dir=sys.argv[2], max_steps=4, per_device_train_batch_size=4,
                                      gradient_accumulation_steps=2, report_to=[], save_strategy="no",
                                      use_cpu=True, logging_strategy="no", disable_tqdm=True)
trainer = Trainer(model=Net(), args=args, train_dataset=data,
                  callbacks=[rngstate.transformers.RNGStateCallback(trace=sys.argv[1])])
trainer.train()
"""

KERAS = """
import sys, numpy as np, rngstate, rngstate.keras, keras

rngstate.seed_everything(0)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dropout(0.3),
                          keras.layers.Dense(2)])
model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
x, y = np.random.rand(24, 4), np.arange(24) % 2
callback = rngstate.keras.RNGStateCallback(sys.argv[2], trace=sys.argv[1])
model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, callbacks=[callback])
"""

PADDLE = """
import sys, numpy as np, paddle, rngstate, rngstate.paddle

rngstate.seed_everything(0)
class Data(paddle.io.Dataset):
    def __len__(self): return 24
    def __getitem__(self, i): return np.float32(np.random.rand(4)), np.int64(i % 2)
net = paddle.nn.Sequential(paddle.nn.Linear(4, 8), paddle.nn.Dropout(0.3), paddle.nn.Linear(8, 2))
model = paddle.Model(net)
optimizer = paddle.optimizer.SGD(learning_rate=0.1, parameters=net.parameters())
model.prepare(optimizer, paddle.nn.CrossEntropyLoss())
loader = rngstate.paddle.DataLoader(Data(), name="train", batch_size=4, shuffle=True)
callback = rngstate.paddle.RNGStateCallback(sys.argv[2], loader, save_freq=100, trace=sys.argv[1])
model.fit(loader, epochs=2, verbose=0, callbacks=[callback])
"""


def _twice(tmp_path: Path, code: str, preload: tuple[str, ...]) -> tuple[Path, Path]:
    paths = []
    for name in ("a", "b"):
        run_python(code, str(tmp_path / f"{name}.trace"), str(tmp_path / f"{name}-out"), preload=preload)
        paths.append(tmp_path / f"{name}.trace")
    result = compare(*paths)
    assert result.identical, str(result)
    return paths[0], paths[1]


@slow
def test_lightning(tmp_path: Path) -> None:
    a, _ = _twice(tmp_path, LIGHTNING, PRELOAD_LIGHTNING)
    steps = read_trace(a).steps
    # 6 batches an epoch, accumulation 2: optimizer steps 1-3 and 4-6, two phases each
    places = [(r.step, r.phase, r.epoch, r.position) for r in steps[:3]]
    assert places == [(1, 0, 0, 0), (1, 1, 0, 1), (2, 0, 0, 2)]
    assert len(steps) == 12 and steps[-1].step == 6
    assert all(r.batch is not None and r.loss is not None and "torch.cpu" in r.streams for r in steps)


def _places(accumulations: list[int], batches: int) -> list[tuple[int, int, int, int | None]]:
    """(step, epoch, position, phase) of each batch, counted here from the accumulation of each
    epoch: an optimizer step every ``k`` batches and at the epoch's last batch."""
    places, done = [], 0
    for epoch, k in enumerate(accumulations):
        places += [(done + i // k + 1, epoch, i, i % k if k > 1 else None) for i in range(batches)]
        done += -(-batches // k)
    return places


@slow
def test_lightning_accumulation_that_does_not_divide_the_epoch(tmp_path: Path) -> None:
    """Each record's step, epoch, position and phase, with an accumulation that changes by
    epoch (set by a callback listed after rngstate's) and one of 3 killed mid-epoch and resumed:
    the resumed trace is the uninterrupted one, record for record."""
    schedule = str(tmp_path / "schedule.trace")
    run_python(LIGHTNING_ACCUMULATION, schedule, str(tmp_path), "schedule", preload=PRELOAD_LIGHTNING)
    steps = read_trace(schedule).steps
    assert [(r.step, r.epoch, r.position, r.phase) for r in steps] == _places([3, 2, 1], 7)
    assert all(r.batch is not None and r.loss is not None for r in steps)
    full, resumed = str(tmp_path / "full.trace"), str(tmp_path / "resumed.trace")
    run_python(LIGHTNING_ACCUMULATION, full, str(tmp_path), "full", preload=PRELOAD_LIGHTNING)
    assert [(r.step, r.epoch, r.position, r.phase) for r in read_trace(full).steps] == _places([3] * 3, 7)
    run_python(LIGHTNING_ACCUMULATION, resumed, str(tmp_path), "die", preload=PRELOAD_LIGHTNING)
    assert [r.step for r in read_trace(resumed).steps][-1] == 4  # killed at epoch 1's third batch
    run_python(LIGHTNING_ACCUMULATION, resumed, str(tmp_path), "resume", preload=PRELOAD_LIGHTNING)
    result = compare(full, resumed)
    assert result.identical and result.compared == 21, str(result)
    assert [r.resumed for r in read_trace(resumed).steps].index(True) == 10  # epoch 1, position 3


@slow
def test_transformers(tmp_path: Path) -> None:
    a, _ = _twice(tmp_path, TRANSFORMERS, PRELOAD_TRANSFORMERS)
    steps = read_trace(a).steps
    assert [(r.step, r.phase) for r in steps] == [(s, p) for s in (1, 2, 3, 4) for p in (0, 1)]
    assert all(r.batch is not None and r.loss is not None for r in steps)


@slow
def test_keras_fit(tmp_path: Path) -> None:
    a, _ = _twice(tmp_path, KERAS, PRELOAD_KERAS)
    steps = read_trace(a).steps
    assert [(r.step, r.epoch, r.position) for r in steps[5:8]] == [(6, 0, 5), (7, 1, 0), (8, 1, 1)]
    assert all(r.loss is not None and r.streams for r in steps)


@slow
def test_paddle_fit(tmp_path: Path) -> None:
    a, _ = _twice(tmp_path, PADDLE, PRELOAD_PADDLE)
    steps = read_trace(a).steps
    assert [(r.step, r.epoch) for r in steps[5:8]] == [(6, 0), (7, 1), (8, 1)]
    assert all(r.loss is not None and "paddle.cpu" in r.streams for r in steps)


@slow
def test_the_lightning_example_proves_its_resume(tmp_path: Path) -> None:
    """examples/trainer_lightning.py killed at step 8 and resumed with another number of
    workers: its trace compares identical with the uninterrupted run's, step for step."""
    from tests.integrations.conftest import TrainerExample

    example = TrainerExample("trainer_lightning.py", preload=PRELOAD_LIGHTNING)
    example.run("--workers", "0", "--trace", str(tmp_path / "uninterrupted.trace"))
    resumed = str(tmp_path / "resumed.trace")
    example.interrupted(tmp_path / "ckpts", 8, "--workers", "2", "--trace", resumed)
    assert [r.step for r in read_trace(resumed).steps] == list(range(1, 9))
    checkpoint = str(tmp_path / "ckpts" / "interrupted.ckpt")
    example.run("--resume", checkpoint, "--workers", "0", "--trace", resumed)
    result = compare(tmp_path / "uninterrupted.trace", resumed)
    assert result.identical and result.compared == 18, str(result)
    assert [r.resumed for r in read_trace(resumed).steps].index(True) == 8  # step 9: the resume


@slow
def test_two_ranks_each_prove_their_resume(tmp_path: Path) -> None:
    """DDP on two gloo ranks: one trace file per rank; each rank's resumed trace compares
    identical with that rank's uninterrupted one (and the ranks' own traces differ: their
    batches are other shards)."""
    from rngstate.cli import main
    from tests.integrations.conftest import TrainerExample

    example = TrainerExample("trainer_lightning.py", preload=PRELOAD_LIGHTNING)
    example.run("--ddp", "--workers", "0", "--trace", str(tmp_path / "a" / "run.trace"))
    traced = ("--trace", str(tmp_path / "b" / "run.trace"))
    example.interrupted(tmp_path / "ckpts", 4, "--ddp", "--workers", "0", *traced)
    example.run("--ddp", "--resume", str(tmp_path / "ckpts" / "interrupted.ckpt"), "--workers", "0", *traced)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["run.rank0.trace", "run.rank1.trace"]
    for rank in ("0", "1"):
        assert main(["compare", str(tmp_path / "a" / "run.trace"), str(tmp_path / "b" / "run.trace"),
                     "--rank", rank]) == 0
    across = compare(tmp_path / "a" / "run.rank0.trace", tmp_path / "a" / "run.rank1.trace")
    assert across.differed == "batch" and "compare the traces of one rank" in " ".join(across.notes)
