"""Pieces the accumulation-matrix jobs share: a dataset drawing Python, NumPy and torch
randomness per sample, a small model with dropout, a weights hash."""

from __future__ import annotations

import hashlib
import random
import warnings

import numpy as np
import torch
from torch import nn

from rngstate.guard import ResumeWarning

# No false alarms: the guard's warning fails a job.
warnings.simplefilter("error", ResumeWarning)


class Noisy(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """``n`` points in 3 classes; every access adds Python, NumPy and torch randomness."""

    def __init__(self, n: int) -> None:
        source = np.random.RandomState(1234)  # the data itself is fixed
        self.labels = source.randint(0, 3, size=n)
        self.points = source.normal(size=(n, 6)) + self.labels[:, None]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.points[index] + np.random.normal(0.0, 0.3, size=6)
        if random.random() < 0.5:
            x = x[::-1].copy()
        return torch.from_numpy(x).float() + 0.1 * torch.randn(6), int(self.labels[index])


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


def weights_hash(model: nn.Module) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()
