"""Keras 3: the global ``SeedGenerator`` and every ``SeedGenerator`` inside layers.

Keras initializers and ``Dropout``-like layers built with ``seed=None`` take their seed from
Python's ``random`` when constructed, so layers built inside an ``rng_scope`` already follow
it.  What Keras keeps afterwards is the state of its ``SeedGenerator`` objects (a variable
``[seed, counter]``), advanced by every training step; rngstate handles them as follows.

* The global generator (``keras.random.normal(shape)`` without a seed) is the stream
  "keras.global".  Keras creates it lazily; until then its state is "pending": Keras's own
  default (a seed from Python's ``random`` at creation), or a seed or state that rngstate
  hands to that creation.
* Every other ``SeedGenerator`` is tracked automatically when it is created, under the key
  ``<scope path>/keras.SeedGenerator.<n>``: ``n`` counts the generators created so far directly
  in that scope path (at top level the path is empty: ``keras.SeedGenerator.<n>``).  The same
  program creates its layers in the same order, so a state saved by one process restores into
  the same layers in another; layers added or removed *outside* a scope never shift the keys
  inside it.  ``seed_everything`` restarts the counts, so a model rebuilt after it gets the
  keys a fresh process would give it.  Generators created before rngstate was first used are
  adopted when it is, in creation order (Keras numbers their names).  The runtime holds them
  weakly: once a model is garbage collected its generators leave later captures.
"""

from __future__ import annotations

import gc
import importlib
import logging
import re
import sys
import weakref
from typing import Any

import numpy as np

from rngstate import _check, backends
from rngstate.backends import lazy
from rngstate.backends.base import Plain
from rngstate.backends.tensorflow_bytes import PlainBytes, PlainBytesKind, ints, read_fast
from rngstate.derive import derived_int
from rngstate.errors import InvalidStateError

logger = logging.getLogger(__name__)

