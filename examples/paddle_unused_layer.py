"""The unused-layer story in PaddlePaddle: a ResNet-18 backbone with a classification head.

Two copies of one model; the second defines an extra ``nn.Linear`` that ``forward`` never uses,
before the backbone.  Without scopes every shared weight differs (Paddle initializes
parameters from its global generator in creation order); with ``rng_scope`` they are identical.

    python examples/paddle_unused_layer.py
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import paddle
from paddle import nn

import rngstate


class Classifier(nn.Layer):
    def __init__(self, extra_layer: bool, scoped: bool, num_classes: int = 10) -> None:
        super().__init__()
        scope: Callable[[str], Any] = (
            rngstate.rng_scope if scoped else (lambda name: contextlib.nullcontext())
        )
        if extra_layer:
            with scope("unused"):
                self.unused = nn.Linear(512, 512)  # defined, never called
        with scope("backbone"):
            self.backbone = paddle.vision.models.resnet18(num_classes=0)  # features only
        with scope("head"):
            self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(512, num_classes))

    def forward(self, images: paddle.Tensor) -> paddle.Tensor:
        return self.head(paddle.flatten(self.backbone(images), 1))


def shared_parameters(model: Classifier) -> dict[str, np.ndarray]:
    return {
        name: value.numpy()
        for name, value in model.state_dict().items()
        if name.startswith(("backbone.", "head."))
    }


def shared_weights_equal(scoped: bool) -> bool:
    """Build both copies from the same root seed; compare the layers they share."""
    models = []
    for extra_layer in (False, True):
        rngstate.seed_everything(42)
        models.append(shared_parameters(Classifier(extra_layer, scoped)))
    plain, extended = models
    return plain.keys() == extended.keys() and all(
        np.array_equal(plain[name], extended[name]) for name in plain
    )


def main() -> None:
    for scoped in (False, True):
        label = "with rng_scope   " if scoped else "without rng_scope"
        verdict = "identical" if shared_weights_equal(scoped) else "DIFFERENT"
        print(f"{label}: ResNet-18 backbone and head weights of the two models are {verdict}")


if __name__ == "__main__":
    main()
