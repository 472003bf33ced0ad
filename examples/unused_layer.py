"""The unused-layer story: one extra, never-used layer shifts the init of every layer built after it.

Two copies of one model, the second with an extra ``nn.Linear`` that ``forward`` never uses;
for each layer, the demo prints whether both copies start with the same weights.
The model's code is not changed: one line after construction,
``rngstate.torch.init_by_name(model)``, re-initializes each layer from a substream named by its
attribute path, so each layer's weights depend only on the seed, its name and its shapes.

    python examples/unused_layer.py
"""

from __future__ import annotations

import torch
from torch import nn

import rngstate
import rngstate.torch


class Net(nn.Module):
    def __init__(self, extra_layer: bool = False) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64))
        if extra_layer:
            self.unused = nn.Linear(64, 64)  # defined, never called
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.encoder(x)))


def build(extra_layer: bool, by_name: bool) -> Net:
    rngstate.seed_everything(42)
    model = Net(extra_layer)
    if by_name:
        rngstate.torch.init_by_name(model)  # the one line
    return model


def compare(by_name: bool) -> dict[str, bool]:
    """For each layer of the plain model: are its weights the same in the extended one?"""
    plain, extended = build(False, by_name), build(True, by_name)
    other = dict(extended.named_modules())
    return {
        name: all(map(torch.equal, layer.parameters(), other[name].parameters()))
        for name, layer in plain.named_modules()
        if list(layer.parameters(recurse=False))
    }


def main() -> None:
    plain, by_name = compare(by_name=False), compare(by_name=True)
    print("Two models, both built after rngstate.seed_everything(42):")
    print("  model A: encoder -> head")
    print("  model B: the same, plus an unused nn.Linear defined between them (forward() never calls it)")
    print("Does each layer of A start with the same weights as that layer of B?")
    print()
    print(f"{'layer':12}{'plain PyTorch':16}{'with rngstate.torch.init_by_name(model)'}")
    for name in plain:
        verdicts = ["identical" if same else "DIFFERENT" for same in (plain[name], by_name[name])]
        print(f"{name:12}{verdicts[0]:16}{verdicts[1]}")
    print()
    print("Plain PyTorch: layers draw their weights from one global stream in construction order,")
    shifted = ", ".join(name for name, same in plain.items() if not same) or "none"
    print(f"so the unused layer shifts every layer built after it (here: {shifted}).")
    print("rngstate: each layer draws from its own substream, named after the layer,")
    print("so adding or removing a layer changes no other layer's weights.")


if __name__ == "__main__":
    main()
