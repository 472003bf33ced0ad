"""``check_reproducible``: run a function twice from the same seed and name the first output
that differed (the run-twice diagnostic of :mod:`rngstate.diagnostics`, which re-exports it).

>>> import random
>>> from rngstate.reproducible import check_reproducible
>>> bool(check_reproducible(lambda: random.random()))
True
"""

from __future__ import annotations

import logging
import math
import os
import struct
import types
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rngstate.arrays import to_numpy
from rngstate.derive import check_seed
from rngstate.errors import (
    DiagnosticsError,
    NotReproducibleError,
    RNGStateWarning,
    ScopeError,
    UncomparableOutputError,
)
from rngstate.runtime import RUNTIME

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class Difference:
    """The first output that differed between run 1 and run ``run``."""

    path: str
    run: int
    first: str
    second: str
    detail: str = ""

    def __str__(self) -> str:
        text = f"{self.path} differs between run 1 and run {self.run}: {self.first} != {self.second}"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass(frozen=True)
class ReproducibilityReport:
    """Result of :func:`check_reproducible`; ``bool(report)`` is True when every run matched."""

    seed: int
    runs: int
    compared: int
    difference: Difference | None

    @property
    def reproducible(self) -> bool:
        """True when every output (and the final RNG state) matched across runs."""
        return self.difference is None

    def __bool__(self) -> bool:
        return self.reproducible

    def raise_if_different(self) -> None:
        """Raise :class:`NotReproducibleError` naming the first difference, if any."""
        if self.difference is not None:
            raise NotReproducibleError(str(self))

    def __str__(self) -> str:
        head = f"seed {self.seed}, {self.runs} runs, {self.compared} outputs compared"
        if self.difference is None:
            return f"reproducible: {head}, all identical"
        return f"NOT reproducible: {head}; first difference: {self.difference}"


_RNG_STATE_PATH = "<rng state after the run>"


def _key_text(key: object) -> str:
    return repr(key)


def _flatten(value: Any, path: str, out: list[tuple[str, Any]], depth: int = 0) -> None:
    """Append (path, comparable copy) for every leaf, in order; copies so later runs can't mutate."""
    if depth > 100:
        raise UncomparableOutputError(f"{path}: outputs nested deeper than 100 levels")
    if value is None or isinstance(value, (bool, int, str, bytes, float, complex)):
        out.append((path, value))
        return
    if isinstance(value, Mapping):
        out.append((path, ("<mapping keys>", [_key_text(key) for key in value])))
        for key, item in value.items():
            _flatten(item, f"{path}[{_key_text(key)}]", out, depth + 1)
        return
    if isinstance(value, (list, tuple, types.GeneratorType)):
        items = list(value)
        out.append((path, ("<length>", len(items))))
        for index, item in enumerate(items):
            _flatten(item, f"{path}[{index}]", out, depth + 1)
        return
    out.append((path, to_numpy(value, path)))


def _same_float(a: float, b: float) -> bool:
    # Bit-for-bit, except that any NaN equals any NaN (NaN payloads are not reproducible data).
    if math.isnan(a) and math.isnan(b):
        return True
    return struct.pack("<d", a) == struct.pack("<d", b)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _compare(a: Any, b: Any) -> tuple[bool, str]:
    """(equal, detail) for two flattened leaves."""
    import numpy as np

    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False, "an array in one run, not in the other"
        if a.shape != b.shape or a.dtype != b.dtype:
            return False, f"shape/dtype {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
        same = np.asarray(a == b)
        if a.dtype.kind in "fc":
            same |= np.isnan(a) & np.isnan(b)
        if a.dtype.kind == "f":
            # == treats -0.0 and 0.0 as equal; bit-for-bit reproducibility does not
            same &= (np.signbit(a) == np.signbit(b)) | np.isnan(a)
        if bool(np.all(same)):
            return True, ""
        wrong = np.argwhere(~same)
        first = tuple(int(i) for i in wrong[0])
        # .item(): plain Python numbers read better than np.float32(...) in a message
        detail = (
            f"{len(wrong)} of {a.size} elements differ; "
            f"first at index {first}: {a[first].item()!r} vs {b[first].item()!r}"
        )
        if a.dtype.kind in "fiu":
            with np.errstate(all="ignore"):
                delta = np.abs(a.astype(np.float64) - b.astype(np.float64))
            detail += f", max |difference| {float(np.nanmax(np.where(same, 0, delta))):.3g}"
        return False, detail
    if isinstance(a, float) and isinstance(b, float):
        return _same_float(a, b), ""
    return (type(a) is type(b) and a == b), ""


