"""The resume guard: what the next training step must look like, recorded with a checkpoint and
checked when training continues.

Every trainer integration writes a :class:`NextStep` next to its checkpoint (epoch, batches of
the epoch already taken, global step, accumulation steps and phase, RNG fingerprint) and, at the
first resumed step, compares what the trainer and the loader actually do with it: they agree, or
:class:`ResumeMismatchError` names the counter that disagrees.  A hand-written loop gets
:class:`ResumeWarning` from the loader instead (see ``docs/exact-resume.md``); silence it on
purpose with ``warnings.filterwarnings("ignore", category=rngstate.guard.ResumeWarning)``.

>>> expected = NextStep(epoch=1, batches=4, global_step=9, accumulation=2, phase=0, fingerprint="ab12")
>>> NextStep.from_dict(expected.to_dict()) == expected
True
>>> check(expected, "demo", epoch=1, batches=6)  # doctest: +ELLIPSIS
Traceback (most recent call last):
rngstate.guard.ResumeMismatchError: demo: ... batches of the epoch already taken is 6, ...
"""

from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from rngstate import _check
from rngstate.errors import InvalidStateError, RNGStateError, RNGStateWarning
from rngstate.runtime import RUNTIME

logger = logging.getLogger(__name__)

FORMAT = "rngstate.next_step"
VERSION = 1

# What each counter is called in messages (the order is the order of the checks).
COUNTERS = {
    "global_step": "global step",
    "epoch": "epoch",
    "batches": "batches of the epoch already taken",
    "accumulation": "gradient accumulation steps",
    "phase": "accumulation phase (micro-batches since the last optimizer step)",
    "fingerprint": "RNG fingerprint",
}


class ResumeMismatchError(RNGStateError):
    """A resumed run is not where its checkpoint said the next step would be (another
    accumulation setting, a trainer counting the epoch from another batch, a checkpoint written
    mid-accumulation, a random state that did not come back)."""


class ResumeWarning(RNGStateWarning):
    """A hand-written loop looks resumed without the random state or the loader position it was
    saved with.  Silence it on purpose with
    ``warnings.filterwarnings("ignore", category=rngstate.guard.ResumeWarning)``."""


