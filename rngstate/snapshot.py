"""``capture`` and ``restore``: the live generators to an RNGState and back."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from rngstate import _gc, backends, determinism, guard
from rngstate._version import __version__
from rngstate.backends import importhook
from rngstate.backends.base import DeviceMapped
from rngstate.derive import DERIVATION_VERSION
from rngstate.distributed import TopologyError, rank_info
from rngstate.errors import (
    InvalidStateError,
    MissingBackendError,
    RNGStateError,
    ScopeError,
)
from rngstate.errors import (
    RNGStateWarning as RNGStateWarning,  # re-exported: __init__, diagnostics, tensorflow use it
)
from rngstate.runtime import RUNTIME, device_count_problem
from rngstate.state import SCHEMA_VERSION, Decoded, RNGState

logger = logging.getLogger(__name__)


def _encode_streams(snapshots: dict[str, Any]) -> dict[str, Any]:
    return {name: backends.stream(name).encode(snapshot) for name, snapshot in snapshots.items()}


def capture() -> RNGState:
    """Snapshot every active generator, every substream and every tracked generator.

    Inside a scope the result is the state "as if every open scope had exited", so restoring it
    and re-entering the same scopes continues exactly.

    >>> import rngstate, random
    >>> _ = rngstate.seed_everything(1)
    >>> state = rngstate.capture()
    >>> first = random.random()
    >>> rngstate.restore(state)
    >>> random.random() == first
    True
    """
    with _gc.paused():
        return _capture()


def _capture() -> RNGState:
    outer, substreams = RUNTIME.outer_and_substreams()
    streams = _encode_streams({**RUNTIME.pending_streams, **outer})
    generators = {
        key: {"kind": kind_name, "state": backends.kind(kind_name).encode(snapshot)}
        for key, (kind_name, snapshot) in RUNTIME.pending_generators.items()
    }
    for key, tracked in RUNTIME.tracked.items():
        state = tracked.kind.encode(tracked.kind.get_state(tracked.obj))
        generators[key] = {"kind": tracked.kind.kind, "state": state}
    data: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "derivation": DERIVATION_VERSION,
        "streams": streams,
        "substreams": {path: _encode_streams(states) for path, states in substreams.items()},
        "generators": generators,
        "metadata": _metadata(),
    }
    if RUNTIME.root is not None:
        data["root_seed"] = RUNTIME.root
    return RNGState._trusted(data)


def _metadata() -> dict[str, Any]:
    metadata: dict[str, Any] = {"rngstate": __version__}
    for stream in RUNTIME.active.values():
        metadata.update(stream.metadata())
    # Kernel determinism is part of "same seed, same result"; restore compares it (issue 6).
    metadata["determinism"] = determinism.settings()
    mid_epoch = guard.mid_epoch_loaders()
    if mid_epoch:  # restore() warns if such a loader then starts over without load_state_dict
        metadata["mid_epoch_loaders"] = mid_epoch
    topology = rank_info()
    if topology.world_size > 1:  # restore checks that a rank gets its own entry back
        metadata["world_size"] = topology.world_size
        metadata["rank"] = topology.rank
    return metadata


def _plan(
    decoded: Decoded, device_counts: dict[str, int]
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Split decoded streams into (apply now, apply at import) and list what cannot be honoured."""
    now: dict[str, Any] = {}
    later: dict[str, Any] = {}
    problems: list[str] = []
    named = set(decoded.streams).union(*decoded.substreams.values())
    for name in sorted(decoded.unknown):
        problems.append(f"the state holds the stream {name!r}, which no installed backend provides")
    for name in sorted(named - decoded.unknown):
        framework = backends.framework_of(name)
        if not backends.is_installed(framework):
            extra = backends.extra_for(framework)
            problems.append(
                f"the state holds the stream {name!r} but {framework} is not installed; "
                f"install it with: pip install 'rngstate[{extra}]'"
            )
    for name, snapshot in decoded.streams.items():
        if name in RUNTIME.active:
            now[name] = snapshot
        elif name not in decoded.unknown and backends.is_installed(backends.framework_of(name)):
            later[name] = snapshot
    for name in RUNTIME.active:
        if name not in decoded.streams:
            problems.append(
                f"the live stream {name!r} is not in the state (it was captured before "
                f"{backends.framework_of(name)} was in use); strict=False leaves it as it is"
            )
    for key, tracked in RUNTIME.tracked.items():
        if key not in decoded.generators:
            problems.append(f"the tracked generator {key!r} is not in the state")
        elif decoded.generators[key][0] != tracked.kind.kind:
            raise InvalidStateError(
                f"generators.{key}: the state holds a {decoded.generators[key][0]} but the live "
                f"generator is a {tracked.kind.kind}"
            )
    problems.extend(_device_count_problems(decoded, device_counts))
    return now, later, problems


def _device_counts(decoded: Decoded) -> dict[str, int]:
    """Live device counts of the per-device streams the state holds (frameworks imported)."""
    named = set(decoded.streams).union(*decoded.substreams.values()) - decoded.unknown
    counts = {}
    for name in sorted(named):
        count = backends.stream(name).device_count()
        if count is not None:
            counts[name] = count
    return counts


def _device_count_problems(decoded: Decoded, device_counts: dict[str, int]) -> list[str]:
    """Per-device states (CUDA, Paddle GPU) saved for N devices where M != N are visible."""
    states = (decoded.streams, *decoded.substreams.values())
    problems = []
    for name, live in device_counts.items():
        saved = {len(s[name]) for s in states if name in s}
        if saved and saved != {live}:
            problems.append(device_count_problem(name, saved, live))
    return problems


