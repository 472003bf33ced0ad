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

import itertools
import logging
import random
import sys
import types
import warnings
from dataclasses import dataclass, field
from typing import Any

from rngstate import backends
from rngstate.derive import derive_bytes
from rngstate.errors import DiagnosticsError as DiagnosticsError  # re-exported: it lived here
from rngstate.errors import MissingBackendError, RNGStateWarning
from rngstate.errors import NotReproducibleError as NotReproducibleError  # re-exported: it lived here
from rngstate.errors import UncomparableOutputError as UncomparableOutputError  # (ditto)
from rngstate.runtime import RUNTIME

logger = logging.getLogger(__name__)

# fingerprint() and plain_fingerprint() live in rngstate.fingerprints (check_reproducible uses
# them too); importable from here as before.
from rngstate.fingerprints import FINGERPRINT_LENGTH as FINGERPRINT_LENGTH  # noqa: E402
from rngstate.fingerprints import fingerprint as fingerprint  # noqa: E402
from rngstate.fingerprints import plain_fingerprint as plain_fingerprint  # noqa: E402

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


# The run-twice check lives in rngstate.reproducible; importable from here as before.
from rngstate.reproducible import Difference as Difference  # noqa: E402
from rngstate.reproducible import ReproducibilityReport as ReproducibilityReport  # noqa: E402
from rngstate.reproducible import check_reproducible as check_reproducible  # noqa: E402

__all__ = [
    "AuditReport",
    "Difference",
    "DiagnosticsError",
    "NotReproducibleError",
    "ReproducibilityReport",
    "UncomparableOutputError",
    "audit",
    "check_reproducible",
    "fingerprint",
    "plain_fingerprint",
    "untracked_generators",
    "warn_untracked_generators",
]
