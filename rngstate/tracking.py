"""Tracked generators: user-owned generator objects seeded from a scope path and captured."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from rngstate import backends
from rngstate.backends.base import GeneratorKind
from rngstate.derive import split_path
from rngstate.errors import ScopeError
from rngstate.runtime import RUNTIME

T = TypeVar("T")


def _key(name: str) -> str:
    return "/".join(RUNTIME.current_parts() + split_path(name))


def track(obj: T, name: str) -> T:
    """Seed ``obj`` from the current scope path and ``name`` and include it in every capture.

    Works for ``random.Random``, ``np.random.Generator``, ``np.random.RandomState`` and
    ``torch.Generator``.  Returns ``obj``.

    >>> import random, rngstate
    >>> _ = rngstate.seed_everything(0)
    >>> rng = rngstate.track(random.Random(), "augment")
    """
    RUNTIME.require_root()
    key = _key(name)
    existing = RUNTIME.tracked.get(key)
    if existing is not None and existing.obj is not obj:
        raise ScopeError(f"the name {key!r} already tracks another generator; pick another name")
    return RUNTIME.track(key, backends.kind_for(obj), obj)  # type: ignore[no-any-return]


def tracked_generator(name: str, kind: GeneratorKind, create: Callable[[], Any]) -> Any:
    """Return the generator tracked as ``name`` in the current scope, creating it once."""
    RUNTIME.require_root()
    key = _key(name)
    existing = RUNTIME.tracked.get(key)
    if existing is not None:
        if existing.kind is not kind:
            raise ScopeError(f"{key!r} already tracks a {existing.kind.kind}, not a {kind.kind}")
        return existing.obj
    return RUNTIME.track(key, kind, create())
