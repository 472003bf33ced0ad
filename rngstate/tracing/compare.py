"""``compare(a, b)``: the first step where two traces differ, what differed first, and why.

Steps are aligned by number.  At each step the aspects are compared in the order that explains
a divergence: the step's place (epoch, position, accumulation phase), the batch (order or
content), the random streams (global, then scopes, then tracked generators), the loss, the
weights.  The first aspect that differs, with the records around it, names the likely cause.

>>> import os, tempfile, rngstate
>>> folder = tempfile.mkdtemp()
>>> for name in ("a.trace", "b.trace"):
...     _ = rngstate.seed_everything(0)
...     with rngstate.trace(os.path.join(folder, name)) as run:
...         _ = run.step(loss=0.5)
>>> compare(os.path.join(folder, "a.trace"), os.path.join(folder, "b.trace")).identical
True
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from rngstate._text import clean
from rngstate.tracing.losses import loss_text
from rngstate.tracing.reader import StepRecord, TraceFile, read_trace

ORDER = ("place", "batch", "streams", "loss", "weights")
_WHERE = {"place": "the step's place (epoch, position, phase)", "batch": "the batch",
          "streams": "the random streams", "loss": "the loss", "weights": "the weights",
          "missing": "the steps recorded"}
_DETERMINISTIC = "try `rngstate.deterministic()` (and run both with it)"


@dataclass(frozen=True)
class Aspect:
    """One aspect of the first differing step: ``same`` is None when a trace did not record it."""

    name: str
    same: bool | None
    detail: str


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`; ``bool(result)`` is True when the traces agree.

    ``step``: the first step where they differ (None when identical); ``differed``: the aspect
    that differed first there (``"missing"``, ``"place"``, ``"batch"``, ``"streams"``,
    ``"loss"`` or ``"weights"``); ``phase``: its accumulation phase (0 without accumulation);
    ``aspects``: every aspect at that step; ``cause``: the likely
    cause and what to do; ``compared``: steps compared (those both traces hold); ``notes``:
    what else to know (a trace that goes on longer, a torn last record, another rank).
    """

    a: str
    b: str
    identical: bool
    compared: int
    first: int | None
    last: int | None
    step: int | None = None
    differed: str | None = None
    aspects: tuple[Aspect, ...] = ()
    cause: str = ""
    notes: tuple[str, ...] = ()
    phase: int = 0

    def __bool__(self) -> bool:
        return self.identical

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return asdict(self)

    def __str__(self) -> str:
        return format_comparison(self)


class _Scopes:
    """A trace's substream fingerprints as of the step being compared (records hold only the
    substreams touched since the previous record)."""

    def __init__(self) -> None:
        self.current: dict[tuple[str, str], bytes] = {}

    def update(self, record: StepRecord) -> None:
        for path, states in record.substreams.items():
            for name, digest in states.items():
                self.current[(path, name)] = digest


def _place(record: StepRecord) -> str:
    fields = (("epoch", record.epoch), ("position", record.position), ("phase", record.phase))
    parts = [f"{key} {value}" for key, value in fields if value is not None]
    return ", ".join(parts) or "no epoch/position recorded"


def _stream_differences(a: StepRecord, b: StepRecord, scopes_a: _Scopes, scopes_b: _Scopes) -> list[str]:
    out = []
    for name in sorted(set(a.streams) | set(b.streams)):
        if a.streams.get(name) != b.streams.get(name):
            both = name in a.streams and name in b.streams
            out.append(clean(name) if both else f"{clean(name)} (one side only)")
    if a.scopes != b.scopes:
        before = len(out)
        keys = set(scopes_a.current) | set(scopes_b.current)
        for path, name in sorted(keys):
            if scopes_a.current.get((path, name)) != scopes_b.current.get((path, name)):
                out.append(f"{clean(name)} in scope {clean(path)!r}")
        if len(out) == before:
            out.append("the scopes (substreams)")
    for key in sorted(set(a.generators) | set(b.generators)):
        if a.generators.get(key) != b.generators.get(key):
            out.append(f"tracked generator {clean(key)!r}")
    return out


