"""torch.distributed for rngstate: rank detection and byte collectives (no pickling:
``gather_object`` pickles).  Imported by the modules that save or split state per rank, only
when torch is already imported."""

from __future__ import annotations

import os
import sys
from typing import Any


def _torch() -> Any:
    return sys.modules["torch"]

def process_group() -> tuple[int, int] | None:
    """(rank, world size) of an initialized default process group, else None."""
    if "torch.distributed" not in sys.modules:
        return None
    dist = _torch().distributed
    if not (dist.is_available() and dist.is_initialized()):
        return None
    return int(dist.get_rank()), int(dist.get_world_size())


def group_kind(obj: object) -> str | None:
    """``"group"`` for a ProcessGroup, ``"mesh"`` for a DeviceMesh, ``"non-member"`` for what
    ``new_group`` returns on ranks outside the group, else None."""
    if "torch.distributed" not in sys.modules or not _torch().distributed.is_available():
        return None
    dist = _torch().distributed
    if isinstance(obj, dist.ProcessGroup):
        return "group"
    if type(obj) is int and obj == dist.GroupMember.NON_GROUP_MEMBER:
        return "non-member"
    device_mesh = sys.modules.get("torch.distributed.device_mesh")  # imported by init_device_mesh
    if device_mesh is not None and isinstance(obj, device_mesh.DeviceMesh):
        return "mesh"
    return None


def rank_in_group(group: Any) -> tuple[int, int]:
    """(rank, size) of this process in ``group``; rank -1 if it is not a member."""
    dist = _torch().distributed
    if not dist.is_initialized():
        return -1, 0
    return int(dist.get_rank(group)), int(dist.get_world_size(group))


def _local_rank() -> int:
    text = os.environ.get("LOCAL_RANK", "")
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else 0  # as rank_info() reads it


def collective_device() -> Any:
    """The device collectives of the default group use: NCCL moves only CUDA tensors.

    The group's bound device, else the current device if the user chose it (``set_device``), else the local
    rank's device: ranks that never called ``set_device`` all sit on ``cuda:0`` (NCCL then
    fails with a duplicate GPU or hangs).
    """
    torch = _torch()
    if torch.distributed.get_backend() != "nccl":
        return torch.device("cpu")
    bound = getattr(torch.distributed.distributed_c10d._get_default_group(), "bound_device_id", None)
    if bound is not None:  # init_process_group(device_id=...): the user said so
        return bound
    current = torch.cuda.current_device()
    if current != 0 or torch.cuda.device_count() <= 1:
        return torch.device("cuda", current)
    return torch.device("cuda", _local_rank() % torch.cuda.device_count())


def gather_bytes(payload: bytes, destination: int = 0) -> list[bytes] | None:
    """Gather every rank's ``payload`` on ``destination`` (others get None), as uint8 tensors."""
    torch = _torch()
    dist = torch.distributed
    device = collective_device()
    world_size = dist.get_world_size()
    size = torch.tensor([len(payload)], dtype=torch.int64, device=device)
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world_size)]
    dist.all_gather(sizes, size)
    lengths = [int(s.item()) for s in sizes]
    buffer = torch.zeros(max(lengths), dtype=torch.uint8, device=device)
    if payload:
        buffer[: len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(device)
    if dist.get_rank() != destination:
        dist.gather(buffer, dst=destination)
        return None
    gathered = [torch.empty_like(buffer) for _ in range(world_size)]
    dist.gather(buffer, gathered, dst=destination)
    return [bytes(t[:n].cpu().numpy().tobytes()) for t, n in zip(gathered, lengths, strict=True)]


def barrier() -> None:
    """Wait for every rank of the default process group (on NCCL, on this rank's device)."""
    device = collective_device()
    if device.type == "cuda":  # without device_ids NCCL guesses the device and may pick cuda:0
        _torch().distributed.barrier(device_ids=[device.index])
    else:
        _torch().distributed.barrier()
