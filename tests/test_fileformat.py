"""The state file: round trips, deterministic bytes, big integers, atomic writes, bad files."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

import rngstate
from rngstate import fileformat
from tests.conftest import run_python
from tests.test_state import rich_state


def test_round_trip(tmp_path: Path) -> None:
    state = rich_state()
    rngstate.save(tmp_path / "s.rngstate", state)
    assert rngstate.load(tmp_path / "s.rngstate") == state
    assert rngstate.load(str(tmp_path / "s.rngstate")).metadata == state.metadata


def test_save_none_captures_now(tmp_path: Path) -> None:
    rngstate.seed_everything(2)
    saved = rngstate.save(tmp_path / "now")
    assert saved == rngstate.capture() == rngstate.load(tmp_path / "now")


@pytest.mark.slow
def test_deterministic_bytes_across_processes(tmp_path: Path) -> None:
    code = """
    import sys, rngstate, torch
    rngstate.seed_everything(3)
    for name in sys.argv[2:]:
        with rngstate.rng_scope(name):
            torch.rand(1)
    rngstate.save(sys.argv[1])
    """
    run_python(code, str(tmp_path / "a"), "x", "y")
    run_python(code, str(tmp_path / "b"), "y", "x")  # other insertion order, same content
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_big_integers_explicit() -> None:
    value = {"n": 2**127 + 5, "m": -(2**100), "k": [2**64 - 1, -(2**63)]}
    assert fileformat.unpack(fileformat.pack(value)) == value


def test_header_layout(tmp_path: Path) -> None:
    rngstate.seed_everything(2)
    rngstate.save(tmp_path / "s")
    blob = (tmp_path / "s").read_bytes()
    assert blob.startswith(b"\x89RNGSTATE\r\n\x1a\n")
    assert int.from_bytes(blob[13:15], "big") == fileformat.FORMAT_VERSION


def test_atomic_write_leaves_no_temporary(tmp_path: Path) -> None:
    rngstate.seed_everything(2)
    rngstate.save(tmp_path / "s")
    rngstate.save(tmp_path / "s")
    assert sorted(os.listdir(tmp_path)) == ["s"]


def test_failed_write_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rngstate.seed_everything(2)
    first = rngstate.save(tmp_path / "s")
    torch.rand(1)

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError):
        rngstate.save(tmp_path / "s")
    monkeypatch.undo()
    assert rngstate.load(tmp_path / "s") == first
    assert sorted(os.listdir(tmp_path)) == ["s"]


def good_blob() -> bytes:
    return fileformat.pack(rich_state().to_dict())


def torch_checkpoint() -> bytes:
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buffer)
    return buffer.getvalue()


BAD_FILES = {
    "empty": lambda: b"",
    "pickle": lambda: pickle.dumps({"a": 1}),
    "json": lambda: json.dumps({"schema": 1}).encode(),
    "torch.save": torch_checkpoint,
    "magic only": lambda: fileformat.MAGIC,
    "truncated": lambda: good_blob()[:-100],
    "padded": lambda: good_blob() + b"\0",
    "bit flip": lambda: bytes(b ^ 1 if i == 200 else b for i, b in enumerate(good_blob())),
    "newer version": lambda: good_blob()[:13] + b"\x00\x09" + good_blob()[15:],
    "random": lambda: os.urandom(5000),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_raise_state_file_error(case: str, tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(BAD_FILES[case]())
    with pytest.raises(rngstate.StateFileError) as info:
        rngstate.load(path)
    assert isinstance(info.value, ValueError)
    if case == "newer version":
        assert "version 9" in str(info.value) and "version 1" in str(info.value)


def test_valid_msgpack_with_bad_state(tmp_path: Path) -> None:
    data = rich_state().to_dict()
    data["streams"]["python"]["pos"] = 10**9
    (tmp_path / "s").write_bytes(fileformat.pack(data))
    with pytest.raises(rngstate.StateFileError, match="streams.python.pos"):
        rngstate.load(tmp_path / "s")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(rngstate.StateFileError, match="no state file"):
        rngstate.load(tmp_path / "absent")
    with pytest.raises(rngstate.StateFileError, match="directory"):
        rngstate.load(tmp_path)


def test_pack_rejects_non_plain() -> None:
    with pytest.raises(rngstate.StateFileError):
        fileformat.pack({"a": 1.5})
    with pytest.raises(rngstate.StateFileError):
        fileformat.pack({1: "a"})


def test_a_big_foreign_file_is_refused_before_it_is_read(tmp_path: Path, monkeypatch: Any) -> None:
    # Issue 25: load() read up to 4 GiB (a 1.5 GB model file: 1.5 GB RSS, 7.6 s) before
    # checking the 13-byte magic.
    model = tmp_path / "model.pt"
    with open(model, "wb") as file:
        file.write(b"PK\x03\x04")  # torch.save's zip
        file.truncate(1_500_000_000)  # sparse: no disk used
    reads: list[int] = []
    real_readv = os.readv
    monkeypatch.setattr(fileformat.os, "readv", lambda fd, bufs: reads.append(1) or real_readv(fd, bufs))
    with pytest.raises(rngstate.StateFileError, match="bad magic bytes.*torch.save"):
        rngstate.load(model)
    assert reads == []


def test_the_payload_in_pieces_is_one_packb_of_the_canonical_data() -> None:
    """pack_parts cuts the payload where big maps' entries start (no 100 MB buffer); the bytes
    are what packing the canonical data at once gives, checksum included."""
    import hashlib

    import msgpack

    data = {"b": {f"p{i:03d}": {"s": bytes([i]) * 300, "n": i} for i in range(40)}, "a": [1, 2**70],
            "c": {"few": 1}}
    parts = fileformat.pack_parts(data)
    payload = b"".join(parts[1:])
    assert len(parts) > 40
    assert payload == msgpack.packb(fileformat._canonical(data), use_bin_type=True)
    header = parts[0]
    fields = header[len(fileformat.MAGIC) : len(fileformat.MAGIC) + 12]
    digest = hashlib.blake2b(fields + payload, digest_size=32, person=b"rngstate.file").digest()
    assert header[-32:] == digest and fileformat.unpack(header + payload) == data
