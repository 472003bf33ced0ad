"""Cost of ``rngstate.torch.init_by_name`` against a plain ``model.apply(reset_parameters)``.

    python benchmarks/init_by_name.py

Target (issue 14): re-initializing a 100-layer model by name costs at most 2x re-initializing it
with ``model.apply`` calling each module's ``reset_parameters()``.  Models: 100 ``Linear`` layers
of several widths (small layers show the per-layer overhead, large ones the drawing cost) and a
100-layer transformer-style stack (``Linear`` + ``LayerNorm`` blocks, nested modules).
"""

from __future__ import annotations

import timeit
from typing import Any

import torch
from torch import nn

import rngstate
import rngstate.torch

TARGET = 2.0


def reset(module: nn.Module) -> None:
    reset_parameters = getattr(module, "reset_parameters", None)
    if callable(reset_parameters):
        reset_parameters()


def plain(model: nn.Module) -> None:
    model.apply(reset)


def by_name(model: nn.Module) -> None:
    rngstate.torch.init_by_name(model)


def best_pair(model: nn.Module, number: int, repeat: int = 15) -> tuple[float, float]:
    """Best mean seconds per call of (plain, by_name), runs interleaved so that a busy machine
    slows both alike."""
    times: dict[Any, list[float]] = {plain: [], by_name: []}
    for _ in range(repeat):
        for function, found in times.items():
            found.append(timeit.timeit(lambda f=function: f(model), number=number) / number)
    return min(times[plain]), min(times[by_name])


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.linear = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.linear(self.norm(x))


def models() -> list[tuple[str, nn.Module, int]]:
    linear = [
        (f"100 x Linear({w}, {w})", nn.Sequential(*(nn.Linear(w, w) for _ in range(100))), n)
        for w, n in ((16, 50), (128, 20), (512, 3))
    ]
    blocks = nn.Sequential(*(Block(128) for _ in range(50)))  # 100 parameterized layers
    return [*linear, ("50 x (LayerNorm(128) + Linear(128, 128))", blocks, 20)]


def main() -> None:
    rngstate.seed_everything(0)
    torch.set_num_threads(1)  # the drawing cost is single-threaded in both; keeps runs stable
    print(f"torch {torch.__version__}, {TARGET}x target: init_by_name / model.apply(reset_parameters)")
    print(f"{'model':44} {'apply(reset)':>14} {'init_by_name':>14} {'ratio':>7}")
    worst = 0.0
    for name, model, number in models():
        peer, ours = best_pair(model, number)
        worst = max(worst, ours / peer)
        print(f"{name:44} {peer * 1e3:11.3f} ms {ours * 1e3:11.3f} ms {ours / peer:6.2f}x")
    print(f"worst ratio {worst:.2f}x: target {'met' if worst <= TARGET else 'MISSED'}")


if __name__ == "__main__":
    main()
