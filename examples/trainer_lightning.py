"""Exact resume inside Lightning: killed right after a mid-epoch checkpoint, resumed in a new
process with ``trainer.fit(ckpt_path=...)``, the final weights equal the run that never stopped.

    python examples/trainer_lightning.py            # runs all three processes, prints the verdict

What rngstate adds to a Lightning script (marked ``# rngstate`` below): ``seed_everything``, the
loader, the callback.  One run at a time:

    python examples/trainer_lightning.py --run                          # uninterrupted
    python examples/trainer_lightning.py --run --stop-at 8 --checkpoint ckpts   # dies after saving
    python examples/trainer_lightning.py --run --resume ckpts/interrupted.ckpt --workers 0

``--plain`` is Lightning on its own, as its docs recommend (``seed_everything(workers=True)``, a
torch DataLoader, ``ModelCheckpoint``); ``--ddp`` trains on 2 CPU processes (gloo).  ``--trace
FILE`` records a step trace (one file per rank): give the killed run and its resumed run the same
file, and ``rngstate compare uninterrupted.trace resumed.trace`` says ``identical``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

import rngstate
import rngstate.lightning
import rngstate.torch

EPOCHS = 3
BATCH_SIZE = 8  # 48 samples: 6 steps per epoch


class AugmentedPoints(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """48 points in 4 classes; every access adds NumPy, Python and torch randomness."""

    def __init__(self) -> None:
        source = np.random.RandomState(1234)  # the data itself is fixed
        self.labels = source.randint(0, 4, size=48)
        self.points = source.normal(size=(48, 16)) + self.labels[:, None]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.points[index] + np.random.normal(0.0, 0.3, size=16)
        if random.random() < 0.5:
            x = x[::-1].copy()
        return torch.from_numpy(x).float() + 0.1 * torch.randn(16), int(self.labels[index])


class Classifier(pl.LightningModule):
    def __init__(self, plain: bool, workers: int) -> None:
        super().__init__()
        self.plain, self.workers = plain, workers
        self.net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4))

    def training_step(self, batch: Any, batch_index: int) -> torch.Tensor:
        features, labels = batch
        return nn.functional.cross_entropy(self.net(features), labels)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    def train_dataloader(self) -> Any:
        if self.plain:
            return torch.utils.data.DataLoader(
                AugmentedPoints(), batch_size=BATCH_SIZE, shuffle=True, num_workers=self.workers
            )
        return rngstate.torch.DataLoader(  # rngstate
            AugmentedPoints(), name="train", batch_size=BATCH_SIZE, shuffle=True, num_workers=self.workers
        )


class CheckpointThenDie(pl.callbacks.ModelCheckpoint):
    """Saves at step ``stop_at``, then the process dies at once (as if killed)."""

    def __init__(self, stop_at: int, folder: str) -> None:
        super().__init__(dirpath=folder, filename="interrupted", every_n_train_steps=stop_at, save_top_k=-1)
        self.stop_at = stop_at

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        super().on_train_batch_end(trainer, *args)
        if trainer.global_step == self.stop_at:
            if trainer.is_global_zero:
                print(f"checkpoint saved at step {self.stop_at}", flush=True)
            os._exit(0)


def weights_hash(model: nn.Module) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)  # the same arithmetic in every run
    if args.plain:
        pl.seed_everything(args.seed, workers=True, verbose=False)
    else:
        rngstate.seed_everything(args.seed)  # rngstate
    model = Classifier(args.plain, args.workers)
    rng_callback = rngstate.lightning.RNGStateCallback(trace=args.trace)  # rngstate (trace: optional)
    callbacks: list[Any] = [] if args.plain else [rng_callback]
    if args.stop_at:
        callbacks.append(CheckpointThenDie(args.stop_at, args.checkpoint))
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        devices=2 if args.ddp else 1,
        strategy="ddp" if args.ddp else "auto",
        callbacks=callbacks,
        enable_checkpointing=bool(args.stop_at),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, ckpt_path=args.resume)
    if trainer.is_global_zero:
        kind = "Lightning alone" if args.plain else "Lightning + rngstate"
        print(f"final weights {weights_hash(model)}  ({kind}, {args.workers} workers)", flush=True)


def run(*options: str) -> str:
    """One training in its own process; returns what it printed."""
    command = [sys.executable, __file__, "--run", *options]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def final_hash(output: str) -> str:
    return output.split("final weights ")[1].split()[0]


def demo(plain: bool) -> None:
    extra = ["--plain"] if plain else []
    reference = final_hash(run("--workers", "2", *extra))
    with tempfile.TemporaryDirectory() as folder:
        run("--workers", "2", "--stop-at", "8", "--checkpoint", folder, *extra)
        workers = "2" if plain else "0"  # Lightning alone: not even the same number of workers helps
        checkpoint = str(Path(folder, "interrupted.ckpt"))
        resumed = final_hash(run("--workers", workers, "--resume", checkpoint, *extra))
    kind = "Lightning alone" if plain else "Lightning + rngstate"
    print(f"{kind}: uninterrupted {reference}, killed at step 8 and resumed with {workers} workers "
          f"{resumed}: bit-identical: {reference == resumed}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", action="store_true", help="one training run (else: the whole demo)")
    parser.add_argument("--stop-at", type=int, default=0, help="save a checkpoint at this step and die")
    parser.add_argument("--checkpoint", default="lightning_ckpts", help="checkpoint folder")
    parser.add_argument("--resume", help="checkpoint file to resume from")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plain", action="store_true", help="Lightning alone, without rngstate")
    parser.add_argument("--ddp", action="store_true", help="2 CPU processes, strategy='ddp'")
    parser.add_argument("--trace", help="record a step trace (rngstate compare A B tells where runs part)")
    args = parser.parse_args()
    if args.run:
        train(args)
    else:
        demo(plain=False)
        demo(plain=True)


if __name__ == "__main__":
    main()
