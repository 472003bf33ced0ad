"""Diagnostics: a fingerprint for logs, an audit of which streams advanced, generators rngstate
does not track, and a run-twice check.

>>> import random, rngstate
>>> _ = rngstate.seed_everything(0)
>>> with rngstate.audit() as report:
...     _ = random.random()
>>> report.advanced
('python',)
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import random
import struct
import sys
import types
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rngstate import backends
from rngstate.derive import check_seed, derive_bytes
from rngstate.errors import DiagnosticsError as DiagnosticsError  # re-exported: it lived here
from rngstate.errors import MissingBackendError, RNGStateWarning, ScopeError
from rngstate.errors import NotReproducibleError as NotReproducibleError  # re-exported: it lived here
from rngstate.errors import UncomparableOutputError as UncomparableOutputError  # (ditto)
from rngstate.runtime import RUNTIME
from rngstate.state import RNGState

logger = logging.getLogger(__name__)

FINGERPRINT_LENGTH = 12  # hex digits: 48 bits, plenty to tell runs apart in a log


# -- fingerprint ---------------------------------------------------------------------------------


def plain_fingerprint(plain: Any, length: int = FINGERPRINT_LENGTH) -> str:
    """Short BLAKE2b hex digest of plain data (a stream's encoded state), stable across processes.

    >>> plain_fingerprint({"a": 1})
    'ff55ea807b11'
    """
    from rngstate.fileformat import pack  # canonical bytes: sorted keys, big ints wrapped

    return hashlib.blake2b(pack(plain), digest_size=16).hexdigest()[:length]


def fingerprint(state: RNGState | None = None) -> str:
    """A short hash of every stream, substream, tracked generator and the root seed.

    ``state=None`` fingerprints the live state (``capture()`` now).  Equal states give equal
    fingerprints in every process; metadata (versions, determinism switches) is not included.
    Log it every N steps: two runs that drift apart show it at the first differing line.

    >>> import rngstate
    >>> _ = rngstate.seed_everything(7)
    >>> a = rngstate.fingerprint(); _ = rngstate.seed_everything(7)
    >>> a == rngstate.fingerprint() and len(a)
    12
    """
    if state is None:
        from rngstate.snapshot import capture

        state = capture()
    if not isinstance(state, RNGState):
        raise DiagnosticsError(f"fingerprint() takes an RNGState or None, got {type(state).__name__}")
    return state.digest().hex()[:FINGERPRINT_LENGTH]


# -- generators rngstate does not track ----------------------------------------------------------

_SEARCH_DEPTH = 4  # attribute levels below the object: dataset.transform.transforms[2].rng
_SEARCH_ITEMS = 1000  # per container: a dataset's list of a million file names is not searched
_LEAVES = (str, bytes, bytearray, int, float, complex, bool, type(None), type, types.ModuleType,
           types.FunctionType, types.BuiltinFunctionType, types.MethodType, memoryview, range)


def _global_generator_ids() -> set[int]:
    """The generators behind the global streams (``random.random``, ``np.random.rand``, ...)."""
    ids = {id(random._inst)}  # type: ignore[attr-defined]
    numpy_module = sys.modules.get("numpy")
    if numpy_module is not None:
        ids.add(id(numpy_module.random.mtrand._rand))
    torch_module = sys.modules.get("torch")
    if torch_module is not None:
        ids.add(id(torch_module.default_generator))
        ids.update(id(g) for g in getattr(torch_module.cuda, "default_generators", ()))
    return ids


def _is_generator(value: object) -> bool:
    try:
        backends.kind_for(value)
    except MissingBackendError:
        return False
    except Exception:  # a user object whose attribute lookup raises is not a generator
        return False
    return True


def _children(value: object) -> list[tuple[str, object]]:
    try:
        return _members(value)
    except Exception:  # a property or __getattr__ of user code raised: nothing to search there
        return []


def _members(value: object) -> list[tuple[str, object]]:
    if isinstance(value, dict):
        return [(f"[{key!r}]", item) for key, item in itertools.islice(value.items(), _SEARCH_ITEMS)]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [(f"[{i}]", item) for i, item in enumerate(itertools.islice(value, _SEARCH_ITEMS))]
    names: dict[str, object] = {}
    for cls in type(value).__mro__:  # __slots__ attributes live on the class, not in __dict__
        for slot in cls.__dict__.get("__slots__", ()):
            if isinstance(slot, str) and not slot.startswith("__") and hasattr(value, slot):
                names[slot] = getattr(value, slot)
    names.update(getattr(value, "__dict__", None) or {})
    return [(f".{name}", item) for name, item in names.items()]


def untracked_generators(obj: object) -> list[str]:
    """Where ``obj`` (a dataset, a transform) holds a random generator that rngstate does not
    track: a ``random.Random``, ``np.random.Generator``/``RandomState``, ``torch.Generator``, ...
    found in its attributes, containers included, up to four levels down.

    Such a generator breaks exact resume silently: it is not in ``capture()``, DataLoader workers
    each get a copy of it, and rngstate's loaders do not reseed it per sample.  Seed it inside
    ``__getitem__`` from ``rngstate.data.sample_seed(...)``, or ``rngstate.track`` it.  Generators
    inside an object that is tracked (``rngstate.track(compose, ...)``) count as tracked.

    >>> import random
    >>> class Noisy:
    ...     def __init__(self):
    ...         self.rng = random.Random(7)
    ...         self.transforms = [random.Random(8)]
    >>> untracked_generators(Noisy())
    ['rng', 'transforms[0]']
    """
    covered = _global_generator_ids() | {id(t.obj) for t in RUNTIME.tracked.values()}
    found: list[str] = []
    seen: set[int] = set()
    pending: list[tuple[str, object, int]] = [("", obj, 0)]
    while pending:
        path, value, depth = pending.pop()
        if id(value) in seen or id(value) in covered or issubclass(type(value), _LEAVES):
            continue
        seen.add(id(value))
        if path and _is_generator(value):
            found.append(path)
            continue
        if depth < _SEARCH_DEPTH:
            for name, child in reversed(_children(value)):
                pending.append(((path + name).lstrip("."), child, depth + 1))
    return found


def warn_untracked_generators(obj: object, what: str = "the dataset", *, stacklevel: int = 2) -> list[str]:
    """Warn (one ``RNGStateWarning``) when ``obj`` holds generators rngstate does not track;
    returns their paths (see :func:`untracked_generators`).  For loaders and trainers to call on
    the dataset they are given; ``stacklevel`` as for ``warnings.warn``, counted from the caller.

    >>> warn_untracked_generators(object())
    []
    """
    paths = untracked_generators(obj)
    if paths:
        message = (
            f"rngstate: {what} ({type(obj).__qualname__}) holds random generators rngstate does not "
            f"track: {', '.join(paths)}. They are not in capture() and are not reseeded per sample, "
            "so a resumed run draws other numbers. Seed them inside __getitem__ from "
            "rngstate.data.sample_seed(name) (np.random.default_rng(rngstate.data.sample_seed('noise'))), "
            "or wrap them in rngstate.track(generator, name)"
        )
        logger.warning(message)
        warnings.warn(message, RNGStateWarning, stacklevel=stacklevel + 1)
    return paths


# -- audit ---------------------------------------------------------------------------------------


def _encode(name: str, snapshot: Any) -> Any:
    return backends.stream(name).encode(snapshot)


@dataclass
class _View:
    """Encoded (comparable) states of streams, substreams and tracked generators."""

    streams: dict[str, Any]
    substreams: dict[str, dict[str, Any]]
    generators: dict[str, Any]


def _observe() -> _View:
    outer, substreams = RUNTIME.outer_and_substreams()  # also activates newly imported frameworks
    return _View(
        {name: _encode(name, snap) for name, snap in outer.items()},
        {
            path: {name: _encode(name, snap) for name, snap in states.items()}
            for path, states in substreams.items()
        },
        {key: t.kind.encode(t.kind.get_state(t.obj)) for key, t in RUNTIME.tracked.items()},
    )


def _fresh_substream(path: str, name: str) -> Any:
    """The encoded state a substream starts from (to tell 'entered' from 'drew numbers')."""
    if RUNTIME.root is None:
        return None
    stream = backends.stream(name)
    live = stream.get_state()
    try:
        stream.seed_derived(derive_bytes(RUNTIME.root, tuple(path.split("/")), name))
        return stream.encode(stream.get_state())
    finally:
        stream.set_state(live)


@dataclass
class AuditReport:
    """Which streams advanced inside an ``audit()`` block (filled in when the block exits).

    ``advanced``: stream names that drew numbers (or were reseeded) anywhere, outside or inside
    scopes; ``substreams``: per scope path, the streams that advanced there; ``started``: streams
    whose framework was first imported inside the block; ``generators``: tracked generators
    that advanced; ``untracked``: generators held by the objects given to ``audit(...)`` that
    rngstate does not track (see :func:`untracked_generators`).
    """

    advanced: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    started: tuple[str, ...] = ()
    substreams: dict[str, tuple[str, ...]] = field(default_factory=dict)
    generators: tuple[str, ...] = ()
    untracked: tuple[str, ...] = ()
    finished: bool = False

    def __contains__(self, name: object) -> bool:
        return name in self.advanced

    def __str__(self) -> str:
        if not self.finished:
            return "rngstate audit: still running (read the report after the with block)"
        total = len(self.advanced) + len(self.unchanged)
        lines = [f"rngstate audit: {len(self.advanced)} of {total} streams advanced"]
        lines.append(f"  advanced:  {', '.join(self.advanced) or '-'}")
        lines.append(f"  unchanged: {', '.join(self.unchanged) or '-'}")
        if self.started:
            lines.append(f"  started:   {', '.join(self.started)} (framework imported inside the block)")
        for path, names in self.substreams.items():
            lines.append(f"  in scope {path!r}: {', '.join(names)}")
        if self.generators:
            lines.append(f"  tracked generators advanced: {', '.join(self.generators)}")
        if self.untracked:
            lines.append(f"  untracked generators (break exact resume): {', '.join(self.untracked)}")
        return "\n".join(lines)


class audit:  # noqa: N801 - used like a function: `with rngstate.audit() as report:`
    """Find out which random streams the code in a ``with`` block consumed.

    Objects passed in (``rngstate.audit(dataset)``) are searched for generators rngstate does
    not track; each found is named in ``report.untracked`` and in an ``RNGStateWarning``.

    >>> import numpy as np, rngstate
    >>> _ = rngstate.seed_everything(0)
    >>> with rngstate.audit() as report:
    ...     _ = np.random.rand()
    >>> report.advanced
    ('numpy',)
    >>> print(report)  # doctest: +ELLIPSIS
    rngstate audit: 1 of ... streams advanced
      advanced:  numpy
      unchanged: ...python...
    """

    def __init__(self, *objects: object) -> None:
        self.report = AuditReport()
        self._objects = objects
        self._before: _View | None = None

    def __enter__(self) -> AuditReport:
        untracked: list[str] = []
        for obj in self._objects:
            name = type(obj).__qualname__
            paths = warn_untracked_generators(obj, "the object passed to audit()")
            untracked += [name + (path if path.startswith("[") else f".{path}") for path in paths]
        self.report.untracked = tuple(untracked)
        self._before = _observe()
        return self.report

    def __exit__(self, *exc_info: object) -> None:
        before = self._before
        assert before is not None, "audit exited without being entered"
        after = _observe()
        advanced: set[str] = set()
        by_path: dict[str, tuple[str, ...]] = {}
        for name, value in after.streams.items():
            if name in before.streams and before.streams[name] != value:
                advanced.add(name)
        for path, states in after.substreams.items():
            old = before.substreams.get(path, {})
            moved = tuple(
                sorted(
                    name
                    for name, value in states.items()
                    if value != (old[name] if name in old else _fresh_substream(path, name))
                )
            )
            if moved:
                by_path[path] = moved
                advanced.update(moved)
        started = tuple(sorted(set(after.streams) - set(before.streams)))
        report = self.report
        report.advanced = tuple(sorted(advanced))
        report.unchanged = tuple(sorted(set(after.streams) - advanced - set(started)))
        report.started = started
        report.substreams = dict(sorted(by_path.items()))
        report.generators = tuple(
            sorted(
                key
                for key, value in after.generators.items()
                if key in before.generators and before.generators[key] != value
            )
        )
        report.finished = True
        logger.debug("%s", report)


# -- run twice -----------------------------------------------------------------------------------


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
    out.append((path, _array(value, path)))


def _array(value: Any, path: str) -> Any:
    import numpy as np  # only here: `import rngstate` stays free of numpy

    if isinstance(value, (np.ndarray, np.generic)):
        return np.array(value, copy=True)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
            tensor = tensor.float()
        return np.array(tensor.numpy(), copy=True)
    to_numpy = getattr(value, "numpy", None)  # TensorFlow and Paddle tensors
    if callable(to_numpy):
        return np.array(to_numpy(), copy=True)
    raise UncomparableOutputError(
        f"{path}: cannot compare a {type(value).__module__}.{type(value).__qualname__} bit for bit; "
        "return numbers, strings, arrays, tensors, or lists/tuples/dicts of them"
    )


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