@dataclass(frozen=True)
class NextStep:
    """What the step after a checkpoint must look like.

    ``batches``: batches of ``epoch`` taken before that step; ``phase``: micro-batches since
    the last optimizer step (0 for a checkpoint written right after one).
    """

    epoch: int
    batches: int
    global_step: int
    accumulation: int
    phase: int
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the checkpoint."""
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Any, where: str = "NextStep") -> NextStep:
        """Validate a :meth:`to_dict`; raises :class:`~rngstate.errors.InvalidStateError`."""
        keys = ("format", "version", *(field.name for field in fields(cls)))
        _check.mapping(data, where, keys)
        _check.text(data["format"], f"{where}: format", (FORMAT,))
        _check.integer(data["version"], f"{where}: version", 1, VERSION)
        return cls(
            epoch=_check.integer(data["epoch"], f"{where}: epoch", 0, 2**63),
            batches=_check.integer(data["batches"], f"{where}: batches", 0, 2**63),
            global_step=_check.integer(data["global_step"], f"{where}: global_step", 0, 2**63),
            accumulation=_check.integer(data["accumulation"], f"{where}: accumulation", 1, 2**31),
            phase=_check.integer(data["phase"], f"{where}: phase", 0, 2**31),
            fingerprint=_check.text(data["fingerprint"], f"{where}: fingerprint"),
        )


def check(expected: NextStep, where: str, **actual: Any) -> None:
    """Compare the counters a resumed run reports (``None``: not known here) with ``expected``;
    raise :class:`ResumeMismatchError` naming the first that disagrees."""
    for name, label in COUNTERS.items():
        value = actual.pop(name, None)
        wanted = getattr(expected, name)
        if value is not None and value != wanted:
            hint = _HINTS.get(name, _HINTS["batches"])
            raise ResumeMismatchError(
                f"{where}: the resumed run is not on the uninterrupted run's path: {label} is "
                f"{value}, the checkpoint says the next step starts at {wanted} ({expected}). {hint}"
            )
    if actual:
        raise TypeError(f"check() got unknown counters {sorted(actual)}")


_HINTS = {
    "global_step": "Resume from the checkpoint folder that holds this record, unchanged.",
    "epoch": "Resume with the dataset, batch size, drop_last and accumulation settings of the saved run.",
    "batches": (
        "Resume with the same dataset, batch size, drop_last and gradient accumulation settings, "
        "and let the rngstate loader continue at its saved position (do not skip batches yourself)."
    ),
    "accumulation": "Resume with the gradient accumulation steps of the saved run.",
    "phase": (
        "The checkpoint was written between two optimizer steps: the gradients accumulated so far "
        "are not in it. Save only right after an optimizer step."
    ),
    "fingerprint": (
        "The random state did not come back as saved: is another callback restoring or drawing "
        "random numbers between the restore and the first step?"
    ),
}


# -- the loader's guard in a hand-written loop --------------------------------------------------

RNG_KEY = "rng"  # the loader state_dict's record of the random state it was saved with
SILENCE = (
    "If this is on purpose, silence it: "
    'warnings.filterwarnings("ignore", category=rngstate.guard.ResumeWarning)'
)

_LOADERS: weakref.WeakSet[Any] = weakref.WeakSet()  # live rngstate loaders, for capture()
_EXPECTED: dict[str, Any] = {"token": None, "loaders": {}}  # set by restore()


def rng_record(fingerprint: str) -> dict[str, Any]:
    """What a loader's ``state_dict`` records about the live random state (``fingerprint``:
    ``rngstate.fingerprint()`` now, passed in because fingerprints capture through snapshot,
    which imports this module)."""
    from rngstate.distributed import rank_info

    live = rank_info()
    return {"fingerprint": fingerprint, "rank": live.rank, "world_size": live.world_size}


def split_record(state: Any, where: str) -> tuple[Any, dict[str, Any] | None]:
    """(the loader state without its RNG record, the record or None)."""
    if not isinstance(state, dict) or RNG_KEY not in state:
        return state, None
    record = state[RNG_KEY]
    _check.mapping(record, f"{where}: {RNG_KEY}", ("fingerprint", "rank", "world_size"))
    _check.text(record["fingerprint"], f"{where}: {RNG_KEY}.fingerprint")
    return {key: value for key, value in state.items() if key != RNG_KEY}, record


def check_rng(record: dict[str, Any], where: str, fingerprint: Callable[[], str]) -> None:
    """At the first batch after ``load_state_dict``: warn unless the live random state
    (``fingerprint()``) is the one the loader's state was saved with (checked on the rank that
    saved it)."""
    from rngstate.distributed import rank_info

    live = rank_info()
    if (live.rank, live.world_size) != (record["rank"], record["world_size"]):
        return
    now = fingerprint()
    if now != record["fingerprint"]:
        warnings.warn(
            f"{where}: this loader continues from a saved position, but the random generators "
            f"are not in the state they were in when it was saved (fingerprint {now}, saved "
            f"{record['fingerprint']}): the run will not repeat the uninterrupted one. Call "
            "rngstate.restore(state) with the state captured alongside the loader's state_dict, "
            "after the model and optimizer are built and before iterating. " + SILENCE,
            ResumeWarning,
            stacklevel=4,
        )


def register(loader: Any) -> None:
    """Make ``capture()`` see ``loader`` (weakly)."""
    _LOADERS.add(loader)


def mid_epoch_loaders() -> dict[str, list[int]]:
    """``{path: [epoch, batches]}`` of the live loaders whose next batch is inside an epoch
    (batches of it already taken), for ``capture()``."""
    found = {}
    for loader in list(_LOADERS):
        try:
            epoch, batches = loader._rng_next_step()
        except (RNGStateError, TypeError):  # no length to place it by: no record, capture goes on
            continue
        if batches > 0:
            found[loader._rng_path] = [epoch, batches]
    return dict(sorted(found.items()))


def expect_loads(metadata: dict[str, Any]) -> None:
    """``restore()``: remember the loaders the restored state was captured in the middle of."""
    saved = metadata.get("mid_epoch_loaders")
    loaders = dict(saved) if isinstance(saved, dict) else {}
    # Tied to the runtime the state went into: seed_everything or a reset starts a new run.
    _EXPECTED.update(token=RUNTIME.substreams, loaders=loaders)


def loaded(path: str) -> None:
    """``load_state_dict`` was called: nothing to warn about for ``path``."""
    _EXPECTED["loaders"].pop(path, None)


def check_first_pass(path: str, epoch: int, batches: int) -> None:
    """A loader's first pass without ``load_state_dict``: warn if the state restored last was
    captured while this loader was in the middle of an epoch."""
    if _EXPECTED["token"] is not RUNTIME.substreams:
        return
    saved = _EXPECTED["loaders"].pop(path, None)
    if saved is None or [epoch, batches] == saved:
        return
    warnings.warn(
        f"{path}: the random state restored last was captured while this loader had taken "
        f"{saved[1]} batches of epoch {saved[0]}, but it starts epoch {epoch} after {batches}: the "
        "resumed run will not repeat the uninterrupted one. Save loader.state_dict() with the "
        "state and call loader.load_state_dict(saved) before iterating. " + SILENCE,
        ResumeWarning,
        stacklevel=4,
    )


def refuse_loader_state(state: dict[str, Any]) -> None:
    """``restore()`` got a dict: explain it when it is a loader's or sampler's state_dict."""
    kind = state.get("format")
    looks_like = {"epoch", "position", "path"} <= set(state)
    if kind in ("rngstate.sampler", "rngstate.loader.iterable") or looks_like:
        raise InvalidStateError(
            f"restore() got the state_dict of the loader or sampler {state.get('path')!r} "
            f"(epoch {state.get('epoch')}, position {state.get('position', state.get('batches'))}), "
            "not a random state: pass it to that loader's load_state_dict(...); rngstate.restore "
            "takes what rngstate.capture() or rngstate.load(path) returned"
        )
    if kind == FORMAT:
        raise InvalidStateError(
            "restore() got a resume guard record (rngstate.guard.NextStep), not a random state; "
            "rngstate.restore takes what rngstate.capture() or rngstate.load(path) returned"
        )


__all__ = ["NextStep", "ResumeMismatchError", "ResumeWarning", "check"]
