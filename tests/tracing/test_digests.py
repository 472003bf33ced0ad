"""rngstate.tracing.digests: what the cheap per-step digests must still tell apart."""

from __future__ import annotations

import collections
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import rngstate
from rngstate.backends import stream as backend_stream
from rngstate.errors import StateFileError
from rngstate.tracing import TraceDataError, read_trace, records
from rngstate.tracing.digests import batch_digest, fingerprint, weights_digest
from rngstate.tracing.losses import loss_bits


def _torch_fingerprint_in_a_trace(path: Path) -> bytes:
    with rngstate.trace(path) as trace:
        trace.step()
    return read_trace(path).steps[0].streams["torch.cpu"]


def test_torch_cpu_is_fingerprinted_as_its_backend_encodes_it(tmp_path: Path) -> None:
    """The trace reads torch's state raw (holding its mutex); its fingerprint must be the one
    of the backend's snapshot (taken inside scopes), raw copy or public get_state alike."""
    rngstate.seed_everything(4)
    torch.rand(7)
    stream = backend_stream("torch.cpu")
    expected = fingerprint(stream.snapshot_bytes(stream.get_state()))
    assert fingerprint(stream.snapshot_bytes(torch.default_generator.get_state())) == expected
    assert fingerprint(stream.snapshot_bytes(stream.encode(stream.get_state()))) == expected
    assert _torch_fingerprint_in_a_trace(tmp_path / "a.trace") == expected
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)  # another thread: the backend takes the lock
    other.start()
    try:
        assert fingerprint(stream.snapshot_bytes(stream.get_state())) == expected
        assert _torch_fingerprint_in_a_trace(tmp_path / "b.trace") == expected
    finally:
        stop.set()
        other.join()
    torch.rand(1)
    assert _torch_fingerprint_in_a_trace(tmp_path / "c.trace") != expected


def test_fingerprints_see_every_byte() -> None:
    state = bytearray(torch.default_generator.get_state().numpy().tobytes())
    seen = {fingerprint(bytes(state))}
    for index in (0, len(state) // 2 - 1, len(state) // 2, len(state) - 1):
        changed = bytearray(state)
        changed[index] ^= 0x80
        seen.add(fingerprint(bytes(changed)))
    assert len(seen) == 5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_torch_loss_bits_are_the_tensor_bytes(dtype: torch.dtype) -> None:
    loss = (torch.tensor([[0.1]], dtype=dtype, requires_grad=dtype != torch.float16) * 3)
    expected = loss.detach().numpy()
    assert loss_bits(loss) == {"dtype": expected.dtype.str, "bits": expected.tobytes()}


def test_a_nan_loss_keeps_its_payload() -> None:
    nan = torch.tensor(0x7FC00001, dtype=torch.int32).view(torch.float32)
    assert loss_bits(nan) == {"dtype": "<f4", "bits": struct.pack("<I", 0x7FC00001)}
    assert loss_bits(torch.tensor(3))["bits"] == struct.pack("<q", 3)  # not a float: as NumPy holds it


def test_batch_digests_are_framework_and_layout_blind() -> None:
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    strided = torch.from_numpy(np.asfortranarray(x))  # not contiguous: read as the same bytes
    assert batch_digest([strided, torch.ones(4, dtype=torch.bool)]) == batch_digest([x, np.ones(4, bool)])
    assert batch_digest((torch.from_numpy(x).requires_grad_(),)) == batch_digest((x,))
    big = x.astype(">f4")  # big-endian bytes: digested as the same numbers
    assert batch_digest(big) == batch_digest(x)


def test_batch_digests_tell_structures_apart() -> None:
    x, y = np.ones((2, 3)), np.zeros(2)
    Pair = collections.namedtuple("Pair", "x y")
    digests = [batch_digest(batch)["digest"] for batch in (
        (x, y), [x, y, None], {"x": x, "y": y}, {"y": x, "x": y}, ((x,), y), (x, 0), (x, [])
    )]
    assert len(set(digests)) == len(digests)
    assert batch_digest(Pair(x, y)) == batch_digest((x, y))  # a named tuple is its fields
    assert batch_digest(((), 0))["digest"] != batch_digest((0, ()))["digest"]


def test_every_word_of_a_sample_counts() -> None:
    batch = np.random.default_rng(0).integers(0, 2**31, size=(5, 7), dtype=np.int64)
    base = batch_digest(batch)["samples"]
    for column in range(7):
        changed = batch.copy()
        changed[3, column] ^= 1 << 62
        samples = batch_digest(changed)["samples"]
        assert samples[12:16] != base[12:16] and samples[:12] + samples[16:] == base[:12] + base[16:]


def test_arrays_of_objects_are_refused() -> None:
    with pytest.raises(TraceDataError, match=r"batch\[1\].*Python objects"):
        batch_digest((np.ones(2), np.array([object(), object()])))
    with pytest.raises(TraceDataError, match="nested deeper"):
        nested: list[object] = []
        for _ in range(40):
            nested = [nested]
        batch_digest(nested)


def test_weights_digest_sees_names_and_bytes() -> None:
    model = torch.nn.Linear(3, 2)
    before = weights_digest(model)
    with torch.no_grad():
        model.bias[1] += 1
    assert weights_digest(model) != before
    renamed = torch.nn.Sequential(model)  # the same tensors under other names
    assert weights_digest(renamed) != weights_digest(model)


@pytest.mark.parametrize("version", range(1, records.TRACE_VERSION))
def test_a_trace_of_an_older_format_is_refused_clearly(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.trace"
    path.write_bytes(records.MAGIC + struct.pack(">H", version))
    with pytest.raises(StateFileError, match=f"format version {version}, written by an older rngstate"):
        read_trace(path)
