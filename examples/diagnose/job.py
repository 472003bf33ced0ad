"""A hand-written training loop that records a step trace and resumes from a checkpoint.

    python examples/diagnose/job.py --trace run.trace                     # uninterrupted
    python examples/diagnose/job.py --trace b.trace --stop-at 8           # checkpoint at step 8,
                                                                          # killed (SIGKILL) at 10
    python examples/diagnose/job.py --trace b.trace --resume              # continues b.trace

``rngstate compare run.trace b.trace`` then says ``identical``.  Each ``--bug`` breaks the job
in one way, as the scripts next to this one show (``python examples/diagnose/<bug>.py``):

- ``nondeterministic-kernel``: the model's output depends on something no seed controls (it
  stands in for a GPU kernel whose float sums run in a different order each time);
- ``drew-after-restore``: the resumed run draws a random number after restoring the RNG state;
- ``loader-not-loaded``: the resumed run does not load the loader's state from the checkpoint.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys

import numpy as np
import torch
from torch import nn

import rngstate
import rngstate.torch

EPOCHS = 2
BATCH_SIZE = 8  # 48 samples: 6 steps per epoch, 12 in all
BUGS = ("nondeterministic-kernel", "drew-after-restore", "loader-not-loaded")


class AugmentedPoints(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """48 points in 4 classes; every access adds NumPy, Python and torch noise."""

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


class UnseededKernel(nn.Module):
    """The ``nondeterministic-kernel`` bug: adds an offset read from the OS's entropy (as a GPU
    kernel with atomic float adds gives results that vary from run to run)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        entropy = torch.frombuffer(bytearray(os.urandom(x.numel())), dtype=torch.uint8)
        return x + 1e-3 * entropy.reshape(x.shape).float()


def main(argv: list[str]) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--trace", required=True, help="the step trace to write (or continue)")
    parser.add_argument("--stop-at", type=int, help="save a checkpoint at this step; die 2 steps later")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument("--checkpoint", default="job.ckpt")
    parser.add_argument("--bug", choices=BUGS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the same arithmetic in every run

    rngstate.seed_everything(0)
    with rngstate.rng_scope("model"):
        layers = [nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4)]
        if args.bug == "nondeterministic-kernel":
            layers.append(UnseededKernel())
        model = nn.Sequential(*layers)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = rngstate.torch.DataLoader(AugmentedPoints(), name="train", batch_size=BATCH_SIZE, shuffle=True)

    step, start_epoch, start_position = 0, 0, 0
    if args.resume:
        checkpoint = torch.load(args.checkpoint, weights_only=True)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if args.bug != "loader-not-loaded":
            loader.load_state_dict(checkpoint["loader"])
        rngstate.restore(checkpoint["rng"])
        if args.bug == "drew-after-restore":
            torch.rand(1)  # e.g. a layer built, or a sanity check run, after the restore
        step, start_epoch, start_position = checkpoint["step"], checkpoint["epoch"], checkpoint["position"]

    with rngstate.trace(args.trace, weights_every=4) as trace:
        for epoch in range(start_epoch, EPOCHS):
            loader.set_epoch(epoch)  # after load_state_dict: goes on mid-epoch
            first = start_position if epoch == start_epoch else 0
            for position, (features, labels) in enumerate(loader, start=first):
                loss = nn.functional.cross_entropy(model(features), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                trace.step(step=step, epoch=epoch, position=position, batch=(features, labels),
                           loss=loss, model=model, optimizer=optimizer)
                if step == args.stop_at:
                    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "loader": loader.state_dict(), "rng": rngstate.capture().to_dict(),
                                "step": step, "epoch": epoch, "position": position + 1}, args.checkpoint)
                if args.stop_at and step == args.stop_at + 2:
                    os.kill(os.getpid(), signal.SIGKILL)  # killed two steps after the checkpoint
    print(f"{args.trace}: {step} steps")


def scenario(bug: str | None, resume: bool, folder: str | None = None) -> int:
    """Run the job twice as the scripts in this folder do -- uninterrupted, then either again
    (``resume=False``) or killed after a checkpoint and resumed -- and print
    ``rngstate compare`` of the two traces; returns its exit status."""
    import subprocess
    import tempfile

    folder = folder or tempfile.mkdtemp(prefix="rngstate-diagnose-")
    job = [sys.executable, os.path.abspath(__file__)]
    bugged = ["--bug", bug] if bug else []
    if resume:  # a run that never stopped, and one killed after a checkpoint, then resumed
        first, second = "uninterrupted.trace", "resumed.trace"
        runs = [["--trace", first], ["--trace", second, "--stop-at", "8", *bugged],
                ["--trace", second, "--resume", *bugged]]
    else:  # the same job twice
        first, second = "run1.trace", "run2.trace"
        runs = [["--trace", first, *bugged], ["--trace", second, *bugged]]
    for run in runs:
        subprocess.run([*job, *run], cwd=folder, check=False, stdout=subprocess.DEVNULL)
    command = ["rngstate", "compare", first, second]
    print("$ " + " ".join(command), flush=True)
    done = subprocess.run([sys.executable, "-m", *command], cwd=folder, check=False)
    print(f"exit {done.returncode}")
    return done.returncode


if __name__ == "__main__":
    main(sys.argv[1:])
