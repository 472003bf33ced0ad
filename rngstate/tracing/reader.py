"""Read a trace file into validated step records, the way a resumed run's trace reads.

A resumed run appends to the trace of the run it continues; when it records a step (and
accumulation phase) the file already holds, its records replace those of the dead run from that
step on (the dead run may have gone on past its last checkpoint).  A torn last record is skipped,
and so are the zero bytes a writer killed before closing the file leaves after its last record.

>>> import os, tempfile, rngstate
>>> _ = rngstate.seed_everything(0)
>>> path = os.path.join(tempfile.mkdtemp(), "run.trace")
>>> with rngstate.trace(path) as run:
...     _ = [run.step(loss=0.5) for _ in range(3)]
>>> with rngstate.trace(path) as run:  # a resumed run, back at step 2
...     _ = run.step(step=2, loss=0.5)
>>> [(r.step, r.resumed) for r in read_trace(path).steps]
[(1, False), (2, True)]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from rngstate.errors import StateFileError
from rngstate.tracing import records

_MAX_SAMPLES_BYTES = 4 * 1_000_000


@dataclass(frozen=True)
class StepRecord:
    """One training step as recorded (digests are bytes; absent fields are None)."""

    step: int
    epoch: int | None
    position: int | None
    phase: int | None
    streams: dict[str, bytes]
    substreams: dict[str, dict[str, bytes]]  # only those touched since the previous record
    scopes: bytes | None  # digest over every substream
    generators: dict[str, bytes]
    batch: bytes | None
    samples: bytes | None
    loss: tuple[str, bytes] | None
    weights: bytes | None
    optimizer: bytes | None
    session: int
    resumed: bool  # the first step of a session that continues earlier steps (a resume)


@dataclass(frozen=True)
class Session:
    """A process that opened the trace."""

    index: int
    rank: int
    world_size: int
    rngstate: str


@dataclass
class TraceFile:
    """A read trace: its sessions, its steps (after resumed runs replaced what they redid)."""

    path: str
    sessions: list[Session] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    torn: bool = False  # the file ends in an incomplete record (a writer died mid-write)


def _session(data: dict[str, Any], where: str, index: int) -> Session:
    rank = records.integer(data, "rank", where, optional=False)
    world = records.integer(data, "world_size", where, optional=False)
    version = data.get("rngstate", "")
    assert rank is not None and world is not None
    return Session(index, rank, world, records.text(version, f"{where}.rngstate"))


def _step(data: dict[str, Any], where: str, session: int, resumed: bool) -> StepRecord:
    digest = records.blob(data["batch"], f"{where}.batch")
    samples = records.blob(data["samples"], f"{where}.samples", True, 4)
    if samples is not None and (digest is None or len(samples) > _MAX_SAMPLES_BYTES):
        raise StateFileError(f"{where}.samples: {len(samples)} bytes " + (
            "without a batch digest" if digest is None else "is too many"))
    bits = records.blob(data["loss_bits"], f"{where}.loss_bits")
    loss_value = None
    if bits is not None:
        loss_value = (records.text(data["loss_dtype"], f"{where}.loss_dtype"), bits)
    elif data["loss_dtype"] is not None:
        raise StateFileError(f"{where}.loss_dtype: a loss dtype without its bits")
    step = records.integer(data, "step", where, optional=False)
    assert step is not None
    return StepRecord(
        step=step,
        epoch=records.integer(data, "epoch", where),
        position=records.integer(data, "position", where),
        phase=records.integer(data, "phase", where),
        streams=records.names(data["streams"], f"{where}.streams"),
        substreams=records.names(data["substreams"], f"{where}.substreams", nested=True),
        scopes=records.blob(data["scopes"], f"{where}.scopes"),
        generators=records.names(data["generators"], f"{where}.generators"),
        batch=digest,
        samples=samples,
        loss=loss_value,
        weights=records.blob(data["weights"], f"{where}.weights"),
        optimizer=records.blob(data["optimizer"], f"{where}.optimizer"),
        session=session,
        resumed=resumed,
    )


def read_trace(path: str | os.PathLike[str]) -> TraceFile:
    """Read and validate the trace at ``path``; :class:`~rngstate.errors.StateFileError` names
    the first problem (missing, not a trace, corrupt record, impossible field)."""
    name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not isinstance(name, str):
        raise StateFileError(f"expected a path to a trace file, got {type(path).__name__}")
    result = TraceFile(name)
    with records.open_regular(name) as handle:
        size = os.fstat(handle.fileno()).st_size
        if not records.check_header(handle.read(len(records.HEADER)), name):
            result.torn = size > 0
            return result
        end = len(records.HEADER)
        first_of_session, counted = False, 0
        ending = records.Ending()
        for record in records.iter_records(handle, name, ending):
            end, where = record.end, f"{name}: record {record.index}"
            if record.kind == records.SESSION:
                result.sessions.append(_session(record.data[1], where, len(result.sessions)))
                first_of_session = True
                continue
            if not result.sessions:
                raise StateFileError(f"{where}: a step record before any session record")
            fields = record.step_fields()
            number = records.integer(fields, "step", where, optional=False)
            assert number is not None
            counted += 1
            if counted > records.MAX_STEPS:
                raise StateFileError(
                    f"{name}: more than {records.MAX_STEPS} step records; compare reads at most that many"
                )
            phase = records.integer(fields, "phase", where) or 0
            steps = result.steps
            while steps and (steps[-1].step, steps[-1].phase or 0) >= (number, phase):
                steps.pop()  # a resumed run redoes these steps
            resumed = first_of_session and bool(steps)
            steps.append(_step(fields, where, len(result.sessions) - 1, resumed))
            first_of_session = False
        result.torn = ending.torn or (end < size and not ending.padded)
    return result
