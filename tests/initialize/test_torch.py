"""rngstate.torch.init_by_name: a layer's weights depend on its name, not on the other layers."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn

import rngstate
import rngstate.torch
from rngstate.derive import derive_bytes
from rngstate.errors import InitializationError, NoRootSeedError
from rngstate.snapshot import RNGStateWarning


class Net(nn.Module):
    """encoder and head, with an unused layer before, between or after them (or nowhere)."""

    def __init__(self, unused: str | None = None, head_first: bool = False) -> None:
        super().__init__()
        if unused == "before":
            self.unused = nn.Linear(16, 16)
        if head_first:
            self.head = nn.Linear(16, 4)
        self.encoder = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16))
        if unused == "between":
            self.unused = nn.Linear(16, 16)
        if not head_first:
            self.head = nn.Linear(16, 4)
        self.norm = nn.LayerNorm(4)
        if unused == "after":
            self.unused = nn.Linear(16, 16)


def weights(model: nn.Module, skip: str = "unused.") -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if not name.startswith(skip)}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def build(factory: Callable[[], nn.Module], **kwargs: object) -> dict[str, torch.Tensor]:
    """Seed, draw a varying amount first (what ran before must not matter), build, init."""
    torch.rand(int(torch.randint(1, 100, ()).item()))
    return weights(rngstate.torch.init_by_name(factory(), **kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize("unused", ["before", "between", "after"])
def test_an_unused_layer_changes_no_other_layer(unused: str) -> None:
    rngstate.seed_everything(3)
    plain = build(Net)
    assert same(plain, build(lambda: Net(unused)))
    rngstate.seed_everything(3)
    without = weights(Net())
    rngstate.seed_everything(3)
    assert not same(without, weights(Net(unused))) or unused == "after"  # the story it fixes


def test_construction_order_does_not_matter() -> None:
    rngstate.seed_everything(5)
    assert same(build(Net), build(lambda: Net(head_first=True)))


def test_same_weights_every_call_and_generators_put_back() -> None:
    rngstate.seed_everything(7)
    model = Net()
    outer = torch.get_rng_state()
    first = weights(rngstate.torch.init_by_name(model))
    assert torch.equal(torch.get_rng_state(), outer)  # torch's generator is put back
    model.apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None)
    assert same(first, weights(rngstate.torch.init_by_name(model)))  # restarts, not continues
    assert same(first, weights(rngstate.torch.init_by_name(Net())))


def test_weights_depend_on_root_seed_and_scope_path() -> None:
    rngstate.seed_everything(1)
    outside = build(Net)
    with rngstate.rng_scope("teacher"):
        teacher = build(Net)
        assert same(teacher, build(Net))
    assert not same(outside, teacher)
    rngstate.seed_everything(2)
    assert not same(outside, build(Net))


def test_naming_rule_is_the_documented_derivation() -> None:
    rngstate.seed_everything(11)
    with rngstate.rng_scope("model"):
        model = rngstate.torch.init_by_name(Net())
    reference = nn.Linear(16, 16)
    seed = int.from_bytes(derive_bytes(11, ("model", "#init", "encoder", "2"), "torch.cpu")[:8], "big") >> 1
    torch.manual_seed(seed)
    reference.reset_parameters()
    assert torch.equal(model.encoder[2].weight, reference.weight)
    assert torch.equal(model.encoder[2].bias, reference.bias)


def test_meta_device_then_to_empty_gives_the_eager_weights() -> None:
    rngstate.seed_everything(9)
    eager = build(Net)
    with torch.device("meta"):
        model = Net("between")
    with pytest.raises(InitializationError, match="to_empty"):
        rngstate.torch.init_by_name(model)
    model.to_empty(device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RNGStateWarning)  # every parameter was re-initialized
        assert same(eager, weights(rngstate.torch.init_by_name(model)))


def test_custom_init_fn_is_called_on_every_module() -> None:
    seen: list[str] = []

    def init(module: nn.Module) -> None:
        seen.append(type(module).__name__)
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    rngstate.seed_everything(4)
    plain = build(Net, init_fn=init)
    assert seen[:2] == ["Net", "Sequential"]  # parents before children
    assert same(plain, build(lambda: Net("before"), init_fn=init))
    assert 0.01 < float(plain["encoder.2.weight"].std()) < 0.03
    assert not plain["head.bias"].any()


def assert_default_distribution(model: nn.Module, default: nn.Module) -> None:
    """Each parameter: the same constant as torch's default init, or the same spread."""
    ours = weights(model)
    for name, expected in weights(default).items():
        got = ours[name]
        if torch.all(expected == expected.flatten()[0]):
            assert torch.equal(got, expected), name
        else:
            ratio = float(got.std() / expected.std())
            assert 0.8 < ratio < 1.25, (name, ratio)
            assert float(got.abs().max()) <= float(expected.abs().max()) * 1.25, name


def test_transformer_encoder_layer_matches_the_default_distribution() -> None:
    rngstate.seed_everything(6)
    default = nn.TransformerEncoderLayer(64, 4, dim_feedforward=128)
    model = rngstate.torch.init_by_name(nn.TransformerEncoderLayer(64, 4, dim_feedforward=128))
    # MultiheadAttention zeroes its child's out_proj.bias: the child's own reset must not undo it
    assert not model.self_attn.out_proj.bias.any() and not model.self_attn.in_proj_bias.any()
    assert model.self_attn.out_proj.weight.std() > 0
    assert_default_distribution(model, default)
    other = rngstate.torch.init_by_name(nn.TransformerEncoderLayer(64, 4, dim_feedforward=128))
    assert same(weights(model), weights(other))


