"""Trace files are read as hostile input: a clear StateFileError (exit 2 from the CLI), never a
traceback, a hang or a huge allocation; a file cut anywhere reads up to its last whole record."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest

import rngstate
from rngstate.cli import main
from rngstate.tracing import compare, read_trace
from rngstate.tracing.records import HEADER, MAGIC, MAX_RECORD_BYTES, STEP_FIELDS, frame, iter_records
from tests.conftest import ROOT

SESSION = [0, {"session": 0, "rank": 0, "world_size": 1, "rngstate": "x"}]


def _step(**fields: object) -> list[object]:
    """A step record (a positional list) with ``fields`` set, every other item nil."""
    assert set(fields) <= set(STEP_FIELDS)
    return [1, *(fields.get(name) for name in STEP_FIELDS)]


def _write(path: Path, *payloads: bytes | list[object]) -> Path:
    chunks = [HEADER]
    for payload in payloads:
        chunks.append(frame(payload) if isinstance(payload, list) else payload)
    path.write_bytes(b"".join(chunks))
    return path


def _raw(payload: bytes) -> bytes:
    """A frame with a correct checksum around arbitrary payload bytes."""
    import zlib

    return struct.pack(">II", len(payload), zlib.crc32(payload)) + payload


def _good(tmp_path: Path, name: str = "good.trace", steps: int = 4) -> Path:
    rngstate.seed_everything(0)
    with rngstate.trace(tmp_path / name) as trace:
        for step in range(steps):
            trace.step(batch=[step], loss=float(step))
    return tmp_path / name


HOSTILE = {
    "not a trace": lambda p: p.write_bytes(b"PK\x03\x04 a zip"),
    "a state file": lambda p: rngstate.save(p),
    "newer version": lambda p: p.write_bytes(MAGIC + struct.pack(">H", 9)),
    "huge declared length": lambda p: _write(p, SESSION, struct.pack(">II", 2**31, 0) + b"x" * 64
                                            + frame(SESSION)),
    "bad checksum mid-file": lambda p: _write(p, SESSION, struct.pack(">II", 3, 0) + b"abc", SESSION),
    "not msgpack": lambda p: _write(p, _raw(b"\xc1\xc1\xc1"), SESSION),
    "deep nesting": lambda p: _write(p, _raw(b"\x91" * 100_000 + b"\x00")),
    "a map, not a list": lambda p: _write(p, _raw(msgpack.packb({"kind": "session"}))),
    "a step of two items": lambda p: _write(p, SESSION, _raw(msgpack.packb([1, 2]))),
    "unknown kind": lambda p: _write(p, SESSION, [7, "\x1b]0;pwned\x07"]),
    "a kind that is not an integer": lambda p: _write(p, SESSION, ["\x1b]0;pwned\x07", {}]),
    "a session that is not a map": lambda p: _write(p, [0, [1, 2]]),
    "step before session": lambda p: _write(p, _step(step=1)),
    "negative step": lambda p: _write(p, SESSION, _step(step=-1)),
    "huge step": lambda p: _write(p, SESSION, _step(step=2**64 - 1)),
    "stream digest not bytes": lambda p: _write(p, SESSION, _step(step=1, streams={"x": 1})),
    "samples not 8-byte": lambda p: _write(p, SESSION, _step(step=1, batch=b"12345678", samples=b"123")),
    "samples without a batch": lambda p: _write(p, SESSION, _step(step=1, samples=b"12345678")),
    "loss dtype without bits": lambda p: _write(p, SESSION, _step(step=1, loss_dtype="<f8")),
    "ext type": lambda p: _write(p, _raw(b"\xd4\x05\x00")),
    "a map key that is not a str": lambda p: _write(p, _raw(msgpack.packb([0, {1: 2}]))),
    "long name": lambda p: _write(p, SESSION, _step(step=1, streams={"n" * 10_000: b"x"})),
    "zero bytes, then records": lambda p: _write(p, SESSION, bytes(MAX_RECORD_BYTES + 64), frame(SESSION)),
    "a directory": lambda p: p.mkdir(),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_files_are_a_clear_error(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.trace"
    HOSTILE[case](path)
    with pytest.raises(rngstate.StateFileError):
        read_trace(path)
    assert main(["compare", str(_good(tmp_path)), str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rngstate: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "\x1b" not in err and "\x07" not in err


def test_missing_file_fifo_and_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = str(_good(tmp_path))
    assert main(["compare", good, str(tmp_path / "missing.trace")]) == 2
    assert "no trace file" in capsys.readouterr().err
    fifo = tmp_path / "fifo.trace"
    os.mkfifo(fifo)
    assert main(["compare", good, str(fifo)]) == 2  # would hang if opened for a blocking read
    assert "not a regular file" in capsys.readouterr().err
    assert main(["compare", good]) == 2
    assert main(["compare", good, good, "--rank", "-1"]) == 2


def test_names_from_a_file_cannot_drive_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "\x1b[2J\x1b]0;pwned\x07"
    step = _step(step=1, streams={name: b"a"}, scopes=b"s")
    other = _step(step=1, streams={name: b"b"}, scopes=b"s")
    a, b = _write(tmp_path / "a.trace", SESSION, step), _write(tmp_path / "b.trace", SESSION, other)
    assert main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b[2J" in out


def test_a_file_cut_anywhere_reads_up_to_its_last_whole_record(tmp_path: Path) -> None:
    whole = _good(tmp_path, steps=3).read_bytes()
    with open(tmp_path / "good.trace", "rb") as handle:
        handle.read(len(HEADER))
        ends = [(r.end, "step" if r.kind else "session") for r in iter_records(handle, "good")]
    cut = tmp_path / "cut.trace"
    for size in range(len(whole) + 1):
        cut.write_bytes(whole[:size])
        read = read_trace(cut)
        assert len(read.steps) == sum(1 for end, kind in ends if end <= size and kind == "step")
        assert read.torn == (size not in (0, len(HEADER), *(end for end, _ in ends))), size


def test_a_run_killed_mid_write_still_compares(tmp_path: Path) -> None:
    """A real SIGKILL of a process that is appending records as fast as it can."""
    code = """
