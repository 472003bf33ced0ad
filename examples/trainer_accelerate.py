"""Exact resume with accelerate: ``save_state`` mid-epoch, the process dies, ``load_state`` in a new
process, and the final weights equal the run that never stopped.

    python examples/trainer_accelerate.py            # runs all three processes, prints the verdict

rngstate adds (marked ``# rngstate``): ``seed_everything``, the loader (not passed through
``accelerator.prepare``) and ``register_for_checkpointing(rngstate.stateful(), loader)``.

    python examples/trainer_accelerate.py --run                                # uninterrupted
    python examples/trainer_accelerate.py --run --stop-at 8 --checkpoint ckpt  # dies after saving
    python examples/trainer_accelerate.py --run --resume ckpt --workers 0

``--plain`` is accelerate's own recipe: ``set_seed``, a prepared torch DataLoader,
``save_state`` / ``load_state`` (which restores the RNG states) and ``skip_first_batches``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn

import rngstate
import rngstate.torch

EPOCHS = 3
BATCH_SIZE = 8  # 48 samples: 6 steps per epoch
STEPS_PER_EPOCH = 6


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


def weights_hash(model: nn.Module) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)  # the same arithmetic in every run
    accelerator = Accelerator(cpu=True)
    if args.plain:
        set_seed(args.seed)
    else:
        rngstate.seed_everything(args.seed)  # rngstate
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    if args.plain:
        loader: Any = torch.utils.data.DataLoader(
            AugmentedPoints(), batch_size=BATCH_SIZE, shuffle=True, num_workers=args.workers
        )
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    else:
        model, optimizer = accelerator.prepare(model, optimizer)
        loader = rngstate.torch.DataLoader(  # rngstate
            AugmentedPoints(), name="train", batch_size=BATCH_SIZE, shuffle=True, num_workers=args.workers
        )
        accelerator.register_for_checkpointing(rngstate.stateful(), loader)  # rngstate
    progress = {"step": 0}

    class Progress:  # the step counter, saved by accelerate with everything else
        def state_dict(self) -> dict[str, int]:
            return dict(progress)

        def load_state_dict(self, state: dict[str, int]) -> None:
            progress.update(state)

    accelerator.register_for_checkpointing(Progress())
    if args.resume:
        accelerator.load_state(args.resume)
    start_epoch, skip = divmod(progress["step"], STEPS_PER_EPOCH)
    model.train()
    for epoch in range(start_epoch, EPOCHS):
        if args.plain:
            loader.set_epoch(epoch)
            batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        else:
            loader.set_epoch(epoch)  # right after load_state: continues mid-epoch
            batches = loader
        skip = 0
        for features, labels in batches:
            loss = nn.functional.cross_entropy(model(features), labels)
            optimizer.zero_grad()
            accelerator.backward(loss)
            optimizer.step()
            progress["step"] += 1
            if progress["step"] == args.stop_at:
                accelerator.save_state(args.checkpoint)
                print(f"checkpoint saved at step {args.stop_at}", flush=True)
                os._exit(0)  # as if killed
    kind = "accelerate alone" if args.plain else "accelerate + rngstate"
    print(f"final weights {weights_hash(accelerator.unwrap_model(model))}  ({kind}, {args.workers} workers)")


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
        workers = "2" if plain else "0"  # accelerate alone: not even the same number of workers helps
        resumed = final_hash(run("--workers", workers, "--resume", folder, *extra))
    kind = "accelerate alone" if plain else "accelerate + rngstate"
    print(f"{kind}: uninterrupted {reference}, killed at step 8 and resumed with {workers} workers "
          f"{resumed}: bit-identical: {reference == resumed}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", action="store_true", help="one training run (else: the whole demo)")
    parser.add_argument("--stop-at", type=int, default=0, help="save a checkpoint at this step and die")
    parser.add_argument("--checkpoint", default="accelerate_ckpt", help="checkpoint folder")
    parser.add_argument("--resume", help="checkpoint folder to resume from")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plain", action="store_true", help="accelerate alone, without rngstate")
    args = parser.parse_args()
    if args.run:
        train(args)
    else:
        demo(plain=False)
        demo(plain=True)


if __name__ == "__main__":
    main()
