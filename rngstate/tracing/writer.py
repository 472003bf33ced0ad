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
import mmap
import os
import threading
import time
from pathlib import Path
from typing import Any
from zlib import crc32

import msgpack

from rngstate._version import __version__
from rngstate.distributed import rank_info
from rngstate.errors import RNGStateError
from rngstate.tracing import digests, losses, records
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


def _scan(handle: Any, name: str) -> tuple[int, int, int | None, bool]:
    """(bytes of the valid prefix, sessions, last step, whether what follows is torn) of a trace."""
    if not records.check_header(handle.read(len(records.HEADER)), name):
        return 0, 0, None, True
    valid, sessions, last = len(records.HEADER), 0, None
    ending = records.Ending()
    for record in records.iter_records(handle, name, ending):
        valid = record.end
        if record.kind == records.SESSION:
            sessions += 1
        else:
            last = records.integer(record.step_fields(), "step", f"record {record.index}")
    return valid, sessions, last, not ending.padded


_RESERVE = 1 << 20  # bytes of the file reserved (and mapped) at a time for the next records
_PAGE = mmap.ALLOCATIONGRANULARITY
_ROOM = records.FRAME.size  # zero bytes always left after the last record: readers tell the
# padding of a killed writer (at least that long) from a record cut short in its header


class _Appender:
    """Appends records to an open trace file: one copy into a mapping of room reserved ahead
    with ``posix_fallocate`` (no system call a record: the pages are the page cache's, so a
    killed process leaves every record it copied), or one ``write`` a record where the file
    system or platform cannot reserve room.  :meth:`close` cuts the unused room off."""

    def __init__(self, fd: int, end: int) -> None:
        self.fd, self.end = fd, end
        self.map: mmap.mmap | None = None
        self.base = self.limit = end  # the mapping holds bytes [base, limit) of the file
        self.mapped = hasattr(os, "posix_fallocate")

    def append(self, data: bytes) -> None:
        end = self.end + len(data)
        if end + _ROOM <= self.limit and self.map is not None:
            self.map[self.end - self.base : end - self.base] = data
        elif self.mapped and self._reserve(end):
            assert self.map is not None
            self.map[self.end - self.base : end - self.base] = data
        else:
            os.lseek(self.fd, self.end, os.SEEK_SET)
            written = os.write(self.fd, data)
            while written < len(data):  # a short write (a full disk, a signal): write the rest
                written += os.write(self.fd, memoryview(data)[written:])
        self.end = end

    def _reserve(self, end: int) -> bool:
        """Map room for bytes up to ``end`` (and _RESERVE more); False (from now on writing
        instead) where the file system cannot reserve it: a mapping of unreserved room would
        kill the process with SIGBUS when the disk is full."""
        self._unmap()
        base = self.end - self.end % _PAGE
        limit = end + _RESERVE
        try:
            os.posix_fallocate(self.fd, self.end, limit - self.end)
            self.map = mmap.mmap(self.fd, limit - base, offset=base)
        except (OSError, ValueError):
            self.mapped = False
            os.ftruncate(self.fd, self.end)  # what fallocate may have added
            return False
        self.base, self.limit = base, limit
        return True

    def _unmap(self) -> None:
        if self.map is not None:
            self.map.close()
            self.map = None
            self.base = self.limit = self.end

    def close(self) -> None:
        """Cut the reserved room off, fsync."""
        try:
            if self.map is not None:
                self.map.flush()
            self._unmap()
            os.ftruncate(self.fd, self.end)
            os.fsync(self.fd)
        finally:
            os.close(self.fd)