def _samples(record: StepRecord) -> list[bytes]:
    data = record.samples or b""
    return [data[i : i + 4] for i in range(0, len(data), 4)]


def _batch_detail(a: StepRecord, b: StepRecord, batches_a: dict[bytes, StepRecord]) -> str:
    sa, sb = _samples(a), _samples(b)
    if sa and sorted(sa) == sorted(sb):
        what = "the same samples in another order"
    elif sa and set(sa) & set(sb):
        what = f"{len(set(sa) & set(sb))} of {len(sa)} samples in common"
    else:
        what = "other samples"
    seen = batches_a.get(b.batch) if b.batch is not None else None
    if seen is not None and seen.step != a.step:
        what += f"; B's batch is A's batch of step {seen.step} ({_place(seen)})"
    return what


def _aspects(a: StepRecord, b: StepRecord, scopes_a: _Scopes, scopes_b: _Scopes,
             batches_a: dict[bytes, StepRecord]) -> list[Aspect]:
    place_a, place_b = (a.epoch, a.position, a.phase), (b.epoch, b.position, b.phase)
    aspects = [Aspect("place", place_a == place_b,
                      _place(a) if place_a == place_b else f"A at {_place(a)}, B at {_place(b)}")]
    if a.batch is None or b.batch is None:
        aspects.append(Aspect("batch", None, "not recorded"))
    else:
        same = a.batch == b.batch
        aspects.append(Aspect("batch", same, "identical" if same else _batch_detail(a, b, batches_a)))
    differing = _stream_differences(a, b, scopes_a, scopes_b)
    count = len(a.streams) + len(scopes_a.current) + len(a.generators)
    detail = f"all {count} identical" if not differing else "differ: " + ", ".join(differing[:8])
    aspects.append(Aspect("streams", not differing, detail))
    if a.loss is None or b.loss is None:
        aspects.append(Aspect("loss", None, "not recorded"))
    else:
        same = a.loss == b.loss
        detail = loss_text(*a.loss) if same else f"A {loss_text(*a.loss)}, B {loss_text(*b.loss)}"
        aspects.append(Aspect("loss", same, detail))
    digests = ((a.weights, b.weights, "weights"), (a.optimizer, b.optimizer, "optimizer"))
    pairs = [(x, y, what) for x, y, what in digests if x is not None and y is not None]
    if not pairs:
        aspects.append(Aspect("weights", None, "not digested at this step"))
    else:
        wrong = [what for x, y, what in pairs if x != y]
        names = " and ".join(what for _, _, what in pairs)
        detail = f"{names} identical" if not wrong else f"{' and '.join(wrong)} differ"
        aspects.append(Aspect("weights", not wrong, detail))
    return aspects


