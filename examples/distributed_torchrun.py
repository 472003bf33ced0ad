"""Distributed training with rngstate: shared init, per-rank dropout, a collective state file.

    torchrun --nproc-per-node 2 examples/distributed_torchrun.py --stop-at 3   # saves, exits
    torchrun --nproc-per-node 2 examples/distributed_torchrun.py --resume      # continues
    torchrun --nproc-per-node 2 examples/distributed_torchrun.py               # uninterrupted

Each rank prints a hash of its final weights; the resumed run prints the uninterrupted one's.
"""

from __future__ import annotations

import argparse
import hashlib

import torch
import torch.distributed as dist
from torch import nn

import rngstate

STEPS = 6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stop-at", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--checkpoint", default="distributed_checkpoint")
    args = parser.parse_args()

    dist.init_process_group("gloo")
    try:
        train(args, dist.get_rank())
    finally:
        dist.barrier()  # let every rank finish its last collective before any of them exits
        dist.destroy_process_group()


def train(args: argparse.Namespace, rank: int) -> None:
    rngstate.seed_everything(0)
    with rngstate.rng_scope("model"):  # the same weights on every rank, no broadcast needed
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
    start = 0
    if args.resume:
        checkpoint = torch.load(f"{args.checkpoint}.pt", weights_only=True)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        start = checkpoint["step"]
        rngstate.restore(rngstate.load(f"{args.checkpoint}.rngstate"))  # this rank's entry
    for step in range(start, STEPS):
        if step == args.stop_at:
            if rank == 0:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "step": step}, f"{args.checkpoint}.pt")
            rngstate.save(f"{args.checkpoint}.rngstate")  # collective: every rank calls it
            print(f"rank {rank}: saved at step {step}", flush=True)
            return
        with rngstate.rng_scope("data", per_rank=True):  # each rank draws its own batch
            inputs = torch.randn(4, 8)
        with rngstate.rng_scope("dropout", per_rank=True):
            mask = (torch.rand(4, 1) > 0.5).float()
        loss = (ddp(inputs) * mask).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters()))
    print(f"rank {rank}: final weights {digest.hexdigest()[:16]}", flush=True)


if __name__ == "__main__":
    main()
