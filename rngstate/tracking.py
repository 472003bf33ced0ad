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


def track(
    obj: T,
    name: str,
    *,
    get_state: Callable[[T], Any] | None = None,
    set_state: Callable[[T, Any], None] | None = None,
    seed: Callable[[T, int], None] | None = None,
) -> T:
    """Seed ``obj`` from the current scope path and ``name`` and include it in every capture.

    Works for ``random.Random``, ``np.random.Generator``, ``np.random.RandomState``,
    ``torch.Generator``, ``tf.random.Generator``, kinds that installed packages register, and
    objects implementing ``__rngstate_get__``/``__rngstate_set__`` (and ``__rngstate_seed__``).
    Any other object is tracked through callables: ``get_state(obj)`` returns its state as
    plain data (str, int, bytes, list, dict; checked), ``set_state(obj, state)`` applies it and
    ``seed(obj, seed)`` reseeds it from a 32-bit integer (without ``seed`` the object keeps its
    own seed and is only captured and restored).  Returns ``obj``.

    >>> import random, rngstate
    >>> from rngstate.backends.objects import generator_state, set_generator_state
    >>> _ = rngstate.seed_everything(0)
    >>> rng = rngstate.track(random.Random(), "augment")
    >>> box = {"rng": random.Random()}
    >>> _ = rngstate.track(box, "box", seed=lambda b, s: b["rng"].seed(s),
    ...     get_state=lambda b: generator_state(b["rng"]),
    ...     set_state=lambda b, state: set_generator_state(b["rng"], state))
    """
    RUNTIME.require_root()
    key = _key(name)
    existing = RUNTIME.tracked.get(key)
    if existing is not None and existing.obj is not obj:
        raise ScopeError(f"the name {key!r} already tracks another generator; pick another name")
    if get_state is not None or set_state is not None or seed is not None:
        from rngstate.backends.objects import ObjectKind

        kind: GeneratorKind = ObjectKind.bound(get_state, set_state, seed)
    else:
        kind = backends.kind_for(obj)
    return RUNTIME.track(key, kind, obj)  # type: ignore[no-any-return]


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
