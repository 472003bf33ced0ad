"""The unused-layer story: one extra, never-used layer shifts every later layer's init.

Two copies of one model; the second defines an extra ``nn.Linear`` that ``forward`` never uses.
Without scopes the shared layers' weights differ; with ``rng_scope`` they are identical.

    python examples/unused_layer.py
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

import rngstate


class Net(nn.Module):
    def __init__(self, extra_layer: bool, scoped: bool) -> None:
        super().__init__()
        scope = rngstate.rng_scope if scoped else (lambda name: contextlib.nullcontext())
        with scope("encoder"):
            self.encoder = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64))
        if extra_layer:
            with scope("unused"):
                self.unused = nn.Linear(64, 64)  # defined, never called
        with scope("head"):
            self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.encoder(x)))


def shared_weights_equal(scoped: bool) -> bool:
    models = []
    for extra_layer in (False, True):
        rngstate.seed_everything(42)
        models.append(Net(extra_layer, scoped))
    plain, extended = models
    pairs = [
        *zip(plain.encoder.parameters(), extended.encoder.parameters(), strict=True),
        *zip(plain.head.parameters(), extended.head.parameters(), strict=True),
    ]
    return all(torch.equal(a, b) for a, b in pairs)


def main() -> None:
    for scoped in (False, True):
        label = "with rng_scope   " if scoped else "without rng_scope"
        verdict = "identical" if shared_weights_equal(scoped) else "DIFFERENT"
        print(f"{label}: encoder and head weights of the two models are {verdict}")


if __name__ == "__main__":
    main()
