"""The process-wide bookkeeping: root seed, active streams, open scopes, substreams, tracked
generators and restored states waiting for their framework to be imported.

Everything else (``seed_everything``, ``rng_scope``, ``capture``/``restore``) is a thin layer
over :data:`RUNTIME`.
"""

from __future__ import annotations

import logging
import os
import random  # before our fork handler is registered: CPython's reseed must run before ours
import sys
import threading
from dataclasses import dataclass
from typing import Any

from rngstate import backends
from rngstate.backends.base import GeneratorKind, Stream
from rngstate.derive import derive_bytes
from rngstate.errors import NoRootSeedError, ScopeError

logger = logging.getLogger(__name__)


class Frame:
    """One open scope: its path and the outer snapshots it will put back on exit."""

    __slots__ = ("parts", "path", "saved")

    def __init__(self, parts: tuple[str, ...]) -> None:
        self.parts = parts
        self.path = "/".join(parts)
        self.saved: dict[str, Any] = {}


@dataclass
class Tracked:
    """A user-owned generator registered under a scope path."""

    kind: GeneratorKind
    obj: Any


class Runtime:
    """Process-wide state; use the module-level :data:`RUNTIME`."""

    def __init__(self) -> None:
        self.root: int | None = None
        self.active: dict[str, Stream] = {}
        self.frames: list[Frame] = []
        self.owner: int | None = None
        self.substreams: dict[str, dict[str, Any]] = {}
        self.tracked: dict[str, Tracked] = {}
        self.pending_streams: dict[str, Any] = {}
        self.pending_generators: dict[str, tuple[str, Any]] = {}
        self._lock = threading.Lock()
        self._candidates = backends.stream_names()
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

    def activate(self, name: str) -> None:
        """Bring a stream under management: restore its pending state or seed it, then give it
        a substream in every open scope, as if it had been active all along."""
        if name in self.active:
            return
        stream = backends.stream(name)
        if not stream.is_active():
            return
        stream.on_activate()
        self.active[name] = stream
        if name in self.pending_streams:
            stream.set_state(self.pending_streams.pop(name))
        elif self.root is not None:
            stream.seed(self.root)
        else:
            return
        for frame in self.frames:
            frame.saved[name] = stream.get_state()
            self._enter_substream(stream, frame)
        logger.debug("stream %s activated", name)

    def on_framework_import(self, framework: str) -> None:
        """Import-hook callback: activate the framework's streams."""
        for name in self._candidates:
            if backends.framework_of(name) == framework:
                self.activate(name)
        for key, (kind_name, snapshot) in list(self.pending_generators.items()):
            if key in self.tracked and self.tracked[key].kind.kind == kind_name:
                self.tracked[key].kind.set_state(self.tracked[key].obj, snapshot)
                del self.pending_generators[key]

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

    def enter(self, parts: tuple[str, ...]) -> Frame:
        """Open a scope named by ``parts`` (relative to the innermost open scope).

        This is the hot path (thousands of calls per training step): keep it flat.
        """
        root = self.root if self.root is not None else self.require_root()
        frames = self.frames
        thread = threading.get_ident()
        if frames and self.owner == thread:
            frame = Frame(frames[-1].parts + parts)
            frames.append(frame)
        else:
            with self._lock:
                if self.frames:
                    raise ScopeError(
                        "another thread is inside an rng_scope; scopes swap process-wide "
                        "generators, so only one thread may use them at a time "
                        "(give each thread its own tracked generator instead)"
                    )
                self.owner = thread
                frame = Frame(parts)
                frames.append(frame)
        try:
            if len(sys.modules) != self._modules_seen:
                self.refresh()
            saved = frame.saved
            known = self.substreams.get(frame.path)
            for name, stream in self.active.items():
                if known is not None and name in known:
                    saved[name] = stream.exchange(known[name])
                else:
                    saved[name] = stream.get_state()
                    stream.seed_derived(derive_bytes(root, frame.parts, name))
        except BaseException:
            self._put_back(frame)
            raise
        return frame

    def exit(self, frame: Frame) -> None:
        """Close ``frame``: keep the substream's state and put the outer state back."""
        if not self.frames or self.frames[-1] is not frame:
            raise ScopeError("rng_scope exited out of order; use scopes as nested `with` blocks")
        if len(sys.modules) != self._modules_seen:
            self.refresh()
        kept = self.substreams.get(frame.path)
        if kept is None:
            kept = self.substreams[frame.path] = {}
        saved = frame.saved
        try:
            for name, stream in self.active.items():
                if name in saved:
                    kept[name] = stream.exchange(saved.pop(name))
                else:
                    kept[name] = stream.get_state()
        finally:
            self._put_back(frame)  # whatever an error left in `saved` still goes back

    def _put_back(self, frame: Frame) -> None:
        try:
            active = self.active
            for name, snapshot in frame.saved.items():
                active[name].set_state(snapshot)
        finally:
            frames = self.frames
            if len(frames) > 1:
                frames.pop()
            else:  # under the lock: a thread entering between the pop and the reset would
                with self._lock:  # otherwise lose ownership of the scope it just entered
                    frames.pop()
                    self.owner = None

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

    def track(self, key: str, kind: GeneratorKind, obj: Any) -> Any:
        """Register ``obj`` under ``key``; restore its pending state or seed it from the path."""
        pending = self.pending_generators.get(key)
        if pending is not None and pending[0] == kind.kind:
            kind.set_state(obj, pending[1])
            del self.pending_generators[key]
        else:
            kind.seed_derived(obj, self._generator_material(key, kind))
        self.tracked[key] = Tracked(kind, obj)
        return obj

    def adopt(self, key: str, kind: GeneratorKind, obj: Any) -> Any:
        """Register ``obj`` without seeding it (its library already did, e.g. a Keras
        SeedGenerator): restore its pending state if there is one.  Needs no root seed."""
        pending = self.pending_generators.get(key)
        if pending is not None and pending[0] == kind.kind:
            kind.set_state(obj, pending[1])
            del self.pending_generators[key]
        self.tracked[key] = Tracked(kind, obj)
        return obj

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
        self._lock = threading.Lock()
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


RUNTIME = Runtime()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=RUNTIME.before_fork, after_in_child=RUNTIME.reset_after_fork)
