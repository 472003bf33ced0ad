"""Exact resume: stop training mid-epoch, resume in a new process, get the very same weights.

A small model with dropout learns from a dataset that augments every sample with Python
``random``, NumPy and torch noise, loaded by DataLoader workers.  Stop it anywhere, resume it --
even with another number of workers -- and the final weights hash matches the run that never
stopped.

    python examples/resume_torch.py                          # uninterrupted, 2 workers
    python examples/resume_torch.py --stop-at 8              # saves a checkpoint, exits
    python examples/resume_torch.py --resume --workers 0     # continues: same hash

``--plain`` does what most training code (and accelerate, transformers, Composer) does instead:
``torch.utils.data.DataLoader``, RNG state restored, consumed batches skipped.  Its resumed run
ends with different weights.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import rngstate
import rngstate.torch

EPOCHS = 3
BATCH_SIZE = 8


class AugmentedPoints(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """48 points in 4 classes; every access adds NumPy, Python and torch randomness."""

    def __init__(self) -> None:
        source = np.random.RandomState(1234)  # the data itself is fixed
        self.labels = source.randint(0, 4, size=48)
        self.points = source.normal(size=(48, 16)) + self.labels[:, None]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.points[index] + np.random.normal(0.0, 0.3, size=16)  # NumPy
        if random.random() < 0.5:  # Python
            x = x[::-1].copy()
        features = torch.from_numpy(x).float() + 0.1 * torch.randn(16)  # torch
        return features, int(self.labels[index])


def weights_hash(model: nn.Module) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def make_loader(dataset: AugmentedPoints, plain: bool, workers: int) -> Any:
    if plain:
        return torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, num_workers=workers)
    return rngstate.torch.DataLoader(
        dataset, name="train", batch_size=BATCH_SIZE, shuffle=True, num_workers=workers
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stop-at", type=int, help="save a checkpoint after this many steps and exit")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    parser.add_argument("--checkpoint", default="resume_torch.ckpt", help="checkpoint file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plain", action="store_true", help="plain torch DataLoader, for comparison")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the same arithmetic in every run, whatever the machine's load

    rngstate.seed_everything(args.seed)
    with rngstate.rng_scope("model"):
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    dataset = AugmentedPoints()
    loader = make_loader(dataset, args.plain, args.workers)

    step, start_epoch, skip = 0, 0, 0
    if args.resume:
        # weights_only=True: the checkpoint holds tensors and plain data only, no pickled objects.
        checkpoint = torch.load(args.checkpoint, weights_only=True)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        rngstate.restore(checkpoint["rng"])
        step, start_epoch = checkpoint["step"], checkpoint["epoch"]
        if args.plain:
            skip = checkpoint["batches_done"]  # what accelerate's skip_first_batches does
        else:
            loader.load_state_dict(checkpoint["loader"])

    model.train()
    for epoch in range(start_epoch, EPOCHS):
        if not args.plain:
            loader.set_epoch(epoch)  # right after load_state_dict: continues mid-epoch
        batches = itertools.islice(loader, skip, None)
        for batch_index, (features, labels) in enumerate(batches, start=skip):
            loss = nn.functional.cross_entropy(model(features), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == args.stop_at:
                torch.save(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "rng": rngstate.capture().to_dict(),  # every generator, plain data
                        "loader": None if args.plain else loader.state_dict(),
                        "epoch": epoch,
                        "batches_done": batch_index + 1,
                        "step": step,
                    },
                    args.checkpoint,
                )
                print(f"checkpoint saved at step {step} (epoch {epoch}, batch {batch_index + 1}) "
                      f"-> {Path(args.checkpoint).name}")
                return
        skip = 0
    kind = "plain DataLoader" if args.plain else "rngstate DataLoader"
    print(f"final weights {weights_hash(model)}  ({kind}, {args.workers} workers, {step} steps"
          f"{', resumed' if args.resume else ''})")


if __name__ == "__main__":
    main(sys.argv[1:])
