"""The step trace: one record per training step, and ``compare`` to find where two runs parted.

``rngstate.trace(path)`` opens a trace (:class:`Trace`); ``trace.step(batch=..., loss=...,
model=...)`` appends a record (step, epoch, position, accumulation phase, a fingerprint per
stream, substream and tracked generator, a digest of the batch, the loss's exact bits, every K
steps a digest of the weights and optimizer).  :func:`compare` (``rngstate compare A B``)
aligns two traces by step and names the first difference and its likely cause.

>>> import os, tempfile, random, rngstate
>>> from rngstate.tracing import compare
>>> folder = tempfile.mkdtemp()
>>> for name in ("a.trace", "b.trace"):
...     _ = rngstate.seed_everything(0)
...     with rngstate.trace(os.path.join(folder, name)) as run:
...         for step in range(3):
...             _ = run.step(batch=[step], loss=random.random())
>>> print(compare(os.path.join(folder, "a.trace"), os.path.join(folder, "b.trace")).identical)
True
"""

from rngstate.tracing.compare import Aspect, Comparison, compare, format_comparison
from rngstate.tracing.digests import TraceDataError
from rngstate.tracing.reader import StepRecord, TraceFile, read_trace
from rngstate.tracing.writer import Trace, TraceError, rank_path, trace

__all__ = [
    "Aspect",
    "Comparison",
    "StepRecord",
    "Trace",
    "TraceDataError",
    "TraceError",
    "TraceFile",
    "compare",
    "format_comparison",
    "rank_path",
    "read_trace",
    "trace",
]