class Trace:
    """An open step trace.  Create it with :func:`rngstate.trace`; call :meth:`step` once per
    training step (after the optimizer step), from any integration or a hand-written loop.

    ``weights_every``: digest the model's and optimizer's state at every step number divisible
    by it (100 by default; 0: never).  A record is appended with one copy into room reserved
    ahead (one ``write`` where the file system cannot reserve room), so a killed process leaves
    every step it recorded; :meth:`close` (or leaving the ``with`` block) cuts the reserved room
    off and fsyncs the file.
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
        self._pack = msgpack.Packer(use_bin_type=True).pack  # used under self._lock only
        self._out: _Appender | None = None
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
                valid, sessions, self._last, torn = _scan(handle, name)
            size = os.fstat(fd).st_size
            if valid < size:  # the reserved room of a writer that was killed (or a torn record)
                if torn:
                    logger.warning("%s: dropping %d bytes of an incomplete last record", name, size - valid)
                os.ftruncate(fd, valid)
            session = [records.SESSION, {
                "session": sessions,
                "rank": self.rank,
                "world_size": self.world_size,
                "pid": os.getpid(),
                "time": int(time.time()),
                "rngstate": __version__,
                "weights_every": self.weights_every,
            }]
            # The header and session record are written (not mapped): a file never starts with
            # reserved zero bytes.
            data = (records.HEADER if valid == 0 else b"") + records.frame(session)
            out = _Appender(fd, valid)
            out.mapped = False
            out.append(data)
            out.mapped = hasattr(os, "posix_fallocate")
        except BaseException:
            os.close(fd)
            raise
        self._out = out

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

        >>> import os, tempfile, rngstate
        >>> _ = rngstate.seed_everything(0)
        >>> with rngstate.trace(os.path.join(tempfile.mkdtemp(), "run.trace")) as run:
        ...     run.step(epoch=0, position=0, loss=0.5), run.step(step=7, batch=[1, 2])
        (1, 7)
        """
        # One function, few calls: right after a training step the caches are cold and every
        # call costs several times what it costs in a loop (see docs/diagnostics.md, "Cost").
        with self._lock:
            out = self._out
            if out is None:
                raise TraceError(f"the trace {str(self.path)!r} is closed")
            if step is None:  # a micro-step of gradient accumulation (phase > 0) joins the last step
                last = self._last
                number = (last or 0) + (0 if phase and last else 1)
            elif type(step) is int and 0 <= step < _LIMIT:
                number = step
            else:
                number = _count("step", step)
            if epoch is not None and not (type(epoch) is int and 0 <= epoch < _LIMIT):
                epoch = _count("epoch", epoch)
            if position is not None and not (type(position) is int and 0 <= position < _LIMIT):
                position = _count("position", position)
            if phase is not None and not (type(phase) is int and 0 <= phase < _LIMIT):
                phase = _count("phase", phase)
            streams, touched, scopes, generators = self._streams.take()
            digest = samples = dtype = bits = weights = state = None
            if batch is not _MISSING and batch is not None:
                digest, samples = digests.batch_fields(batch)
            if loss is not None:
                dtype, bits = losses.loss_fields(loss)
            every = self.weights_every
            if every and number % every == 0:
                if model is not None:
                    weights = digests.weights_digest(model)
                if optimizer is not None:
                    state = digests.weights_digest(optimizer)
            payload = self._pack([records.STEP, number, epoch, position, phase, streams, touched, scopes,
                                  generators, digest, samples, dtype, bits, weights, state])
            data = _FRAME(len(payload), crc32(payload)) + payload
            start, mapped = out.end, out.map
            end = start + len(data)
            if mapped is not None and end + _ROOM <= out.limit:  # _Appender.append, inline
                mapped[start - out.base : end - out.base] = data
                out.end = end
            else:
                out.append(data)
            self._last = number
            return number

    def close(self) -> None:
        """Cut off the room reserved for more records, flush the file to disk and close it
        (idempotent)."""
        with self._lock:
            out, self._out = self._out, None
        if out is not None:
            out.close()

    def __enter__(self) -> Trace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Trace({str(self.path)!r}, last step {self._last})"


_FRAME = records.FRAME.pack


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