def _summary(value: Any) -> str:
    import numpy as np

    if isinstance(value, np.ndarray):
        return f"array{value.shape} {value.dtype}" if value.size > 4 else repr(value.tolist())
    if isinstance(value, tuple) and value and value[0] in ("<length>", "<mapping keys>"):
        return f"{value[0][1:-1]} {value[1]}"
    return _short(value)


def check_reproducible(fn: Callable[[], Any], *, seed: int = 0, runs: int = 2) -> ReproducibilityReport:
    """Run ``fn()`` ``runs`` times, each from ``seed_everything(seed)``, and compare the outputs.

    ``fn`` returns what should repeat: numbers, arrays, tensors (torch, TensorFlow, Paddle) or
    lists/tuples/dicts of them (a list of per-step losses pins down the first diverging step).
    Every run must also leave the random streams in the same state.  The caller's random state
    is put back afterwards.  The report names the first output that differed.

    >>> import random
    >>> from rngstate.diagnostics import check_reproducible
    >>> check_reproducible(lambda: [random.random() for _ in range(3)]).reproducible
    True
    >>> calls = []
    >>> def flaky():
    ...     calls.append(1)
    ...     return [random.random(), len(calls)]
    >>> print(check_reproducible(flaky).difference)
    output[1] differs between run 1 and run 2: 1 != 2
    """
    from rngstate.fingerprints import fingerprint
    from rngstate.seeding import SEED_VARIABLE, seed_everything
    from rngstate.snapshot import capture, restore

    if not callable(fn):
        raise DiagnosticsError(f"check_reproducible() takes a callable, got {type(fn).__name__}")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 2:
        raise DiagnosticsError(f"check_reproducible(): runs must be an integer >= 2, got {runs!r}")
    if RUNTIME.frames:
        raise ScopeError("check_reproducible() reseeds everything; call it outside every rng_scope")
    check_seed(seed)
    saved_variable = os.environ.get(SEED_VARIABLE)
    before = capture()
    results: list[list[tuple[str, Any]]] = []
    try:
        for _ in range(runs):
            seed_everything(seed)
            leaves: list[tuple[str, Any]] = []
            _flatten(fn(), "output", leaves)
            leaves.append((_RNG_STATE_PATH, fingerprint()))
            results.append(leaves)
    finally:
        with warnings.catch_warnings():
            # fn may have imported a framework the saved state predates; leave that one be.
            warnings.simplefilter("ignore", RNGStateWarning)
            restore(before, strict=False)
        if saved_variable is None:
            os.environ.pop(SEED_VARIABLE, None)
        else:
            os.environ[SEED_VARIABLE] = saved_variable
    difference = _first_difference(results)
    report = ReproducibilityReport(seed, runs, len(results[0]), difference)
    logger.info("%s", report)
    return report


def _first_difference(results: list[list[tuple[str, Any]]]) -> Difference | None:
    reference = results[0]
    for run, leaves in enumerate(results[1:], start=2):
        for (path_a, a), (path_b, b) in zip(reference, leaves, strict=False):
            if path_a != path_b:
                return Difference(path_a, run, "present", "absent", f"run {run} has {path_b} here")
            equal, detail = _compare(a, b)
            if not equal:
                if path_a == _RNG_STATE_PATH:
                    detail = "every output matched, but the runs consumed different random numbers"
                return Difference(path_a, run, _summary(a), _summary(b), detail)
        if len(reference) != len(leaves):
            longer = reference if len(reference) > len(leaves) else leaves
            path = longer[min(len(reference), len(leaves))][0]
            return Difference(path, run, "present", "absent", "the runs returned different structures")
    return None
