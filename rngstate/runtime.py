"""The process-wide bookkeeping: root seed, active streams, open scopes, substreams, tracked
generators and restored states waiting for their framework to be imported.

Everything else (``seed_everything``, ``rng_scope``, ``capture``/``restore``) is a thin layer
over :data:`RUNTIME`; only this module writes its fields (the others read them and call its
verbs: ``seed_all``, ``enter``/``exit``, ``install``, ``track``/``adopt``/``forget``, ``reset``).
The backends reach it only as the :class:`rngstate.backends.Listener` it registers.
"""

from __future__ import annotations

import logging
import os
import random  # before our fork handler is registered: CPython's reseed must run before ours
import sys
import threading
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from rngstate import backends
from rngstate.backends.base import DeviceMapped, GeneratorKind, Stream
from rngstate.derive import MAX_PATH_DEPTH, derive_bytes
from rngstate.errors import NoRootSeedError, RNGStateWarning, ScopeError

logger = logging.getLogger(__name__)
_get_ident = threading.get_ident
_NOTHING: dict[str, Any] = {}  # substreams of a path never entered (never written to)


def device_count_problem(name: str, saved: set[int], live: int) -> str:
    """The message for per-device states (CUDA, Paddle GPU) saved for other device counts."""
    return (
        f"the state holds {name} generator states for {' and '.join(map(str, sorted(saved)))} "
        f"device(s) but this process sees {live}; with strict=False, device i gets the "
        "state saved for device i and devices without a saved state keep theirs"
    )


def _too_deep(parts: tuple[str, ...]) -> str:
    return (
        f"scopes nested {len(parts)} deep ({'/'.join(parts[:3])}/...): at most {MAX_PATH_DEPTH} "
        "path components, the most a saved state may hold; a recursive @rng_scope needs a "
        "depth limit, or one scope around the recursion"
    )


class Frame:
    """One open scope: its path and the outer snapshots it will put back on exit."""

    __slots__ = ("parts", "path", "saved")

    def __init__(self, parts: tuple[str, ...], path: str) -> None:
        self.parts = parts
        self.path = path  # "/".join(parts)
        self.saved: dict[str, Any] = {}


@dataclass
class Tracked:
    """A user-owned generator registered under a scope path."""

    kind: GeneratorKind
    obj: Any


