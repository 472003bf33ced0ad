"""Distributed training with rngstate: shared init, sharded data, per-rank dropout, exact resume.

    torchrun --nproc-per-node 2 examples/distributed_torchrun.py --stop-at 7   # saves, exits
    torchrun --nproc-per-node 2 examples/distributed_torchrun.py --resume      # continues
    torchrun --nproc-per-node 2 examples/distributed_torchrun.py               # uninterrupted

Each rank loads its own shard of a dataset with random augmentation through
``rngstate.torch.DataLoader`` (2 workers), applies per-rank dropout, and prints a hash of its final
weights; a run stopped mid-epoch and resumed prints the uninterrupted run's hash.
"""

from __future__ import annotations

import argparse
import hashlib

import torch
import torch.distributed as dist
from torch import nn

import rngstate
import rngstate.torch

EPOCHS = 2
SAMPLES = 40  # 20 per rank with 2 ranks: 5 batches of 4 per epoch


class NoisyPoints(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Fixed points and targets; each load adds fresh noise (a stand-in for augmentation)."""

    def __init__(self) -> None:
        with rngstate.rng_scope("dataset"):
            self.points = torch.randn(SAMPLES, 8)
            self.targets = torch.randn(SAMPLES, 1)

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.points[index] + 0.1 * torch.randn(8), self.targets[index], index


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stop-at", type=int, default=None, help="save and exit after this step")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--checkpoint", default="distributed_checkpoint")
    parser.add_argument("--workers", type=int, default=2)
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
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05)
    # Shards like DistributedSampler: rank and world size come from the process group.
    loader = rngstate.torch.DataLoader(
        NoisyPoints(), name="train", batch_size=4, shuffle=True, num_workers=args.workers
    )
    step, first_epoch = 0, 0
    if args.resume:
        checkpoint = torch.load(f"{args.checkpoint}.pt", weights_only=True)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        loader.load_state_dict(checkpoint["loader"])  # any rank's: they all took the same count
        step, first_epoch = checkpoint["step"], checkpoint["loader"]["epoch"]
        rngstate.restore(rngstate.load(f"{args.checkpoint}.rngstate"))  # this rank's entry
    seen: list[int] = []
    for epoch in range(first_epoch, EPOCHS):
        loader.set_epoch(epoch)  # right after load_state_dict: continues mid-epoch
        for inputs, targets, indices in loader:
            seen.extend(indices.tolist())
            with rngstate.rng_scope("dropout", per_rank=True):
                mask = (torch.rand(len(inputs), 1) > 0.5).float()
            loss = ((ddp(inputs) - targets) * mask).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == args.stop_at:  # after a whole step: the loader counted this batch as taken
                if rank == 0:
                    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "loader": loader.state_dict(), "step": step},
                               f"{args.checkpoint}.pt")
                rngstate.save(f"{args.checkpoint}.rngstate")  # collective: every rank calls it
                print(f"rank {rank}: saved after step {step}", flush=True)
                return
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters()))
    print(f"rank {rank}: samples {','.join(map(str, seen))}", flush=True)
    print(f"rank {rank}: final weights {digest.hexdigest()[:16]}", flush=True)


if __name__ == "__main__":
    main()
