"""rngstate.paddle.init_by_name: each parameter's own initializer, re-run from its layer's name."""

from __future__ import annotations

import numpy as np
import paddle
import pytest
from paddle import nn

import rngstate
import rngstate.paddle
from rngstate.errors import InitializationError
from rngstate.snapshot import RNGStateWarning

init = nn.initializer


class Net(nn.Layer):
    def __init__(self, unused: str | None = None, head_first: bool = False) -> None:
        super().__init__()
        if unused == "before":
            self.unused = nn.Linear(16, 16)
        if head_first:
            self.head = nn.Linear(16, 4, weight_attr=paddle.ParamAttr(initializer=init.Normal(0.0, 0.01)))
        self.conv = nn.Conv2D(3, 8, 3)
        self.bn = nn.BatchNorm2D(8)
        if unused == "between":
            self.unused = nn.Linear(16, 16)
        self.encoder = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.LayerNorm(16))
        if not head_first:
            self.head = nn.Linear(16, 4, weight_attr=paddle.ParamAttr(initializer=init.Normal(0.0, 0.01)))
        self.act = nn.PReLU(1, 0.1)
        if unused == "after":
            self.unused = nn.Linear(16, 16)


def weights(model: nn.Layer) -> dict[str, np.ndarray]:
    return {name: p.numpy().copy() for name, p in model.named_parameters() if not name.startswith("unused.")}


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[name], b[name]) for name in a)


def build(**kwargs: object) -> dict[str, np.ndarray]:
    paddle.rand([int(paddle.randint(1, 100, [1]).item())])  # what was drawn before does not matter
    return weights(rngstate.paddle.init_by_name(Net(**kwargs)))  # type: ignore[arg-type]


@pytest.mark.parametrize("unused", ["before", "between", "after"])
def test_an_unused_layer_changes_no_other_layer(unused: str) -> None:
    rngstate.seed_everything(3)
    assert same(build(), build(unused=unused))


def test_construction_order_does_not_matter_and_calls_repeat() -> None:
    rngstate.seed_everything(4)
    model = Net()
    outer = paddle.get_rng_state()[0].__getstate__()
    first = weights(rngstate.paddle.init_by_name(model))
    assert paddle.get_rng_state()[0].__getstate__() == outer  # the generator is put back
    assert same(first, weights(rngstate.paddle.init_by_name(model)))
    assert same(first, build(head_first=True))
    with rngstate.rng_scope("other"):
        assert not same(first, build())


def test_the_initializer_paddle_chose_is_rerun() -> None:
    rngstate.seed_everything(5)
    model = rngstate.paddle.init_by_name(Net())
    w = weights(model)
    assert np.all(w["bn.weight"] == 1) and np.all(w["bn._variance"] == 1) and not w["bn._mean"].any()
    assert np.all(w["encoder.2.weight"] == 1) and not w["encoder.2.bias"].any()
    assert np.allclose(w["act._weight"], 0.1)
    assert 0.005 < w["head.weight"].std() < 0.015  # weight_attr's Normal(0, 0.01)
    conv_std = (2.0 / (3 * 3 * 3)) ** 0.5  # Conv2D's default Normal(0, sqrt(2 / fan_in))
    assert 0.8 < w["conv.weight"].std() / conv_std < 1.2
    bound = (6.0 / (8 + 16)) ** 0.5  # Linear's default XavierUniform
    assert 0 < np.abs(w["encoder.0.weight"]).max() <= bound and not w["encoder.0.bias"].any()


def test_global_initializer_is_respected() -> None:
    rngstate.seed_everything(5)
    model = nn.Linear(4, 4)
    init.set_global_initializer(init.Constant(0.5), init.Constant(0.25))
    try:
        rngstate.paddle.init_by_name(model)
    finally:
        init.set_global_initializer(None)
    assert np.all(model.weight.numpy() == 0.5) and np.all(model.bias.numpy() == 0.25)


def test_unknown_initializers_are_named_in_a_warning() -> None:
    class Scaled(nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 4)
            self.scale = self.create_parameter([4], default_initializer=init.Constant(3.0))

    rngstate.seed_everything(1)
    model = Scaled()
    with pytest.warns(RNGStateWarning, match=r"1 parameter\(s\) were not re-initialized.*: scale\."):
        assert rngstate.paddle.init_by_name(model) is model
    assert np.all(model.scale.numpy() == 3.0)


def test_not_a_layer() -> None:
    rngstate.seed_everything(1)
    with pytest.raises(InitializationError, match="takes a paddle.nn.Layer, got int"):
        rngstate.paddle.init_by_name(3)


def test_a_model_built_under_lazy_guard_gets_the_eager_weights() -> None:
    class Scaled(nn.Layer):  # a custom default_initializer: known only to the lazy parameter
        def __init__(self) -> None:
            super().__init__()
            self.scale = self.create_parameter([4], default_initializer=init.Normal(0.0, 2.0))

    rngstate.seed_everything(8)
    eager = build()
    with paddle.LazyGuard():
        model = Net()
        scaled = Scaled()
    assert same(eager, weights(rngstate.paddle.init_by_name(model)))
    assert all(param._is_initialized() for param in model.parameters())
    scale = rngstate.paddle.init_by_name(scaled).scale.numpy()
    assert 1.0 < scale.std() < 4.0
