"""``StepTracer``: the step trace a trainer callback keeps (``trace=`` on every
``RNGStateCallback``), opened at the first step it records and closed when training ends.

>>> import os, tempfile, rngstate
>>> _ = rngstate.seed_everything(0)
>>> tracer = StepTracer(os.path.join(tempfile.mkdtemp(), "run.trace"))
>>> tracer.step(step=1, epoch=0, position=0, loss=0.5)
>>> tracer.close(); tracer.path.name
'run.trace'
>>> StepTracer(None).step(step=1)  # no trace: nothing runs
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rngstate.tracing.writer import Trace, TraceError


class StepTracer:
    """Records one step per call once a path is given; with ``path=None`` every call returns at
    once.  The file is opened on the first :meth:`step` (after a resumed run's callback has
    restored the random state) so that a resumed run's first record is its first step."""

    def __init__(self, path: str | os.PathLike[str] | None, weights_every: int = 100) -> None:
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TraceError(f"trace= takes a file path (or None), got {type(path).__name__}")
        self._path = path
        self._weights_every = weights_every
        self._trace: Trace | None = None

    @property
    def enabled(self) -> bool:
        """True when a path was given: callbacks skip gathering a step's fields otherwise."""
        return self._path is not None

    @property
    def path(self) -> Path | None:
        """The file written (per rank: ``run.rank1.trace``), once open; else the path given."""
        if self._trace is not None:
            return self._trace.path
        return None if self._path is None else Path(self._path)

    def open(self) -> Trace | None:
        """The trace, opened at the first call; None without a path.  A callback records through
        it directly (``tracer.open().step(...)``): right after a training step every call is
        costly, and :meth:`step` is one call and one dict of keywords more."""
        trace = self._trace
        if trace is None and self._path is not None:
            trace = self._trace = Trace(self._path, weights_every=self._weights_every)
        return trace

    def step(self, **fields: Any) -> None:
        """:meth:`Trace.step` with the same keywords (``step``, ``epoch``, ``position``,
        ``phase``, ``batch``, ``loss``, ``model``, ``optimizer``)."""
        trace = self._trace
        if trace is None:
            if self._path is None:
                return
            trace = self._trace = Trace(self._path, weights_every=self._weights_every)
        trace.step(**fields)

    def close(self) -> None:
        """Close the file (fsync); the next :meth:`step` opens it again, continuing it."""
        trace, self._trace = self._trace, None
        if trace is not None:
            trace.close()

    def __getstate__(self) -> dict[str, Any]:  # a callback deep-copied by a trainer: no open file
        return {"_path": self._path, "_weights_every": self._weights_every, "_trace": None}
