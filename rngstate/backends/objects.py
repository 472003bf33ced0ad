"""Any object whose random state can be read and written: the kind ``"object"``.

Libraries keep their own generators (an augmentation pipeline with its own ``random.Random``
and NumPy ``Generator``).  Such an object is tracked either

* with callables: ``rngstate.track(obj, name, get_state=f, set_state=g, seed=h)``, where
  ``f(obj)`` returns plain data, ``g(obj, plain)`` applies it and ``h(obj, seed)`` reseeds it
  from a 32-bit integer; or
* through a small protocol the object's class implements: ``__rngstate_get__(self)``,
  ``__rngstate_set__(self, plain)`` and, optionally, ``__rngstate_seed__(self, seed)``.

Its state must be plain data (str, int, bytes, list, dict): it is checked when read, when
decoded from a file and before it is applied.  :func:`generator_state` and
:func:`set_generator_state` turn the generators rngstate knows (``random.Random``, NumPy and
torch generators, ...) into checked plain data and back, for writing such callables.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from rngstate import _check, backends
from rngstate.backends.base import GeneratorKind, Plain
from rngstate.derive import derived_int
from rngstate.errors import InvalidStateError, RNGStateError

GetState = Callable[[Any], Any]
SetState = Callable[[Any, Any], None]
Seed = Callable[[Any, int], None]
_PROTOCOL = ("__rngstate_get__", "__rngstate_set__")


def _describe(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def seed_from(material: bytes) -> int:
    """The 32-bit seed handed to ``seed`` callables (fits every library's seed type)."""
    return derived_int(material, 32)


class ObjectKind(GeneratorKind):
    """Objects tracked through callables or the ``__rngstate_get__`` protocol.

    The registry's instance (``backends.kind("object")``) uses the protocol and decodes
    states from files; :meth:`bound` makes one that calls the given callables.
    """

    kind = "object"
    framework = "random"  # always imported: the kind needs no framework

    def __init__(
        self,
        get_state: GetState | None = None,
        set_state: SetState | None = None,
        seed: Seed | None = None,
    ) -> None:
        self._get = get_state
        self._set = set_state
        self._seed = seed

    @classmethod
    def bound(cls, get_state: Any, set_state: Any, seed: Any = None) -> ObjectKind:
        """A kind that reads and writes state through these callables."""
        if not callable(get_state) or not callable(set_state):
            raise RNGStateError(
                "rngstate.track(obj, name, get_state=..., set_state=...) needs both callables: "
                "get_state(obj) -> plain data and set_state(obj, plain) -> None"
            )
        if seed is not None and not callable(seed):
            raise RNGStateError("rngstate.track(..., seed=...) must be a callable seed(obj, int)")
        return cls(get_state, set_state, seed)

    def matches(self, obj: object) -> bool:
        return all(callable(getattr(obj, name, None)) for name in _PROTOCOL)

    def seed_derived(self, obj: Any, material: bytes) -> None:
        seed = self._seed
        if seed is not None:
            seed(obj, seed_from(material))
        elif self._get is None and callable(getattr(obj, "__rngstate_seed__", None)):
            obj.__rngstate_seed__(seed_from(material))
        # else: the object keeps its own seed; capture and restore still cover it

    def get_state(self, obj: Any) -> Any:
        where = f"the state of the tracked {_describe(obj)}"
        try:
            state = self._get(obj) if self._get is not None else obj.__rngstate_get__()
        except RNGStateError:
            raise
        except Exception as exc:
            raise InvalidStateError(f"reading {where} failed: {exc!r}") from exc
        return _check.plain(state, where)

    def set_state(self, obj: Any, snapshot: Any) -> None:
        where = f"the tracked {_describe(obj)}"
        state = copy.deepcopy(snapshot)  # the callable may keep or change what it is given
        try:
            if self._set is not None:
                self._set(obj, state)
            else:
                obj.__rngstate_set__(state)
        except RNGStateError:
            raise
        except Exception as exc:
            raise InvalidStateError(
                f"{where} rejected its state ({exc!r}); the state was captured from another "
                "kind of object or configuration"
            ) from exc

    def encode(self, snapshot: Any) -> Plain:
        return snapshot  # checked plain data already (get_state)

    def decode(self, plain: Plain, where: str) -> Any:
        return _check.plain(plain, where)


def generator_state(generator: object) -> Plain:
    """The state of a generator rngstate knows, as checked plain data.

    >>> import random
    >>> from rngstate.backends.objects import generator_state, set_generator_state
    >>> rng = random.Random(1)
    >>> state = generator_state(rng)
    >>> first = rng.random()
    >>> set_generator_state(rng, state)
    >>> rng.random() == first
    True
    """
    kind = backends.kind_for(generator)
    return kind.encode(kind.get_state(generator))


def set_generator_state(generator: object, state: Plain) -> None:
    """Validate ``state`` (from :func:`generator_state`) and apply it to ``generator``;
    raises :class:`~rngstate.errors.InvalidStateError` naming what is wrong."""
    kind = backends.kind_for(generator)
    kind.set_state(generator, kind.decode(state, f"state of {_describe(generator)}"))


__all__ = ["generator_state", "set_generator_state"]
