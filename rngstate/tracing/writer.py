"""``rngstate.trace(path)``: append one record per training step to a trace file.

>>> import os, tempfile, rngstate
>>> _ = rngstate.seed_everything(0)
>>> path = os.path.join(tempfile.mkdtemp(), "run.trace")
>>> with rngstate.trace(path) as trace:
...     trace.step(loss=0.25)
1
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import msgpack

from rngstate._version import __version__
from rngstate.distributed import rank_info
from rngstate.errors import RNGStateError
from rngstate.tracing import digests, records
from rngstate.tracing.streams import StreamFingerprints

try:
    import fcntl
except ImportError:  # Windows: two writers of one trace are not detected
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

_MISSING: Any = object()
_LIMIT = 2**63


class TraceError(RNGStateError):
    """A trace cannot be opened or written (another process writes it, a bad argument)."""


def _count(name: str, value: Any) -> int:
    """``value`` if it is an integer in [0, 2**63), else TraceError."""
    if type(value) is not int or not 0 <= value < _LIMIT:  # bool is not an int here
        if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _LIMIT):
            raise TraceError(f"trace.step(): {name} must be an integer >= 0, got {value!r}")
        value = int(value)  # an int subclass (an IntEnum): recorded as the number
    return value  # type: ignore[no-any-return]


def rank_path(path: str | os.PathLike[str], rank: int, world_size: int) -> Path:
    """The file of one rank: ``run.trace`` -> ``run.rank1.trace`` when the job has several ranks.

    >>> str(rank_path("out/run.trace", 1, 2)), str(rank_path("out/run.trace", 0, 1))
    ('out/run.rank1.trace', 'out/run.trace')
    """
    target = Path(path)
    if world_size <= 1:
        return target
    return target.with_name(f"{target.stem}.rank{rank}{target.suffix}")


def _scan(handle: Any, name: str) -> tuple[int, int, int | None]:
    """(bytes of the valid prefix, sessions, last step) of an existing trace."""
    if not records.check_header(handle.read(len(records.HEADER)), name):
        return 0, 0, None
    valid, sessions, last = len(records.HEADER), 0, None
    for record in records.iter_records(handle, name):
        valid = record.end
        if record.data.get("kind") == "session":
            sessions += 1
        elif record.data.get("kind") == "step":
            last = records.integer(record.data, "step", f"record {record.index}")
    return valid, sessions, last


class Trace:
    """An open step trace.  Create it with :func:`rngstate.trace`; call :meth:`step` once per
    training step (after the optimizer step), from any integration or a hand-written loop.

    ``weights_every``: digest the model's and optimizer's state at every step number divisible
    by it (100 by default; 0: never).  Records are appended with one ``write`` each, so a
    killed process leaves every step it recorded; :meth:`close` (or leaving the ``with``
    block) also fsyncs the file.
    """

    def __init__(self, path: str | os.PathLike[str], *, weights_every: int = 100) -> None:
        if isinstance(weights_every, bool) or not isinstance(weights_every, int) or weights_every < 0:
            raise TraceError(f"trace(): weights_every must be an integer >= 0, got {weights_every!r}")
        topology = rank_info()
        self.rank, self.world_size = topology.rank, topology.world_size
        self.path = rank_path(path, self.rank, self.world_size)
        self.weights_every = weights_every
        self._lock = threading.Lock()
        self._streams = StreamFingerprints()
        self._packer = msgpack.Packer(use_bin_type=True)  # used under self._lock only
        self._fd: int | None = None
        self._last: int | None = None
        self._open()

    def _open(self) -> None:
        name = str(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(name, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise TraceError(f"cannot open the trace {name!r}: {exc.strerror}") from None
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    raise TraceError(
                        f"another process is writing the trace {name!r}; give each run (and each "
                        "rank: it is named per rank when RANK/WORLD_SIZE say there are several) its own"
                    ) from None
            with os.fdopen(os.dup(fd), "rb") as handle:
                valid, sessions, self._last = _scan(handle, name)
            size = os.fstat(fd).st_size
            if valid < size:  # a torn last record (or header) of a process that died mid-write
                logger.warning("%s: dropping %d bytes of an incomplete last record", name, size - valid)
                os.ftruncate(fd, valid)
            os.lseek(fd, valid, os.SEEK_SET)
            if valid == 0:
                self._write(fd, records.HEADER)
            session = {
                "kind": "session",
                "session": sessions,
                "rank": self.rank,
                "world_size": self.world_size,
                "pid": os.getpid(),
                "time": int(time.time()),
                "rngstate": __version__,
                "weights_every": self.weights_every,
            }
            self._write(fd, records.frame(session))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        written = os.write(fd, data)
        if written < len(data):  # a short write (a full disk, a signal): write the rest
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(fd, view) :]

    def step(
        self,
        *,
        batch: Any = _MISSING,
        loss: Any = None,
        model: Any = None,
        optimizer: Any = None,
        step: int | None = None,
        epoch: int | None = None,
        position: int | None = None,
        phase: int | None = None,
    ) -> int:
        """Append the record of one training step; returns its step number.

        ``step`` defaults to the previous step + 1, or the previous step when ``phase`` > 0
        (the first of a new trace is 1; a trace reopened by a resumed run continues after its
        last record: pass ``step=`` when the run resumes from a checkpoint older than that).
        ``epoch``, ``position`` (the batch's index in the epoch) and ``phase`` (the micro-step
        of gradient accumulation) are recorded as given.  ``batch``: any nesting of
        tuples/lists/dicts of tensors or arrays; ``loss``: a number or a one-element tensor;
        ``model``/``optimizer``: digested at every step number divisible by ``weights_every``.
        """
        with self._lock:
            fd = self._fd
            if fd is None:
                raise TraceError(f"the trace {str(self.path)!r} is closed")
            # Without step=, a micro-step of gradient accumulation (phase > 0) joins the last step.
            number = (self._last or 0) + (0 if phase and self._last else 1) if step is None else step
            record: dict[str, Any] = {"kind": "step", "step": _count("step", number)}
            if epoch is not None:
                record["epoch"] = _count("epoch", epoch)
            if position is not None:
                record["position"] = _count("position", position)
            if phase is not None:
                record["phase"] = _count("phase", phase)
            record.update(self._streams.take())
            if batch is not _MISSING and batch is not None:
                record["batch"] = digests.batch_digest(batch)
            if loss is not None:
                record["loss"] = digests.loss_bits(loss)
            if self.weights_every and number % self.weights_every == 0:
                if model is not None:
                    record["weights"] = digests.weights_digest(model)
                if optimizer is not None:
                    record["optimizer"] = digests.weights_digest(optimizer)
            self._write(fd, records.frame(record, self._packer))
            self._last = number
            return number

    def close(self) -> None:
        """Flush the file to disk and close it (idempotent)."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def __enter__(self) -> Trace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Trace({str(self.path)!r}, last step {self._last})"


def trace(path: str | os.PathLike[str], *, weights_every: int = 100) -> Trace:
    """Open (or continue) the step trace at ``path``, one file per rank.

    Use it as ``with rngstate.trace("run.trace") as trace: ... trace.step(batch=..., loss=...)``;
    compare two traces with ``rngstate compare A B`` or :func:`rngstate.tracing.compare`.  In a
    job of several ranks each writes its own file (``run.rank1.trace``).

    >>> import os, tempfile, rngstate
    >>> _ = rngstate.seed_everything(0)
    >>> path = os.path.join(tempfile.mkdtemp(), "run.trace")
    >>> with rngstate.trace(path) as run:
    ...     run.step(loss=1.5), run.step(loss=1.25)
    (1, 2)
    """
    return Trace(path, weights_every=weights_every)