def _live_substreams(decoded: Decoded, per_device: set[str]) -> dict[str, dict[str, Any]]:
    """The runtime's own copy of the decoded substreams (scopes update it in place; the state
    keeps its own), without the unknown streams, per-device states mapped."""
    unknown = decoded.unknown
    if not unknown and not per_device:  # the usual case: plain copies, in C
        return {path: states.copy() for path, states in decoded.substreams.items()}
    return {
        path: _map_devices({n: s for n, s in states.items() if n not in unknown}, per_device)
        for path, states in decoded.substreams.items()
    }


def _map_devices(snapshots: dict[str, Any], per_device: set[str]) -> dict[str, Any]:
    """With strict=False, per-device states may go to another device count (the README's
    mapping); ``per_device`` names the streams that hold one state per device."""
    mapped = {name: DeviceMapped(snapshots[name]) for name in per_device if name in snapshots}
    return {**snapshots, **mapped} if mapped else snapshots


def restore(state: RNGState | dict[str, Any], strict: bool = True) -> None:
    """Make every generator exactly as captured in ``state``; all or nothing.

    ``strict=True`` raises :class:`~rngstate.errors.MissingBackendError` when the state and the live
    program disagree (a framework missing here, a live stream or tracked generator missing from
    the state, CUDA states for another device count); ``strict=False`` warns and restores the
    rest (CUDA device ``i`` takes the state saved for device ``i``).  Streams of frameworks installed but
    not imported yet are applied when they are imported; tracked generators not created yet,
    when they are created.

    >>> import rngstate
    >>> _ = rngstate.seed_everything(3)
    >>> rngstate.restore(rngstate.capture())
    """
    if isinstance(state, dict):
        guard.refuse_loader_state(state)
        state = RNGState.from_dict(state)
    if not isinstance(state, RNGState):
        raise InvalidStateError(
            f"restore() takes an RNGState or a dict from RNGState.to_dict(), got {type(state).__name__}"
        )
    if RUNTIME.frames:
        raise ScopeError("restore() cannot be called inside an rng_scope; restore before entering scopes")
    RUNTIME.refresh()
    decoded = state._snapshots()
    device_counts = _device_counts(decoded)
    now, later, problems = _plan(decoded, device_counts)
    if problems and strict:
        raise MissingBackendError("cannot restore exactly: " + "; ".join(problems))
    for problem in problems:
        warnings.warn(f"rngstate.restore: {problem}", RNGStateWarning, stacklevel=2)
    _check_topology(state.metadata, strict)
    _check_devices(state.metadata)
    _check_determinism(state.metadata)
    per_device = set() if strict else set(device_counts)
    now, later = _map_devices(now, per_device), _map_devices(later, per_device)
    with _gc.paused():  # 10,000 substreams: collections would rescan what came before
        substreams = _live_substreams(decoded, per_device)
    try:
        RUNTIME.install(decoded.root_seed, now, later, substreams, decoded.generators)
    except RNGStateError:
        raise
    except Exception as exc:  # a framework refusing a state it was validated for
        raise InvalidStateError(f"restore failed and was rolled back: {exc}") from exc
    if RUNTIME.root is not None:
        importhook.install(backends.watched_frameworks(), RUNTIME.on_framework_import)
    guard.expect_loads(state.metadata)
    logger.debug("restored state with %d streams, %d substreams", len(now), len(decoded.substreams))


def _check_topology(metadata: dict[str, Any], strict: bool) -> None:
    saved = (metadata.get("world_size", 1), metadata.get("rank", 0))
    live = rank_info()
    if saved == (live.world_size, live.rank):
        return
    message = (
        f"the state was captured on rank {saved[1]} of {saved[0]} and is restored on rank "
        f"{live.rank} of {live.world_size}; per-rank streams would not continue. Use "
        "rngstate.load(path, reshard=True) to re-derive per-rank substreams for this world size"
    )
    if strict:
        raise TopologyError(message)
    warnings.warn(f"rngstate.restore: {message}", RNGStateWarning, stacklevel=3)


def _gpu_models(devices: Any) -> list[str]:
    """The distinct models in a ``cuda_devices`` list (none for junk from a foreign state)."""
    return sorted({name for name in devices if isinstance(name, str)}) if isinstance(devices, list) else []


_DEVICE_NAMES = {"cuda_devices": "CUDA", "paddle_gpu_devices": "Paddle GPU"}  # metadata keys


def _check_devices(metadata: dict[str, Any]) -> None:
    # Models, not lists: another device count is _device_count_problems' business.
    live_metadata = _metadata()
    for key, what in _DEVICE_NAMES.items():
        saved = _gpu_models(metadata.get(key))
        live = _gpu_models(live_metadata.get(key))
        if saved and live and saved != live:
            warnings.warn(
                f"rngstate.restore: the state was captured on {', '.join(saved)} and is restored "
                f"on {', '.join(live)}; {what} random streams reproduce exactly only on the same "
                "GPU model",
                RNGStateWarning,
                stacklevel=3,
            )


def _check_determinism(metadata: dict[str, Any]) -> None:
    differences = determinism.differences(metadata.get("determinism"))
    if differences:
        warnings.warn(
            "rngstate.restore: determinism settings differ from the captured run: "
            + "; ".join(differences)
            + " (call rngstate.deterministic(...) before restoring to match)",
            RNGStateWarning,
            stacklevel=3,
        )
