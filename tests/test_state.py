"""RNGState: immutability, equality, plain dicts and validation."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch

import rngstate
from rngstate import RNGState
from rngstate.errors import InvalidStateError


def plain_types(value: Any) -> set[type]:
    if isinstance(value, dict):
        return {dict}.union(*(plain_types(v) for v in value.values()), *(plain_types(k) for k in value))
    if isinstance(value, list):
        return {list}.union(*(plain_types(v) for v in value))
    return {type(value)}


def rich_state() -> RNGState:
    rngstate.seed_everything(6)
    np.random.standard_normal()
    with rngstate.rng_scope("a"), rngstate.rng_scope("b"):
        torch.rand(1)
    rngstate.torch.generator("g")
    rngstate.numpy.generator("pcg")  # PCG64: 128-bit integers
    return rngstate.capture()


def test_to_dict_is_plain() -> None:
    assert plain_types(rich_state().to_dict()) <= {dict, list, str, int, bytes}


def test_round_trip_and_equality() -> None:
    state = rich_state()
    copy = RNGState.from_dict(state.to_dict())
    assert copy == state and hash(copy) == hash(state)
    torch.rand(1)
    assert rngstate.capture() != state


def test_metadata_ignored_by_equality() -> None:
    state = rich_state()
    data = state.to_dict()
    data["metadata"]["torch"] = "0.0.0"
    assert RNGState.from_dict(data) == state
    assert state.metadata["rngstate"] == rngstate.__version__
    assert state.metadata["torch"] == torch.__version__


def test_immutable() -> None:
    state = rich_state()
    streams = state.streams
    # paddle joins the active streams when an earlier test imported it, so compare with before
    assert {"numpy", "python", "torch.cpu"} <= set(streams)
    with pytest.raises(AttributeError):
        state.root_seed = 3  # type: ignore[misc]
    data = state.to_dict()
    data["streams"].clear()
    assert state.streams == streams
    with pytest.raises(TypeError):
        RNGState()


def test_safe_inside_torch_save_weights_only() -> None:
    state = rich_state()
    buffer = io.BytesIO()
    torch.save({"model": {}, "rng": state.to_dict()}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert RNGState.from_dict(loaded["rng"]) == state


def test_properties() -> None:
    state = rich_state()
    assert state.root_seed == 6
    assert state.substreams == ("a", "a/b")
    assert state.generators == ("g", "pcg")
    assert "RNGState(root_seed=6" in repr(state)


def corrupt(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = rich_state().to_dict()
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


BAD = {
    "missing key": (("streams",), KeyError),
    "extra key": (("surprise",), 1),
    "newer schema": (("schema",), 99),
    "bool schema": (("schema",), True),
    "negative root": (("root_seed",), -1),
    "huge root": (("root_seed",), 2**80),
    "float in metadata": (("metadata", "x"), 1.5),
    "torch state short": (("streams", "torch.cpu"), b"\0" * 10),
    "torch state zero": (("streams", "torch.cpu"), b"\0" * 5056),
    "numpy pos huge": (("streams", "numpy", "state", "pos"), 10**6),
    "numpy key short": (("streams", "numpy", "state", "key"), b"12"),
    "numpy unknown generator": (("streams", "numpy", "bit_generator"), "Evil"),
    "python pos": (("streams", "python", "pos"), 625),
    "python gauss": (("streams", "python", "gauss"), b"123"),
    "substream path": (("substreams", "a//b"), {}),
    "generator kind": (("generators", "g", "kind"), "jax.PRNGKey"),
    "generator device": (("generators", "g", "state", "device"), "tpu"),
    "pcg state too big": (("generators", "pcg", "state", "state", "state"), 2**130),
    "pcg negative": (("generators", "pcg", "state", "state", "inc"), -5),
    "nested junk": (("streams", "python"), [[[[{"a": None}]]]]),
    "not a dict": (("substreams",), "a"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_from_dict_rejects(case: str) -> None:
    path, value = BAD[case]
    data = corrupt(path, value)
    with pytest.raises(InvalidStateError):
        RNGState.from_dict(data)
    with pytest.raises(rngstate.RNGStateError):
        rngstate.restore(data)


def test_from_dict_rejects_non_dict() -> None:
    with pytest.raises(InvalidStateError, match="expected a dict"):
        RNGState.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(InvalidStateError):
        rngstate.restore("state.bin")  # type: ignore[arg-type]
