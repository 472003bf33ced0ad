"""The unused-layer story in PaddlePaddle: a ResNet-18 backbone with a classification head.

Two copies of one model; the second defines an extra ``nn.Linear`` that ``forward`` never uses,
before the backbone.  Paddle initializes parameters from its global generator in creation order,
so as built every later weight differs.  The model's code is not changed: one line after
construction, ``rngstate.paddle.init_by_name(model)``, re-runs each parameter's initializer from
a substream named by its layer's path, and every shared layer is identical.

    python examples/paddle_unused_layer.py
"""

from __future__ import annotations

import numpy as np
import paddle
from paddle import nn

import rngstate
import rngstate.paddle


class Classifier(nn.Layer):
    def __init__(self, extra_layer: bool = False, num_classes: int = 10) -> None:
        super().__init__()
        if extra_layer:
            self.unused = nn.Linear(512, 512)  # defined, never called
        self.backbone = paddle.vision.models.resnet18(num_classes=0)  # features only
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(512, num_classes))

    def forward(self, images: paddle.Tensor) -> paddle.Tensor:
        return self.head(paddle.flatten(self.backbone(images), 1))


def build(extra_layer: bool, by_name: bool) -> Classifier:
    rngstate.seed_everything(42)
    model = Classifier(extra_layer)
    if by_name:
        rngstate.paddle.init_by_name(model)  # the one line
    return model


def compare(by_name: bool) -> dict[str, bool]:
    """For each part of the plain model (``backbone.layer1``, ``head``, ...): are all its
    weights the same in the extended model?"""
    plain, extended = (build(extra, by_name).state_dict() for extra in (False, True))
    parts: dict[str, bool] = {}
    for name, value in plain.items():
        part = ".".join(name.split(".")[:2]) if name.startswith("backbone.") else name.split(".")[0]
        same = np.array_equal(value.numpy(), extended[name].numpy())
        parts[part] = parts.get(part, True) and same
    return parts


def main() -> None:
    plain, by_name = compare(by_name=False), compare(by_name=True)
    print(f"{'layer':18}{'as built':12}{'after init_by_name'}")
    for name in plain:
        verdicts = ["identical" if same else "DIFFERENT" for same in (plain[name], by_name[name])]
        print(f"{name:18}{verdicts[0]:12}{verdicts[1]}")


if __name__ == "__main__":
    main()