def test_transformer_whose_reset_covers_all_its_submodules() -> None:
    rngstate.seed_everything(6)
    config = {"d_model": 32, "nhead": 2, "num_encoder_layers": 1, "num_decoder_layers": 1,
              "dim_feedforward": 64, "batch_first": True}
    default = nn.Transformer(**config)  # type: ignore[arg-type]
    model = rngstate.torch.init_by_name(nn.Transformer(**config))  # type: ignore[arg-type]
    assert_default_distribution(model, default)  # xavier everywhere, as Transformer's own reset


def test_unreinitialized_parameters_are_named_in_a_warning() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 4)
            self.scale = nn.Parameter(torch.full((4,), 3.0))

    rngstate.seed_everything(1)
    model = Scaled()
    with pytest.warns(RNGStateWarning, match=r"1 parameter\(s\) were not re-initialized.*: scale\."):
        assert rngstate.torch.init_by_name(model) is model
    assert torch.equal(model.scale, torch.full((4,), 3.0))


def test_bad_input_raises_clear_errors() -> None:
    with pytest.raises(NoRootSeedError, match="seed_everything"):
        rngstate.torch.init_by_name(Net())
    rngstate.seed_everything(1)
    with pytest.raises(InitializationError, match="takes a torch.nn.Module, got dict") as info:
        rngstate.torch.init_by_name({"weight": 1})
    assert isinstance(info.value, TypeError)
    with pytest.raises(InitializationError, match="init_fn must be a function"):
        rngstate.torch.init_by_name(Net(), init_fn=3)  # type: ignore[arg-type]
    with pytest.raises(InitializationError, match="forward pass"):
        rngstate.torch.init_by_name(nn.LazyLinear(3))
    model = Net()
    outer = torch.get_rng_state()

    def failing(module: nn.Module) -> None:
        torch.rand(5)
        raise RuntimeError("init failed")

    with pytest.raises(RuntimeError, match="init failed"):
        rngstate.torch.init_by_name(model, init_fn=failing)
    assert torch.equal(torch.get_rng_state(), outer)  # an error inside still puts the generator back


def test_tiny_transformers_model_with_its_own_init_weights() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32,
    )

    def initialized(model: nn.Module) -> dict[str, torch.Tensor]:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RNGStateWarning)  # _init_weights covers every parameter
            return weights(rngstate.torch.init_by_name(model, init_fn=model._init_weights))  # type: ignore[arg-type]

    rngstate.seed_everything(12)
    eager = initialized(transformers.BertForMaskedLM(config))  # output embeddings tied to input
    torch.rand(1000)  # what was drawn before does not matter
    assert same(eager, initialized(transformers.BertForMaskedLM(config)))
    with torch.device("meta"):
        lazy = transformers.BertForMaskedLM(config)
    lazy.to_empty(device="cpu")  # makes new parameter objects: the tie must be made again
    lazy.tie_weights()
    assert same(eager, initialized(lazy))
    assert lazy.get_output_embeddings().weight is lazy.get_input_embeddings().weight
    assert 0.015 < float(eager["bert.encoder.layer.0.attention.self.query.weight"].std()) < 0.025
    assert not eager["bert.encoder.layer.1.output.dense.bias"].any()



class _Refuses(torch.nn.Linear):
    armed = False

    def reset_parameters(self) -> None:
        if self.armed:
            raise RuntimeError("this layer's init failed")
        super().reset_parameters()


def test_a_failing_init_leaves_every_layer_as_it_was() -> None:
    # Issue 25: the layers before the failing one stayed re-initialized.
    rngstate.seed_everything(0)
    model = torch.nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), _Refuses(3, 3), nn.Linear(3, 3))
    model[1].running_mean += 1.0
    before = {key: value.clone() for key, value in model.state_dict().items()}
    model[2].armed = True
    with pytest.raises(RuntimeError, match="init failed"):
        rngstate.torch.init_by_name(model)
    after = model.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)
    model[2].armed = False
    rngstate.torch.init_by_name(model)
    assert not torch.equal(before["0.weight"], model.state_dict()["0.weight"])


@pytest.mark.parametrize("build", ["spectral_norm", "parametrized_spectral_norm", "orthogonal"])
def test_random_buffers_that_no_init_redraws_are_named_in_a_warning(build: str) -> None:
    # Issue 25: they kept values from the global generator without a word.
    rngstate.seed_everything(0)
    utils = torch.nn.utils
    layer = {"spectral_norm": lambda: utils.spectral_norm(torch.nn.Linear(3, 3)),
             "parametrized_spectral_norm": lambda: utils.parametrizations.spectral_norm(nn.Linear(3, 3)),
             "orthogonal": lambda: utils.parametrizations.orthogonal(torch.nn.Linear(3, 3))}[build]()
    inner = "0.parametrizations.weight.0."
    expected = {"spectral_norm": "0.weight_u, 0.weight_v",
                "parametrized_spectral_norm": f"{inner}_u, {inner}_v",
                "orthogonal": f"{inner}base"}[build]
    # (The parametrized weight itself is named too: reset_parameters writes the computed one.)
    with pytest.warns(RNGStateWarning, match="weight_orig|weight.original"), \
            pytest.warns(RNGStateWarning, match=f"random buffer.s. {expected} keep"):
        rngstate.torch.init_by_name(torch.nn.Sequential(layer))