_KEY_PREFIX = "keras.SeedGenerator."
_VALUE_RANGE = (-(2**63), 2**64 - 1)
_DTYPE_RANGES = {"int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1), "int64": (-(2**63), 2**63 - 1)}
_counters: dict[str, int] = {}  # scope path -> SeedGenerators created directly in it
_dead: list[tuple[str, Any]] = []  # (key, handle) of collected generators, dropped at safe points


def _module(name: str) -> Any:
    return sys.modules.get(name) or importlib.import_module(name)


def _seed_generator_module() -> Any:
    return _module("keras.src.random.seed_generator")


def _global_state() -> Any:
    return _module("keras.src.backend.common.global_state")


def _tf_variable(generator: Any) -> Any | None:
    """The TensorFlow variable behind a generator's state, or None on other Keras backends."""
    value = getattr(generator.state, "_value", None)
    return value if hasattr(value, "handle") and hasattr(value, "assign") else None


def read_state(generator: Any) -> Any:
    """An immutable snapshot of ``generator``'s ``[seed, counter]``."""
    variable = _tf_variable(generator)
    if variable is not None:
        from rngstate.backends.tensorflow_backend import read_variable  # a TensorFlow variable

        return read_fast(variable, read_variable)
    return tuple(int(x) for x in np.asarray(generator.state.numpy()).reshape(-1))


def write_state(generator: Any, values: Any) -> None:
    """Assign ``values`` (a snapshot from :func:`read_state` or checked ints)."""
    if type(values) is tuple:  # from decode (read_state gives tensors on TensorFlow)
        dtype = str(generator.state.dtype)
        low, high = _DTYPE_RANGES.get(dtype, _VALUE_RANGE)
        if any(not low <= v <= high for v in values):
            raise InvalidStateError(
                f"the SeedGenerator state {list(values)} does not fit this Keras backend's "
                f"seed dtype {dtype}; restore with the Keras backend that captured it"
            )
    variable = _tf_variable(generator)
    if variable is not None:
        from rngstate.backends.tensorflow_backend import assign_variable

        assign_variable(variable, values)
        return
    generator.state.assign(np.asarray([int(v) for v in ints(values)], dtype=str(generator.state.dtype)))



# Invariants of a SeedGenerator state: exactly [seed, counter], integers in 64 bits here and,
# when written (write_state), within the live variable's dtype (int32, uint32 or int64 by Keras
# backend); any such pair is a state Keras can reach.
def check_values(plain: Plain, where: str) -> tuple[int, int]:
    """Validate a ``[seed, counter]`` pair."""
    pair = _check.sequence(plain, where, 2)
    return (
        _check.integer(pair[0], f"{where}[0]", *_VALUE_RANGE),
        _check.integer(pair[1], f"{where}[1]", *_VALUE_RANGE),
    )


# -- creation hook -------------------------------------------------------------------------------


def _is_global_creation(frame: Any) -> bool:
    creator = _seed_generator_module().global_seed_generator
    return frame is not None and frame.f_code is getattr(creator, "__code__", None)


def _install_creation_hook(stream: KerasGlobalStream) -> None:
    """Wrap ``SeedGenerator.__init__``: the global one gets the pending seed, the others are
    tracked under their creation key."""
    cls = _seed_generator_module().SeedGenerator
    original = cls.__init__
    if getattr(original, "_rngstate_hook", False):
        return

    def __init__(self: Any, seed: Any = None, name: Any = None, **kwargs: Any) -> None:  # noqa: N807
        if _is_global_creation(sys._getframe(1)):
            pending = stream.pending
            if pending is not None and seed is None:
                seed = pending[1] if pending[0] == "seed" else int(pending[1][0])
            original(self, seed, name, **kwargs)
            if pending is not None and pending[0] == "state":
                write_state(self, pending[1])
            stream.pending = None
            return
        original(self, seed, name, **kwargs)
        _adopt(self)

    __init__._rngstate_hook = True  # type: ignore[attr-defined]
    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    __init__.__doc__ = original.__doc__
    cls.__init__ = __init__
    _adopt_existing()


class _Handle:
    """What the runtime tracks for an auto-tracked generator: its state variable (strongly, so
    a capture that races the generator's collection still reads it) and a weak reference."""

    __slots__ = ("__weakref__", "_initial_seed", "name", "ref", "state")

    def __init__(self, generator: Any, key: str) -> None:
        self.state = generator.state
        self.name = generator.name
        self._initial_seed = getattr(generator, "_initial_seed", None)
        self.ref = weakref.ref(generator, lambda _: _dead.append((key, self)))


def drop_collected() -> None:
    """Stop tracking generators whose model was garbage collected.  Called where no caller is
    iterating over the tracked generators (a weakref callback may run at any allocation)."""
    if not _dead:
        return
    runtime = backends.listener()
    while _dead:
        key, handle = _dead.pop()
        if runtime is not None:
            runtime.forget(key, handle)


def _adopt(generator: Any) -> None:
    runtime = backends.listener()
    if runtime is None:  # nothing to adopt into before rngstate's runtime exists
        return
    drop_collected()
    parts = runtime.current_parts()
    path = "/".join(parts)
    index = _counters.get(path, 0)
    _counters[path] = index + 1
    key = "/".join((*parts, f"{_KEY_PREFIX}{index}"))
    runtime.adopt(key, KerasSeedGeneratorKind.instance(), _Handle(generator, key))


def _creation_order(generator: Any) -> tuple[int, str]:
    # Keras names generators "seed_generator", "seed_generator_1", ... in creation order.
    match = re.fullmatch(r"seed_generator(?:_(\d+))?", str(generator.name))
    return (int(match.group(1) or 0), "") if match else (sys.maxsize, str(generator.name))


def _adopt_existing() -> None:
    """Track the generators created before the hook was installed (keras imported before
    rngstate was first used), in creation order."""
    cls = _seed_generator_module().SeedGenerator
    global_generator = _global_state().get_global_attribute("global_seed_generator")
    # type(), not isinstance(): isinstance asks __class__, which wakes lazy modules and proxies
    found = [
        obj for obj in gc.get_objects() if issubclass(type(obj), cls) and obj is not global_generator
    ]
    for generator in sorted(found, key=_creation_order):
        _adopt(generator)
    if found:
        logger.info("rngstate: adopted %d Keras SeedGenerators created before rngstate was used", len(found))


# -- "keras.global" ------------------------------------------------------------------------------


class KerasGlobalStream(PlainBytes):
    """Keras's global ``SeedGenerator``: ``keras.random.*`` calls without a seed.

    Snapshots: ``("live", values)`` or ``("pending", None | ("seed", s) | ("state", values))``.
    """

    name = "keras.global"
    framework = "keras"

    def __init__(self) -> None:
        self.pending: Any = None

    def on_activate(self) -> None:
        _install_creation_hook(self)

    def _live(self) -> Any:
        return _global_state().get_global_attribute("global_seed_generator")

    def _set_pending(self, pending: Any) -> None:
        generator = self._live()
        if generator is None:
            self.pending = pending
        elif pending is None:
            pass  # "Keras picks a seed at creation": any state will do; keep the live one
        elif pending[0] == "seed":
            write_state(generator, (pending[1], 0))
        else:
            write_state(generator, pending[1])

    def seed(self, seed: int) -> None:
        _counters.clear()  # a model rebuilt now gets the keys a fresh process gives it
        drop_collected()
        self._set_pending(("seed", seed))

    def seed_derived(self, material: bytes) -> None:
        self._set_pending(("seed", derived_int(material, 31)))

    def get_state(self) -> Any:
        drop_collected()  # capture() reads the streams before the tracked generators
        generator = self._live()
        if generator is None:
            return ("pending", self.pending)
        return ("live", read_state(generator))

    def exchange(self, snapshot: Any) -> Any:
        generator = self._live()  # the scope hot path: no purge here
        previous = ("pending", self.pending) if generator is None else ("live", read_state(generator))
        self.set_state(snapshot)
        return previous

    def set_state(self, snapshot: Any) -> None:
        self._set_pending(snapshot[1] if snapshot[0] == "pending" else ("state", snapshot[1]))

    def encode(self, snapshot: Any) -> Plain:
        return lazy.encode(snapshot, lambda state: {"state": ints(state[0])})

    def decode(self, plain: Plain, where: str) -> Any:
        return lazy.decode(
            plain, where, _VALUE_RANGE, ("state",),
            lambda plain: (check_values(plain["state"], f"{where}.state"),),
        )

    def metadata(self) -> dict[str, Plain]:
        keras = _module("keras")
        return {"keras": str(keras.__version__), "keras_backend": str(keras.backend.backend())}


class KerasSeedGeneratorKind(PlainBytesKind):
    """``keras.random.SeedGenerator`` objects (tracked automatically when created)."""

    kind = "keras.SeedGenerator"
    framework = "keras"

    @classmethod
    def instance(cls) -> KerasSeedGeneratorKind:
        """The registry's instance (the runtime compares kinds by identity)."""
        kind = backends.kind(cls.kind)
        assert isinstance(kind, KerasSeedGeneratorKind)
        return kind

    def matches(self, obj: object) -> bool:
        return "keras" in sys.modules and isinstance(obj, _seed_generator_module().SeedGenerator)

    def seed_derived(self, obj: Any, material: bytes) -> None:
        # An explicit seed (Dropout(seed=7)) is the user's choice: start over from it.
        initial = getattr(obj, "_initial_seed", None)
        write_state(obj, (initial if isinstance(initial, int) else derived_int(material, 31), 0))

    def get_state(self, obj: Any) -> Any:
        return read_state(obj)

    def set_state(self, obj: Any, snapshot: Any) -> None:
        write_state(obj, snapshot)

    def encode(self, snapshot: Any) -> Plain:
        return {"state": ints(snapshot)}

    def decode(self, plain: Plain, where: str) -> Any:
        _check.mapping(plain, where, ("state",))
        return check_values(plain["state"], f"{where}.state")