def _cause(first: str, step: int, a: StepRecord, b: StepRecord, aspects: list[Aspect],
           batches_a: dict[bytes, StepRecord], opening: bool) -> str:
    resumed = "B" if b.resumed else "A" if a.resumed else None
    after = f" (the first step after {resumed}'s resume)" if resumed else ""
    if first == "missing":
        return (f"step {step} is in one trace only: the runs took different steps (a resumed run that "
                "skipped or repeated steps: pass trace.step(step=global_step))")
    details = {x.name: x.detail for x in aspects}
    streams = details["streams"].removeprefix("differ: ")
    if first in ("place", "batch"):
        late, early = (b, a) if resumed != "A" else (a, b)
        seen = batches_a.get(b.batch) if b.batch is not None and resumed != "A" else None
        restarted = late.position == 0 and early.position not in (None, 0)
        if seen is not None and seen.position == 0 and seen.step != a.step:
            restarted = True
        replayed = seen is not None and seen.step < a.step and not restarted
        if resumed and replayed:
            assert seen is not None
            return (
                f"the batch of step {step}{after} is A's batch of step {seen.step}: the loader's state was "
                "not loaded — the resumed run went through batches again. Save and load the loader's (or "
                "sampler's) state_dict with the checkpoint (rngstate.torch.DataLoader, "
                "rngstate.ResumableSampler)"
            )
        if resumed and restarted:
            epoch = late.epoch if late.epoch is not None else early.epoch
            return (
                f"batch order differs at position 0 of epoch {epoch}{after}: the loader's state was not "
                f"loaded — the resumed run began the epoch again instead of going on from position "
                f"{early.position}. Save and load the loader's (or sampler's) state_dict with the checkpoint "
                "(rngstate.torch.DataLoader, rngstate.ResumableSampler)"
            )
        detail = details["batch"]
        if first == "place" and next(x.same for x in aspects if x.name == "batch") is not False:
            return (f"the runs place step {step} differently ({details['place']}){after} with the same "
                    "batch: they count epochs or positions differently (a resumed run that began counting "
                    "again, or another number of batches per epoch)")
        if "another order" in detail:
            return (f"the batch holds the same samples in another order at step {step}{after}: the shuffle "
                    "differs — the sampler's generator or seed, or a loader whose state was not restored")
        return (f"the batch differs at step {step}{after} ({detail}): the data or its augmentation "
                "differs — augmentation drawing from a generator rngstate does not track "
                "(rngstate.diagnostics.untracked_generators), a loader whose state was not restored, "
                "or other data")
    if first == "streams":
        if resumed:
            return (
                f"batch identical, {streams} differs at step {step}{after}: something drew between "
                f"restore and the first step — restore the RNG state last, right before the first batch "
                "(after building the model, optimizer and loader), and draw nothing in between"
            )
        if opening:
            return (f"{streams} already differs at the first step compared ({step}): the runs started from "
                    "different random states — another seed, or code that drew before the first step")
        return (f"batch identical, {streams} differs at step {step}: the step drew different random "
                "numbers — code that draws a data-dependent amount, a different library version, or a "
                "generator reseeded by other code")
    if first == "loss":
        if resumed:
            return (f"batch identical, RNG identical, loss differs at step {step}{after}: the model or "
                    "optimizer was not restored exactly (compare the weights digests: "
                    "trace(..., weights_every=1)), "
                    f"or a nondeterministic kernel — {_DETERMINISTIC}")
        return f"batch identical, RNG identical, loss differs: a nondeterministic kernel — {_DETERMINISTIC}"
    if first == "weights":
        return (f"batch, RNG and loss identical, weights differ at step {step}{after}: a nondeterministic "
                "kernel in the backward pass or the optimizer, or optimizer state not restored — "
                f"{_DETERMINISTIC}")
    raise AssertionError(f"no cause for {first!r}")  # ORDER names every aspect


def _key(record: StepRecord) -> tuple[int, int]:
    return record.step, record.phase or 0


def _name(key: tuple[int, int]) -> str:
    return f"step {key[0]}" + (f" (phase {key[1]})" if key[1] else "")


def _notes(ta: TraceFile, tb: TraceFile) -> list[str]:
    notes = []
    for label, trace in (("A", ta), ("B", tb)):
        if trace.torn:
            notes.append(f"{label} ends in an incomplete record (its writer died mid-write); it was skipped")
    ranks_a = {(s.rank, s.world_size) for s in ta.sessions}
    ranks_b = {(s.rank, s.world_size) for s in tb.sessions}
    if ranks_a and ranks_b and ranks_a != ranks_b:
        show = ", ".join(f"rank {r} of {w}" for r, w in sorted(ranks_a))
        other = ", ".join(f"rank {r} of {w}" for r, w in sorted(ranks_b))
        notes.append(f"A was written by {show}, B by {other}: compare the traces of one rank")
    return notes