import sys, numpy as np, rngstate
rngstate.seed_everything(0)
big = np.zeros((4096, 64))  # 2 MiB batches: each record's digests take a while
with rngstate.trace(sys.argv[1], weights_every=1) as trace:
    step = 0
    while True:
        step += 1
        trace.step(batch=(big + step,), loss=float(step), model={"w": big})
        if step == 3:
            print("ready", flush=True)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = tmp_path / "killed.trace"
    process = subprocess.Popen([sys.executable, "-c", code, str(killed)], stdout=subprocess.PIPE, env=env)
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    read = read_trace(killed)
    assert len(read.steps) >= 3 and [r.step for r in read.steps] == list(range(1, len(read.steps) + 1))
    # An uninterrupted run of the same steps compares identical over every step the killed one kept.
    full = tmp_path / "full.trace"
    run = code.replace("while True:", f"for _ in range({len(read.steps) + 2}):").replace(
        'print("ready", flush=True)', "pass")
    subprocess.run([sys.executable, "-c", run, str(full)], check=True, env=env)
    result = compare(full, killed)
    assert result.identical and result.compared == len(read.steps)
    assert "A goes on to step" in " ".join(result.notes)
    # ... and the killed run's file, with a torn tail or not, takes the next run's records.
    with rngstate.trace(killed) as trace:
        trace.step()
    assert not read_trace(killed).torn


def test_a_torn_record_from_sigkill_mid_write(tmp_path: Path) -> None:
    """SIGKILL while one large record is being written: what reached the file is a torn tail
    that is skipped, and the records before it compare."""
    good = _good(tmp_path, "a.trace", steps=2)
    torn = tmp_path / "b.trace"
    payload = msgpack.packb(_step(step=3, batch=b"x" * 900_000))
    data = good.read_bytes() + _raw(payload)
    # A writer killed mid-write leaves a prefix of its last record: every prefix reads the same.
    for size in (len(good.read_bytes()) + 1, len(good.read_bytes()) + 12, len(data) - 1):
        torn.write_bytes(data[:size])
        result = compare(good, torn)
        assert result.identical and result.compared == 2 and "incomplete record" in " ".join(result.notes)
