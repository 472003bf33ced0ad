"""The writer copies records into room it reserved ahead: zero bytes after the last record are the
end (a killed writer's), never a record; the next writer and close() cut them off."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import rngstate
from rngstate.tracing import compare, read_trace, records, writer
from tests.conftest import ROOT


def _steps(path: Path, count: int, **kwargs: object) -> None:
    rngstate.seed_everything(0)
    with rngstate.trace(path, **kwargs) as trace:  # type: ignore[arg-type]
        for step in range(count):
            trace.step(batch=[step], loss=float(step))


def _end(path: Path) -> int:
    with records.open_regular(path) as handle:
        handle.read(len(records.HEADER))
        return max((r.end for r in records.iter_records(handle, str(path))), default=len(records.HEADER))


def test_close_cuts_the_reserved_room_off(tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    rngstate.seed_everything(0)
    with rngstate.trace(path) as trace:
        trace.step(loss=1.0)
        if hasattr(os, "posix_fallocate"):
            assert path.stat().st_size >= writer._RESERVE  # reserved, mapped room
    assert path.stat().st_size == _end(path)
    assert [r.step for r in read_trace(path).steps] == [1]


def test_records_across_many_reservations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "_RESERVE", 100)  # a new mapping every record or two
    _steps(tmp_path / "small.trace", 50)
    monkeypatch.undo()
    _steps(tmp_path / "large.trace", 50)
    assert compare(tmp_path / "small.trace", tmp_path / "large.trace").identical
    assert (tmp_path / "small.trace").read_bytes() != b""
    assert len(read_trace(tmp_path / "small.trace").steps) == 50


def test_a_file_system_that_cannot_reserve_room_gets_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(fd: int, offset: int, length: int) -> None:
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", refuse, raising=False)
    _steps(tmp_path / "written.trace", 5)
    monkeypatch.undo()
    _steps(tmp_path / "mapped.trace", 5)
    assert compare(tmp_path / "written.trace", tmp_path / "mapped.trace").identical
    assert (tmp_path / "written.trace").stat().st_size == _end(tmp_path / "written.trace")


def test_a_killed_writer_leaves_zero_bytes_that_read_as_the_end(tmp_path: Path) -> None:
    """SIGKILL between steps: every recorded step reads back, the reserved zero bytes are not a
    torn record, and the next writer cuts them off before appending."""
    code = """
import os, signal, sys, rngstate
rngstate.seed_everything(0)
trace = rngstate.trace(sys.argv[1])
for step in range(7):
    trace.step(batch=[step], loss=float(step))
os.kill(os.getpid(), signal.SIGKILL)
"""
    path = tmp_path / "killed.trace"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run([sys.executable, "-c", code, str(path)], env=env).returncode == -signal.SIGKILL
    end = _end(path)
    if hasattr(os, "posix_fallocate"):
        assert path.stat().st_size > end and path.read_bytes()[end:].count(0) == path.stat().st_size - end
    read = read_trace(path)
    assert [r.step for r in read.steps] == list(range(1, 8)) and not read.torn
    full = tmp_path / "full.trace"  # the same run, closed: the same streams as the killed one
    subprocess.run([sys.executable, "-c", code.replace("os.kill(", "trace.close() or ("), str(full)],
                   env=env, check=True)
    assert compare(full, path).identical
    with rngstate.trace(path) as trace:
        assert trace.step() == 8
    read = read_trace(path)
    assert [r.step for r in read.steps] == list(range(1, 9)) and len(read.sessions) == 2
    assert path.stat().st_size == _end(path)


def test_a_record_killed_mid_copy_is_a_torn_tail(tmp_path: Path) -> None:
    """What a copy into the mapping cut short can leave: the header and part of the payload, or
    (a copy that stores its first bytes last) part of the payload under a zero header; then
    zero bytes.  Either is skipped as a torn tail; a padding shorter than a header is too."""
    _steps(tmp_path / "good.trace", 2)
    whole = (tmp_path / "good.trace").read_bytes()
    last = records.frame([records.STEP, 3, *[None] * (len(records.STEP_FIELDS) - 1)])
    cases = {
        "header, half the payload": last[: len(last) // 2 + 4] + bytes(4096),
        "payload under a zero header": bytes(records.FRAME.size) + last[records.FRAME.size :] + bytes(4096),
        "a cut-short header": last[:3],
    }
    for name, tail in cases.items():
        path = tmp_path / "torn.trace"
        path.write_bytes(whole + tail)
        read = read_trace(path)
        assert [r.step for r in read.steps] == [1, 2] and read.torn, name
        with rngstate.trace(path) as trace:  # the next writer drops the torn record
            assert trace.step() == 3
        assert [r.step for r in read_trace(path).steps] == [1, 2, 3] and not read_trace(path).torn
    padded = tmp_path / "padded.trace"
    padded.write_bytes(whole + bytes(records.FRAME.size))
    assert not read_trace(padded).torn and len(read_trace(padded).steps) == 2
