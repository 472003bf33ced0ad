"""Tensor parallel + data parallel on a 2x2 mesh, a DCP checkpoint mid-epoch, exact resume.

    torchrun --nproc-per-node 4 examples/distributed_tp_dcp.py --save-at 6   # checkpoint at step 6
    torchrun --nproc-per-node 4 examples/distributed_tp_dcp.py --resume      # new processes continue

A two-layer MLP is split by hand over the ``"tp"`` dimension (first Linear by output rows,
second by input columns, partial outputs summed over the tp group), with dropout between them.
The randomness follows the mesh, like Megatron's model-parallel RNG tracker:

- dropout runs in ``rng_scope("dropout", per_rank=(mesh, "tp"))``: each tp rank masks its own
  hidden units differently, and both data-parallel replicas use the same masks;
- augmentation noise runs in ``rng_scope("augment", per_rank=(mesh, "dp"))``: both tp ranks of a
  replica see the same batch, replicas see different ones;
- the sampler shards by the dp rank only.

The checkpoint is ``torch.distributed.checkpoint`` with ``rngstate.stateful()`` next to the model
shards and the sampler position.  Every rank prints a hash of the full model (and checks that all
ranks agree); the run resumed in new processes from the mid-epoch checkpoint (step 6 is the
second of epoch 1's four batches) prints the hash of the run that saved it and went on.
"""

from __future__ import annotations

import argparse
import hashlib
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F  # noqa: N812  (torch's own spelling)
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

import rngstate
from rngstate.distributed import group_rank

EPOCHS = 2
SAMPLES = 32  # 16 per data-parallel replica: 4 batches of 4 per epoch
BATCH = 4
HIDDEN = 16


class TensorParallelMLP:
    """8 -> 16 -> 4; this tp rank holds rows [r*8, r*8+8) of ``w1`` and those columns of ``w2``."""

    def __init__(self, mesh: DeviceMesh) -> None:
        self.tp_group = mesh.get_group("tp")
        tp, tp_size = group_rank((mesh, "tp"))
        with rngstate.rng_scope("init"):  # the full weights are the same on every rank: slice them
            w1, w2 = torch.randn(HIDDEN, 8) * 0.3, torch.randn(4, HIDDEN) * 0.3
        part = HIDDEN // tp_size
        self.w1 = w1[tp * part:(tp + 1) * part].clone().requires_grad_()
        self.w2 = w2[:, tp * part:(tp + 1) * part].clone().requires_grad_()
        self.shard = f"tp{tp}"  # DCP keys: the two tp shards must not be de-duplicated as one

    def forward(self, mesh: DeviceMesh, x: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(x @ self.w1.T)
        with rngstate.rng_scope("dropout", per_rank=(mesh, "tp")):
            hidden = F.dropout(hidden, p=0.25, training=True)
        partial = hidden @ self.w2.T
        total = partial.detach().clone()
        dist.all_reduce(total, group=self.tp_group)  # the sum of both tp ranks' partial outputs
        return partial + (total - partial.detach())  # value: the sum; gradient: this rank's part

    def parameters(self) -> list[torch.Tensor]:
        return [self.w1, self.w2]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"w1.{self.shard}": self.w1.detach(), f"w2.{self.shard}": self.w2.detach()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.w1.copy_(state[f"w1.{self.shard}"])
            self.w2.copy_(state[f"w2.{self.shard}"])

    def full_weights(self) -> torch.Tensor:
        parts = [torch.empty_like(p) for p in (self.w1, self.w2) for _ in range(2)]
        dist.all_gather(parts[:2], self.w1.detach().contiguous(), group=self.tp_group)
        dist.all_gather(parts[2:], self.w2.detach().contiguous(), group=self.tp_group)
        return torch.cat([torch.cat(parts[:2]).flatten(), torch.cat(parts[2:], dim=1).flatten()])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--save-at", type=int, default=None, help="save a checkpoint after this step")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--checkpoint", default="tp_dcp_checkpoint")
    args = parser.parse_args()
    dist.init_process_group("gloo")
    try:
        train(args)
    finally:
        dist.barrier()
        dist.destroy_process_group()


def train(args: argparse.Namespace) -> None:
    mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    dp, dp_size = group_rank((mesh, "dp"))
    rngstate.seed_everything(0)
    with rngstate.rng_scope("dataset"):
        points, targets = torch.randn(SAMPLES, 8), torch.randn(SAMPLES, 4)
    model = TensorParallelMLP(mesh)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sampler = rngstate.ResumableSampler(SAMPLES, name="train", rank=dp, world_size=dp_size)
    step, start_epoch = 0, 0
    if args.resume:
        state: dict[str, Any] = {"model": model.state_dict(), "sampler": sampler.state_dict(),
                                 "train": {"step": 0, "epoch": 0}, "rng": rngstate.stateful()}
        dcp_load(state, checkpoint_id=args.checkpoint)
        model.load_state_dict(state["model"])
        sampler.load_state_dict(state["sampler"])
        step, start_epoch = state["train"]["step"], state["train"]["epoch"]
    for epoch in range(start_epoch, EPOCHS):
        sampler.set_epoch(epoch)  # the saved epoch resumes at the saved position
        batch: list[int] = []
        for index in sampler:
            batch.append(index)
            if len(batch) < BATCH:
                continue
            with rngstate.rng_scope("augment", per_rank=(mesh, "dp")):
                x = points[batch] + 0.1 * torch.randn(BATCH, 8)
            loss = F.mse_loss(model.forward(mesh, x), targets[batch])
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            for parameter in model.parameters():  # data parallel: average over the replicas
                assert parameter.grad is not None
                dist.all_reduce(parameter.grad, group=mesh.get_group("dp"))
                parameter.grad.div_(dp_size)
            optimizer.step()
            batch, step = [], step + 1
            if step == args.save_at:  # mid-epoch; training goes on as if nothing happened
                saved: dict[str, Any] = {"model": model.state_dict(), "sampler": sampler.state_dict(),
                         "train": {"step": step, "epoch": epoch}, "rng": rngstate.stateful()}
                dcp_save(saved, checkpoint_id=args.checkpoint)
                print(f"rank {dist.get_rank()}: saved after step {step}", flush=True)
    weights = model.full_weights()
    everyone = [torch.empty_like(weights) for _ in range(dist.get_world_size())]
    dist.all_gather(everyone, weights)
    assert all(torch.equal(weights, other) for other in everyone), "the ranks disagree on the model"
    digest = hashlib.sha256(weights.numpy().tobytes()).hexdigest()[:16]
    print(f"rank {dist.get_rank()}: final weights {digest}", flush=True)


if __name__ == "__main__":
    main()