class Runtime:
    """Process-wide state; use the module-level :data:`RUNTIME`."""

    def __init__(self) -> None:
        self._candidates = backends.stream_names()
        self.reset()

    def reset(self) -> None:
        """Forget everything, as in a new process: root seed, active streams, open scopes,
        substreams, tracked generators, pending states.  The live generators are left alone.

        >>> from rngstate.runtime import Runtime
        >>> runtime = Runtime(); runtime.reset(); runtime.root is None
        True
        """
        self.root: int | None = None
        self.active: dict[str, Stream] = {}
        self.frames: list[Frame] = []
        self.owner: int | None = None
        self.substreams: dict[str, dict[str, Any]] = {}
        self.tracked: dict[str, Tracked] = {}
        self.pending_streams: dict[str, Any] = {}
        self.pending_generators: dict[str, tuple[str, Any]] = {}
        self._lock = threading.RLock()  # reentrant: a signal handler may enter a scope while held
        self._modules_seen = -1  # len(sys.modules) at the last full refresh
        self._python_at_fork: Any = None  # random.getstate() taken just before os.fork

    # -- roots and streams -------------------------------------------------------------------

    def require_root(self) -> int:
        """Return the root seed or raise NoRootSeedError."""
        if self.root is None:
            raise NoRootSeedError(
                "no root seed is set: call rngstate.seed_everything(seed) first "
                "(or restore a captured state)"
            )
        return self.root

    def refresh(self) -> None:
        """Activate every stream whose framework has been imported since the last look.

        Only imports activate streams (CUDA's initialization reports itself through
        ``torch.cuda._lazy_call``), so an unchanged ``len(sys.modules)`` means nothing to do.
        """
        if len(sys.modules) == self._modules_seen:
            return
        self._modules_seen = len(sys.modules)
        for name in self._candidates:
            if name not in self.active and backends.stream(name).is_active():
                self.activate(name)

    def activate(self, name: str, *, started: bool = False) -> None:
        """Bring a stream under management: restore its pending state or seed it, then give it
        a substream in every open scope, as if it had been active all along.

        ``started``: the backend says the stream is usable now, even if ``is_active()`` does
        not say so yet (CUDA announces itself from inside torch's lazy initialization).
        """
        if name in self.active:
            return
        stream = backends.stream(name)
        if not started and not stream.is_active():
            return
        stream.on_activate()
        self._fit_devices(stream)
        pending = self.pending_streams.pop(name, None)
        try:
            if pending is not None:
                stream.set_state(pending)
            elif self.root is not None:
                stream.seed(self.root)
            for frame in self.frames:
                frame.saved[name] = stream.get_state()
                self._enter_substream(stream, frame)
        except BaseException:
            for frame in self.frames:
                frame.saved.pop(name, None)
            if pending is not None:
                self.pending_streams[name] = pending
            raise
        self.active[name] = stream
        logger.debug("stream %s activated", name)

    def _fit_devices(self, stream: Stream) -> None:
        """Per-device states restored before their framework was imported meet the live device
        count only now: they follow restore(strict=False)'s mapping, with its warning (nothing
        may raise here: this runs inside an import or inside CUDA's start-up)."""
        live = stream.device_count()
        if live is None:
            return
        name = stream.name
        holders = [  # DeviceMapped ones went through restore's rules already
            holder
            for holder in (self.pending_streams, *self.substreams.values())
            if name in holder and not isinstance(holder[name], DeviceMapped)
        ]
        saved = {len(holder[name]) for holder in holders}
        if not saved or saved == {live}:
            return
        for holder in holders:
            holder[name] = DeviceMapped(holder[name])
        warnings.warn(
            f"rngstate: {device_count_problem(name, saved, live)} (restore() ran before "
            f"{stream.framework} was imported, so it could not check the device count; the "
            "mapping applies whatever `strict` was)",
            RNGStateWarning,
            stacklevel=2,
        )

    # -- what the backends tell the runtime (rngstate.backends.Listener) ---------------------

    def stream_registered(self, name: str) -> None:
        """A stream was registered: look again at the next refresh even if no module was
        imported."""
        self._modules_seen = -1

    def stream_started(self, name: str) -> None:
        """A stream started outside an import (CUDA): activate it now."""
        self.activate(name, started=True)

    def on_framework_import(self, framework: str) -> None:
        """Import-hook callback: activate the framework's streams."""
        for name in self._candidates:
            if backends.framework_of(name) == framework:
                self.activate(name)
        for key in list(self.pending_generators):
            tracked = self.tracked.get(key)
            if tracked is not None:
                self._apply_pending(key, tracked.kind, tracked.obj)

    def seed_all(self, root: int) -> None:
        """Make ``root`` the root seed, seed every active stream and reset substreams."""
        if self.frames:
            raise ScopeError("seed_everything() cannot be called inside an rng_scope; call it first")
        self.refresh()
        self.root = root
        self.substreams.clear()
        self.pending_streams.clear()
        self.pending_generators.clear()
        for stream in self.active.values():
            stream.seed(root)
        for key, tracked in self.tracked.items():
            tracked.kind.seed_derived(tracked.obj, self._generator_material(key, tracked.kind))

    # -- scopes ------------------------------------------------------------------------------

    def enter(self, parts: tuple[str, ...], path: str) -> Frame:
        """Open a scope named by ``parts`` and ``path`` (``"/".join(parts)``), relative to the
        innermost open scope.

        This is the hot path (thousands of calls per training step): keep it flat.
        """
        root = self.root
        if root is None:
            root = self.require_root()
        frames = self.frames
        if frames and self.owner == _get_ident():
            parts = frames[-1].parts + parts
            if len(parts) > MAX_PATH_DEPTH:  # the limit restore() and load() enforce
                raise ScopeError(_too_deep(parts))
            frame = Frame(parts, f"{frames[-1].path}/{path}")
            frames.append(frame)
        else:
            if len(parts) > MAX_PATH_DEPTH:  # a name of 64 components plus per_rank's
                raise ScopeError(_too_deep(parts))
            lock = self._lock
            lock.acquire()  # not `with`: its two method calls cost as much as the rest here
            try:
                if frames:
                    raise ScopeError(
                        "another thread is inside an rng_scope; scopes swap process-wide "
                        "generators, so only one thread may use them at a time "
                        "(give each thread its own tracked generator instead)"
                    )
                self.owner = _get_ident()
                frame = Frame(parts, path)
                frames.append(frame)
            finally:
                lock.release()
        saved = frame.saved
        try:
            if len(sys.modules) != self._modules_seen:
                self.refresh()
            known = self.substreams.get(frame.path, _NOTHING)
            for name, stream in self.active.items():
                snapshot = known.get(name)  # snapshots are never None
                if snapshot is not None:
                    saved[name] = stream.exchange_outer(snapshot)
                else:
                    saved[name] = stream.get_state()
                    stream.seed_derived(derive_bytes(root, frame.parts, name))
        except BaseException:
            self._put_back(frame)
            raise
        return frame

    def exit(self, frame: Frame) -> None:
        """Close ``frame``: keep the substream's state and put the outer state back."""
        frames = self.frames
        if not frames or frames[-1] is not frame:
            raise ScopeError("rng_scope exited out of order; use scopes as nested `with` blocks")
        if len(sys.modules) != self._modules_seen:
            self.refresh()
        kept = self.substreams.get(frame.path)
        if kept is None:
            kept = self.substreams[frame.path] = {}
        saved = frame.saved
        try:
            for name, stream in self.active.items():
                snapshot = saved.get(name)
                kept[name] = stream.get_state() if snapshot is None else stream.exchange(snapshot)
            saved.clear()  # only now: after an error, all of them go back (again, for some)
        finally:
            if saved:
                self._put_back(frame)
            elif len(frames) > 1:  # _pop() inlined for nested scopes
                frames.pop()
            else:
                self._pop()

    def _put_back(self, frame: Frame) -> None:
        """Install what ``frame`` still holds of the outer state and pop it."""
        try:
            if frame.saved:
                active = self.active
                for name, snapshot in frame.saved.items():
                    active[name].set_state(snapshot)
        finally:
            self._pop()

    def _pop(self) -> None:
        frames = self.frames
        if len(frames) > 1:
            frames.pop()
        else:
            # Ownership goes first, then the frame: a thread entering in between still finds
            # this scope open (and is refused, as a moment earlier); once the list is empty,
            # nothing here writes ``owner`` again, so a thread entering then keeps its scope.
            # No lock needed: each step is one atomic store.
            self.owner = None
            frames.pop()

    def _enter_substream(self, stream: Stream, frame: Frame) -> None:
        known = self.substreams.get(frame.path)
        if known is not None and stream.name in known:
            stream.set_state(known[stream.name])
        else:
            stream.seed_derived(derive_bytes(self.require_root(), frame.parts, stream.name))

    def current_parts(self) -> tuple[str, ...]:
        """Path components of the innermost open scope (empty outside scopes)."""
        return self.frames[-1].parts if self.frames else ()

    # -- tracked generators ------------------------------------------------------------------

    def _generator_material(self, key: str, kind: GeneratorKind) -> bytes:
        return derive_bytes(self.require_root(), tuple(key.split("/")), kind.kind)

    def _apply_pending(self, key: str, kind: GeneratorKind, obj: Any) -> bool:
        """Give ``obj`` the state restored for ``key`` before it existed, if there is one of
        its kind; True when there was."""
        pending = self.pending_generators.get(key)
        if pending is None or pending[0] != kind.kind:
            return False
        kind.set_state(obj, pending[1])
        del self.pending_generators[key]
        return True

    def track(self, key: str, kind: GeneratorKind, obj: Any) -> Any:
        """Register ``obj`` under ``key``; restore its pending state or seed it from the path."""
        if not self._apply_pending(key, kind, obj):
            kind.seed_derived(obj, self._generator_material(key, kind))
        self.tracked[key] = Tracked(kind, obj)
        return obj

    def adopt(self, key: str, kind: GeneratorKind, obj: Any) -> Any:
        """Register ``obj`` without seeding it (its library already did, e.g. a Keras
        SeedGenerator): restore its pending state if there is one.  Needs no root seed."""
        self._apply_pending(key, kind, obj)
        self.tracked[key] = Tracked(kind, obj)
        return obj

    def forget(self, key: str, obj: Any) -> None:
        """Stop tracking ``key`` if it still tracks ``obj`` (e.g. a collected Keras model's
        generator; a newer object under the same key stays)."""
        tracked = self.tracked.get(key)
        if tracked is not None and tracked.obj is obj:
            del self.tracked[key]

    # -- restoring ---------------------------------------------------------------------------

    def install(
        self,
        root: int | None,
        now: dict[str, Any],
        later: dict[str, Any],
        substreams: dict[str, dict[str, Any]],
        generators: dict[str, tuple[str, Any]],
    ) -> None:
        """Make a decoded state live, all or nothing.

        ``now``: snapshots of active streams, applied at once; ``later``: of streams whose
        framework is not imported yet, applied at activation; ``substreams``: path -> stream
        -> snapshot; ``generators``: key -> (kind, snapshot), applied to tracked generators and
        kept for the others until they are tracked.  Whatever fails, everything is put back
        as it was and the error is re-raised.
        """
        if self.frames:
            raise ScopeError("restore() cannot be called inside an rng_scope; restore before entering scopes")
        put_back = self._backup()
        try:
            self.root = root
            for name, snapshot in now.items():
                self.active[name].set_state(snapshot)
            self.pending_streams = dict(later)
            self.substreams = substreams
            self.pending_generators = {}
            for key, (kind_name, snapshot) in generators.items():
                tracked = self.tracked.get(key)
                if tracked is not None:
                    tracked.kind.set_state(tracked.obj, snapshot)
                else:
                    self.pending_generators[key] = (kind_name, snapshot)
        except BaseException:
            put_back()
            raise

    def _backup(self) -> Callable[[], None]:
        """Everything install() may change; the returned callable puts it back."""
        root, substreams = self.root, self.substreams
        pending_streams, pending_generators = self.pending_streams, self.pending_generators
        streams = {name: stream.get_state() for name, stream in self.active.items()}
        generators = {key: (t, t.kind.get_state(t.obj)) for key, t in self.tracked.items()}

        def put_back() -> None:
            self.root, self.substreams = root, substreams
            self.pending_streams, self.pending_generators = pending_streams, pending_generators
            for name, snapshot in streams.items():
                self.active[name].set_state(snapshot)
            for tracked, snapshot in generators.values():
                tracked.kind.set_state(tracked.obj, snapshot)

        return put_back

    def seed_streams(self, seed: int, *, skip: Collection[str] = ()) -> None:
        """Seed every stream in use with ``seed`` the way its framework's own seed call does,
        except those of the frameworks in ``skip``; the root seed, substreams and tracked
        generators stay as they are (pytest-randomly's per-test reseeding).  Activates
        nothing: frameworks not imported stay unimported."""
        for name in self._candidates:
            stream = backends.stream(name) if backends.framework_of(name) in sys.modules else None
            if stream is not None and stream.framework not in skip and stream.is_active():
                stream.seed(seed)

    # -- snapshots ---------------------------------------------------------------------------

    def outer_and_substreams(self) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """Snapshots as if every open scope had exited: (root streams, substreams by path)."""
        self.refresh()
        live = {name: stream.get_state() for name, stream in self.active.items()}
        substreams = {path: dict(states) for path, states in self.substreams.items()}
        if not self.frames:
            return live, substreams
        for inner, outer in zip(self.frames[1:], self.frames[:-1], strict=True):
            substreams.setdefault(outer.path, {}).update(inner.saved)
        substreams.setdefault(self.frames[-1].path, {}).update(live)
        return dict(self.frames[0].saved), substreams

    def before_fork(self) -> None:
        """Remember Python's global ``random`` state: CPython reseeds it in a forked child."""
        self._python_at_fork = random.getstate() if self.root is not None else None

    def reset_after_fork(self) -> None:
        """In a forked child only the forking thread survives.

        Once rngstate manages the streams (a root seed is set), Python's ``random`` continues
        in the child where the parent was, like NumPy and torch (CPython's own reseed is
        undone; DataLoader workers and ``worker_init_fn`` still seed each worker).  Scopes the
        forking thread had open stay open (a DataLoader worker forked inside a scope draws from
        that substream).  Scopes another thread had open are closed as that thread would have
        closed them: the substreams keep their advance and the child starts from the outer state.
        """
        self._lock = threading.RLock()  # reentrant: a signal handler may enter a scope while held
        for name in [name for name, stream in self.active.items() if not stream.is_active()]:
            # CUDA in a child forked after it started: any use there fails
            # ("CUDA error: initialization error"), so the child manages it no more.
            del self.active[name]
            for frame in self.frames:
                frame.saved.pop(name, None)
        python_state, self._python_at_fork = self._python_at_fork, None
        if python_state is not None:
            random.setstate(python_state)
        if not self.frames or self.owner == threading.get_ident():
            return
        try:
            while self.frames:
                self.exit(self.frames[-1])
        except Exception:  # never fail a fork; the child is left outside every scope
            logger.warning("rngstate: could not close another thread's scopes after fork", exc_info=True)
            self.frames.clear()
            self.owner = None

    # -- DataLoader workers (rngstate.data) --------------------------------------------------

    def rebase(
        self, root: int | None, substreams: dict[str, dict[str, Any]] | None = None
    ) -> tuple[int | None, dict[str, dict[str, Any]]]:
        """Derive scopes from ``root`` from now on, starting from ``substreams`` (default: none,
        so every scope derives afresh); returns the previous pair, to put back.

        A DataLoader worker inherits its parent's substreams, so a scope in ``__getitem__``
        would draw the same numbers in every worker and every epoch: ``worker_init_fn``
        rebases each worker on a root derived from the worker's own seed, and the rngstate
        loaders rebase each sample on a root derived from its position.
        """
        previous = (self.root, self.substreams)
        self.root = root
        self.substreams = {} if substreams is None else substreams
        return previous

    def rebase_sample(self, root: int) -> None:
        """:meth:`rebase` for the next sample of a batch, whose scopes start afresh: a new
        substreams dict only if the last sample's scopes filled the one it had (per sample)."""
        self.root = root
        if self.substreams:
            self.substreams = {}


RUNTIME = Runtime()
backends.listen(RUNTIME)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=RUNTIME.before_fork, after_in_child=RUNTIME.reset_after_fork)