def compare(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> Comparison:
    """Compare two trace files; see :class:`Comparison`.  Bad input (missing, not a trace,
    corrupt) raises :class:`~rngstate.errors.StateFileError`."""
    ta, tb = read_trace(a), read_trace(b)
    notes = _notes(ta, tb)
    by_a = {_key(r): r for r in ta.steps}
    by_b = {_key(r): r for r in tb.steps}
    if not by_a or not by_b:
        empty = " and ".join(label for label, t in (("A", by_a), ("B", by_b)) if not t)
        notes.append(f"{empty} holds no step record")
        return Comparison(ta.path, tb.path, False, 0, None, None, None, "missing", (),
                          "nothing to compare: record steps with trace.step()", tuple(notes))
    low, high = max(min(by_a), min(by_b)), min(max(by_a), max(by_b))
    scopes_a, scopes_b = _Scopes(), _Scopes()
    batches_a: dict[bytes, StepRecord] = {}
    compared = 0
    for record in ta.steps:
        if record.batch is not None:
            batches_a.setdefault(record.batch, record)
    for record in ta.steps:  # scopes touched before the compared range
        if _key(record) < low:
            scopes_a.update(record)
    for record in tb.steps:
        if _key(record) < low:
            scopes_b.update(record)
    for key in sorted(k for k in set(by_a) | set(by_b) if low <= k <= high):
        ra, rb = by_a.get(key), by_b.get(key)
        step = key[0]
        if ra is None or rb is None:
            detail = f"{_name(key)} is in {'B' if ra is None else 'A'} only"
            cause = _cause("missing", step, ra or rb, rb or ra, [], batches_a, False)  # type: ignore[arg-type]
            return Comparison(ta.path, tb.path, False, compared, low[0], high[0], step, "missing",
                              (Aspect("step", False, detail),), cause, tuple(notes), key[1])
        scopes_a.update(ra)
        scopes_b.update(rb)
        aspects = _aspects(ra, rb, scopes_a, scopes_b, batches_a)
        wrong = [x.name for x in aspects if x.same is False]
        if wrong:
            first = min(wrong, key=ORDER.index)
            cause = _cause(first, step, ra, rb, aspects, batches_a, compared == 0)
            return Comparison(ta.path, tb.path, False, compared, low[0], high[0], step, first,
                              tuple(aspects), cause, tuple(notes), key[1])
        compared += 1
    for label, steps in (("A", by_a), ("B", by_b)):
        if max(steps) > high:
            more = len([k for k in steps if k > high])
            notes.append(f"{label} goes on to {_name(max(steps))} ({more} records more than the other)")
        if min(steps) < low:
            notes.append(f"{label} starts earlier, at {_name(min(steps))}")
    return Comparison(ta.path, tb.path, True, compared, low[0], high[0], notes=tuple(notes))


def format_comparison(result: Comparison) -> str:
    """The report ``rngstate compare`` prints (names from the files are escaped)."""
    a, b = clean(result.a, 400), clean(result.b, 400)
    lines = [f"A: {a}", f"B: {b}"]
    if result.identical:
        lines.append(f"identical: {result.compared} steps compared (steps {result.first}-{result.last})")
    elif result.step is None:
        lines.append("not comparable")
    else:
        before = f"identical for {result.compared} steps, then " if result.compared else ""
        where = _WHERE.get(result.differed or "", result.differed)
        at = _name((result.step, result.phase))
        lines.append(f"{before}first difference at {at}, in {where}")
        width = max((len(x.name) for x in result.aspects), default=0)
        for aspect in result.aspects:
            mark = "!=" if aspect.same is False else "==" if aspect.same else "  "
            lines.append(f"  {aspect.name.ljust(width)}  {mark} {aspect.detail}")
    lines += [f"note: {note}" for note in result.notes]
    if result.cause:
        lines.append(f"likely cause: {result.cause}")
    return "\n".join(lines)
