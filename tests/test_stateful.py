"""rngstate.stateful(): state_dict()/load_state_dict() over capture/restore, in one process."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import rngstate
from rngstate.distributed import TopologyError
from rngstate.errors import InvalidStateError, RNGStateError, StateFileError
from rngstate.stateful import RNGStateful


def draws() -> list[float]:
    with rngstate.rng_scope("noise", per_rank=True):
        noise = torch.rand(2).tolist()
    return [random.random(), *torch.rand(2).tolist(), *noise]


def plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(map(plain, value))
    return isinstance(value, (str, bytes)) or (isinstance(value, int) and not isinstance(value, bool))


def test_round_trip_through_torch_save_weights_only() -> None:
    rngstate.seed_everything(4)
    rng = rngstate.stateful()
    assert isinstance(rng, RNGStateful)
    draws()
    buffer = io.BytesIO()
    torch.save({"rng": rng.state_dict()}, buffer)
    expected = [draws() for _ in range(3)]
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    assert plain(checkpoint["rng"]) and set(checkpoint["rng"]) == {"rngstate", "world_size", "rank0"}
    rng.load_state_dict(checkpoint["rng"])
    assert [draws() for _ in range(3)] == expected


def test_is_a_dcp_stateful() -> None:
    from torch.distributed.checkpoint.stateful import Stateful

    assert isinstance(rngstate.stateful(), Stateful)


def test_accelerate_register_for_checkpointing(tmp_path: Path) -> None:
    accelerate = pytest.importorskip("accelerate")
    accelerator = accelerate.Accelerator(cpu=True)
    rngstate.seed_everything(8)
    accelerator.register_for_checkpointing(rngstate.stateful())
    draws()
    accelerator.save_state(str(tmp_path / "ckpt"))
    expected = [draws() for _ in range(2)]
    accelerator.load_state(str(tmp_path / "ckpt"))
    assert [draws() for _ in range(2)] == expected


def saved(monkeypatch: pytest.MonkeyPatch, rank: int, world_size: int) -> dict[str, Any]:
    monkeypatch.setenv("WORLD_SIZE", str(world_size))
    monkeypatch.setenv("RANK", str(rank))
    rngstate.seed_everything(2)
    return rngstate.stateful().state_dict()


def test_rank_keyed_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    one = saved(monkeypatch, 1, 2)
    assert set(one) == {"rngstate", "world_size", "rank1"} and one["world_size"] == 2
    zero = saved(monkeypatch, 0, 2)
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(TopologyError, match="holds rank.s. 0 of 2; rank 1 of 2 has no entry"):
        rngstate.stateful().load_state_dict(zero)
    rngstate.stateful().load_state_dict({**zero, **one})  # both: each rank takes its own
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(TopologyError, match="saved by 2 ranks and is loaded by 3.*reshard=True"):
        rngstate.stateful().load_state_dict({**zero, **one})


def test_reshard_takes_rank_0_and_rederives_per_rank_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    zero = saved(monkeypatch, 0, 2)
    draws()
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TopologyError, match="as many as this job has"):
        rngstate.stateful(reshard=True).load_state_dict(zero)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    request = rngstate.stateful(reshard=True).state_dict()
    assert request == {"rngstate": 1, "world_size": 4, "rank0": b""}
    with pytest.raises(StateFileError, match="saved by a stateful.reshard=True."):
        rngstate.stateful(reshard=True).load_state_dict({**request, "world_size": 2})
    rngstate.stateful(reshard=True).load_state_dict(zero)
    after = draws()
    rngstate.seed_everything(2)
    assert after == draws()  # rank 0's global streams, and "noise/#rank3" derived afresh
    assert rngstate.capture().metadata["rank"] == 3


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"rngstate": 2}, InvalidStateError, "rngstate=2, expected 1"),
        ({"world_size": "2"}, InvalidStateError, "world_size: expected an integer"),
        ({"rank7": b""}, InvalidStateError, "unexpected key 'rank7'"),
        ({"model": 1}, InvalidStateError, "unexpected key 'model'"),
        ({"rank0": b"junk"}, StateFileError, "entry of rank 0"),
        ({"rank0": "text"}, StateFileError, "is a str, not bytes"),
    ],
)
def test_bad_state_dicts(change: dict[str, Any], error: type[Exception], match: str) -> None:
    rngstate.seed_everything(1)
    rng = rngstate.stateful()
    good = rng.state_dict()
    before = rngstate.capture()
    with pytest.raises(error, match=match):
        rng.load_state_dict({**good, **change})
    assert rngstate.capture() == before  # nothing applied
    with pytest.raises(InvalidStateError, match="expected a dict"):
        rng.load_state_dict([good])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rngstate": True}, r"rngstate=True, expected 1 \(an int\)"),
        ({"rngstate": 1.0}, r"rngstate=1.0, expected 1 \(an int\)"),
        ({"rngstate": np.array([1, 1])}, r"rngstate=array.*expected 1 \(an int\)"),
        ({"rank000": b"x"}, "unexpected key 'rank000'.*without leading zeros"),
        ({"rank" + "1" * 5000: b"x"}, "unexpected key 'rank111"),
        ({"rank0": np.frombuffer(b"abc", np.uint8)}, "rank 0 is a ndarray, not bytes"),
    ],
)
def test_malformed_state_dicts_are_refused_with_a_clear_message(change: dict[str, Any], message: str) -> None:
    # Issue 25: True / 1.0 passed for the format, "rank0" and "rank000" both meant rank 0 (the
    # last silently won), and arrays or a 5000-digit key failed deep inside NumPy or int().
    rngstate.seed_everything(0)
    good = rngstate.stateful().state_dict()
    with pytest.raises(RNGStateError, match=message):
        rngstate.stateful().load_state_dict({**good, **change})
