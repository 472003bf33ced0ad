"""TensorFlow: the global seed with the eager op-seed generator, the global
``tf.random.Generator`` and user ``tf.random.Generator`` objects.

How TensorFlow draws (2.16 - 2.21), and what follows for rngstate:

* A stateful op without an explicit seed (``tf.random.uniform``, ``tf.nn.dropout``,
  ``Dataset.shuffle``) asks ``random_seed.get_seed``, which in eager mode pairs the global seed
  (``tf.random.set_seed``) with an op seed drawn from a ``random.Random`` held by the eager
  context.  That pair is the stream "tensorflow.ops".
* The op's kernel is cached by its attributes (the seed pair) and keeps its own Philox state,
  so putting the context's ``random.Random`` back is not enough when an op seed repeats: the
  cached kernel would continue where it stopped.  Restoring a *different* state therefore
  clears the context's kernel cache, as ``tf.random.set_seed`` does.  Scopes need no clearing:
  each substream has its own global seed, so its seed pairs never meet the outer stream's.
* In a fresh process the eager context may not be initialized; rngstate then only touches its
  Python attributes and never initializes it (that would grab every GPU and, at import time,
  crashed the process).  Kernels do not exist before initialization, so there is nothing to
  clear.
* The global ``tf.random.Generator`` is created lazily by TensorFlow from a non-deterministic
  state.  rngstate never creates it itself (a variable would initialize the context); until
  TensorFlow creates it, its state is "pending": a seed or a state that TensorFlow's creation
  then uses.

Not capturable (documented, warned once): stateful random ops with an explicit op seed (their
cached kernel's position) and stateful random ops traced into a ``tf.function`` or a
``tf.data`` function (each graph's kernels keep their own state).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import random
import sys
import warnings
from typing import Any

from rngstate import _check
from rngstate.backends import lazy, python_backend, python_raw
from rngstate.backends.base import Plain
from rngstate.backends.tensorflow_bytes import PlainBytes, PlainBytesKind, ints, read_fast
from rngstate.derive import derived_int
from rngstate.errors import InvalidStateError, RNGStateError, RNGStateWarning

logger = logging.getLogger(__name__)

_INT64 = (-(2**63), 2**63 - 1)
_MAXINT32 = 2**31 - 1
# tf.random.Generator algorithms and their state sizes (stateful_random_ops._get_state_size).
STATE_SIZES = {1: 3, 2: 2, 3: 3}  # Philox, ThreeFry, auto-select (managed like Philox)


def _module(name: str) -> Any:
    # TensorFlow is imported (the stream is active); its submodules may load lazily.
    return sys.modules.get(name) or importlib.import_module(name)


def _context_module() -> Any:
    return _module("tensorflow.python.eager.context")


def _context() -> Any:
    """The eager context object: created if missing (pure Python), never initialized here."""
    return _context_module().context()


def _initialized(ctx: Any) -> bool:
    return getattr(ctx, "_context_handle", None) is not None


def clear_kernel_cache() -> None:
    """Drop cached kernels (and their Philox positions), as ``tf.random.set_seed`` does."""
    ctx = _context()
    if _initialized(ctx):
        _context_module().pywrap_tfe.TFE_ContextClearCaches(ctx._context_handle)


# -- warnings about what cannot be captured -----------------------------------------------------

_warned: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """Warn once per process and topic."""
    if key in _warned:
        return
    _warned.add(key)
    logger.warning(message)
    warnings.warn(message, RNGStateWarning, stacklevel=4)


_EXPLICIT_SEED = (
    "rngstate: a TensorFlow stateful random op was called with an explicit op seed; its kernel "
    "keeps its own position, which rngstate cannot capture (after restore it starts over). Use "
    "tf.random.Generator, stateless ops or keras.random with a SeedGenerator for exact resume"
)
_IN_GRAPH = (
    "rngstate: a TensorFlow stateful random op ({op}) was "
    "traced into a tf.function or tf.data function; its kernel keeps its own state, which "
    "rngstate cannot capture (in a parallel tf.data map it also depends on thread order). "
    "Use stateless ops (tf.random.stateless_*, tf.image.stateless_random_*) with seeds from "
    "rngstate.derive_seed, or keras.random with a SeedGenerator, for exact resume"
)


_UNSEEDED_DATA = (
    "rngstate: tf.data.Dataset.{op}() was built without a seed; its order then depends on how "
    "many TensorFlow ops drew a seed before it and cannot be rebuilt exactly on resume. Write "
    ".{op}(..., seed=rngstate.derive_seed('data/{op}'))"
)
# Keras builds its own pipeline for arrays with tf.random.shuffle in a dataset map;
# rngstate.keras.RNGStateCallback replaces that pipeline, so it is not the user's to fix.
_KERAS_ARRAYS = "array_data_adapter.py"


def _data_op(frame: Any) -> str | None:
    """``shuffle`` / ``random`` / ... when ``frame`` (a get_seed caller) builds a tf.data
    dataset (directly or through tf.data's own ``random_seed`` helper), else None."""
    for _ in range(3):
        if frame is None:
            return None
        filename = frame.f_code.co_filename.replace("\\", "/")
        if "/python/data/" not in filename:
            return None
        if "/python/data/ops/" in filename:
            return str(os.path.basename(filename)).removesuffix(".py").removesuffix("_op")
        frame = frame.f_back
    return None


def _called_from(filename: str, depth: int = 8) -> bool:
    """True when one of the nearest ``depth`` callers runs code of a file named ``filename``."""
    frame: Any = sys._getframe(2)
    for _ in range(depth):
        if frame is None:
            return False
        if frame.f_code.co_filename.endswith(filename):
            return True
        frame = frame.f_back
    return False


def _install_get_seed_watch() -> None:
    """Wrap ``random_seed.get_seed`` (called by every stateful op that takes a seed) to warn
    once about the draws rngstate cannot capture."""
    random_seed = _module("tensorflow.python.framework.random_seed")
    original = random_seed.get_seed
    if getattr(original, "_rngstate_watch", False):
        return
    context_module = _context_module()

    def get_seed(op_seed: Any) -> Any:
        if len(_warned) < 4:
            caller = sys._getframe(1)
            data_op = _data_op(caller)
            if data_op is not None:
                # Seeded tf.data ops are saved with their iterator (tf.train.Checkpoint).
                if op_seed is None:
                    warn_once(f"data.{data_op}", _UNSEEDED_DATA.format(op=data_op))
            elif not context_module.executing_eagerly():
                if not _called_from(_KERAS_ARRAYS):
                    warn_once("graph", _IN_GRAPH.format(op=caller.f_code.co_name))
            elif op_seed is not None:
                warn_once("explicit", _EXPLICIT_SEED)
        return original(op_seed)

    get_seed._rngstate_watch = True  # type: ignore[attr-defined]
    get_seed.__wrapped__ = original  # type: ignore[attr-defined]
    get_seed.__doc__ = original.__doc__
    random_seed.get_seed = get_seed


# -- "tensorflow.ops": global seed and op-seed generator -----------------------------------------


class Restored(tuple):  # type: ignore[type-arg]
    """A decoded op-seed state: installing it may repeat op seeds, so the kernel cache goes."""

    __slots__ = ()


def _derived_seed(material: bytes) -> int:
    return derived_int(material, 32) & _MAXINT32  # what _truncate_seed keeps


class TFOpSeedStream(PlainBytes):
    """``tf.random.set_seed``'s global seed and the op seeds eager stateful ops draw from it.

    Snapshots are ``(global seed or None, random state or None)``; the random state is the
    python stream's form (raw bytes on the verified fast path, else ``getstate()``).
    """

    name = "tensorflow.ops"
    framework = "tensorflow"

    def __init__(self) -> None:
        self._codec = python_backend.PythonStream()  # encodes and checks random.Random states
        self._fast = self._codec._fast
        self._instance: random.Random | None = None  # kept alive while _view points into it
        self._view = memoryview(b"")

    def on_activate(self) -> None:
        _install_get_seed_watch()

    def _raw(self, rng: random.Random) -> memoryview | None:
        if rng is not self._instance:
            view = python_raw.state_view(rng) if self._fast else None
            self._view = memoryview(b"") if view is None else view
            self._instance = rng
        return self._view if self._view.nbytes else None

    def _read(self, ctx: Any) -> tuple[Any, Any]:
        rng = getattr(ctx, "_rng", None)
        if rng is None:
            return (ctx._seed, None)
        view = self._raw(rng)
        if view is not None:
            return (ctx._seed, (bytes(view), rng.gauss_next))
        return (ctx._seed, rng.getstate())

    def _write(self, ctx: Any, snapshot: Any) -> None:
        seed, state = snapshot
        ctx._seed = seed
        if state is None:
            ctx._rng = None
            return
        rng: Any = getattr(ctx, "_rng", None)
        if rng is None:
            rng = ctx._rng = random.Random(0)
        view = self._raw(rng)
        if len(state) == 2 and view is not None:
            view[:] = state[0]
            rng.gauss_next = state[1]
        else:
            python_raw.install_state(rng, state)

    def seed(self, seed: int) -> None:
        # tf.random.set_seed(seed) in eager mode; it also clears the kernel cache.
        _context()._set_global_seed(seed)

    def seed_derived(self, material: bytes) -> None:
        ctx = _context()
        ctx._seed = _derived_seed(material)
        rng = getattr(ctx, "_rng", None)
        if rng is None:
            ctx._rng = random.Random(derived_int(material[4:], 128))
        else:
            rng.seed(derived_int(material[4:], 128))  # in place: keeps the raw view

    def get_state(self) -> Any:
        return self._read(_context())

    def set_state(self, snapshot: Any) -> None:
        ctx = _context()
        if tuple(snapshot) != self._read(ctx):
            self._write(ctx, snapshot)
            clear_kernel_cache()

    def exchange(self, snapshot: Any) -> Any:
        ctx = _context()
        previous = self._read(ctx)
        self._write(ctx, snapshot)
        if type(snapshot) is Restored:  # restored substream: its op seeds may repeat
            clear_kernel_cache()
        return previous

    def encode(self, snapshot: Any) -> Plain:
        seed, state = snapshot
        if seed is not None:
            try:
                seed = int(seed)
            except (TypeError, ValueError):
                raise RNGStateError(
                    f"the TensorFlow global seed {seed!r} is not an integer; pass an int to "
                    "tf.random.set_seed"
                ) from None
        if seed is None or state is None:
            # Without a global seed ops never ask the op-seed generator (and tf.random.set_seed
            # always makes both): the state is "unseeded" whatever _rng holds.
            return {"seed": [], "rng": []}
        return {"seed": [seed], "rng": [self._codec.encode(state)]}

    def decode(self, plain: Plain, where: str) -> Any:
        _check.mapping(plain, where, ("seed", "rng"))
        seeds = _check.sequence(plain["seed"], f"{where}.seed")
        states = _check.sequence(plain["rng"], f"{where}.rng")
        if len(seeds) > 1 or len(states) > 1:
            raise InvalidStateError(f"{where}: 'seed' and 'rng' hold at most one item each")
        if len(seeds) != len(states):
            # A seed without its op-seed generator made every later tf.random op raise
            # AttributeError (found by scripts/fuzz_long.py).
            raise InvalidStateError(
                f"{where}: 'seed' and 'rng' must be both empty or both set (a global seed needs "
                "the op-seed generator that goes with it)"
            )
        seed = _check.integer(seeds[0], f"{where}.seed[0]", *_INT64) if seeds else None
        state = self._codec.decode(states[0], f"{where}.rng[0]") if states else None
        return Restored((seed, state))

    def metadata(self) -> dict[str, Plain]:
        return {"tensorflow": str(_module("tensorflow").__version__)}


# -- variables: read and assign without the Python layers (8 us instead of 30-120 us) -----------
# The scope hot path swaps the global generators' values, so the few TensorFlow entry points
# used here are looked up once.


class _Ops:
    def __init__(self) -> None:
        self.context = _context_module()
        self.framework_ops = _module("tensorflow.python.framework.ops")
        variable_ops = _module("tensorflow.python.ops.gen_resource_variable_ops")
        self.read = variable_ops.read_variable_op
        self.assign = variable_ops.assign_variable_op
        self.tensor_type = _module("tensorflow").Tensor
        self.constant = _module("tensorflow").constant


_OPS: _Ops | None = None


def _ops() -> _Ops:
    global _OPS
    if _OPS is None:
        _OPS = _Ops()
    return _OPS


def read_variable(variable: Any) -> Any:
    """An immutable eager tensor holding the variable's value (TF copies on later writes)."""
    ops = _ops()
    if ops.context.executing_eagerly():
        return ops.read(variable.handle, variable.dtype)
    with ops.framework_ops.init_scope():  # inside a tf.function being traced: lift out
        return ops.read(variable.handle, variable.dtype)


def assign_variable(variable: Any, value: Any) -> None:
    """Assign ``value`` (an eager tensor from read_variable, or ints already checked)."""
    ops = _ops()
    if ops.context.executing_eagerly():
        if not isinstance(value, ops.tensor_type):
            value = ops.constant(list(value), variable.dtype)
        ops.assign(variable.handle, value)
        return
    with ops.framework_ops.init_scope():
        if not isinstance(value, ops.tensor_type):
            value = ops.constant(list(value), variable.dtype)
        ops.assign(variable.handle, value)



# Invariants of a tf.random.Generator state: alg 1 (Philox: 128-bit counter in two int64
# words, then a 64-bit key), 2 (ThreeFry: two words) or 3 (auto-select, sized like Philox);
# exactly STATE_SIZES[alg] int64 words, since the kernels read that many; any bits are a valid
# position.  The op-seed stream ("tensorflow.ops"): an int64 global seed and the python
# stream's random.Random invariants, both present or both absent.
def check_generator_state(plain: Plain, where: str) -> tuple[int, list[int]]:
    """Validate ``{"alg": int, "state": [int64, ...]}`` of a ``tf.random.Generator``."""
    _check.mapping(plain, where, ("alg", "state"))
    alg = _check.integer(plain["alg"], f"{where}.alg", 1, 3)
    words = _check.sequence(plain["state"], f"{where}.state", STATE_SIZES[alg])
    return alg, [_check.integer(w, f"{where}.state[{i}]", *_INT64) for i, w in enumerate(words)]


def _set_generator(generator: Any, alg: int, state: Any) -> None:
    if int(generator.algorithm) != alg:
        raise InvalidStateError(
            f"cannot restore a state of tf.random algorithm {alg} into a Generator using "
            f"algorithm {int(generator.algorithm)}; create it with the same algorithm"
        )
    assign_variable(generator.state, state)


# -- "tensorflow.generator": tf.random.get_global_generator() ----------------------------------

# Snapshots: ("live", alg, eager tensor or ints) for a created generator; ("pending", None)
# when TensorFlow will create it non-deterministically; ("pending", ("seed", s)) or
# ("pending", ("state", alg, ints)) when its creation will use that seed or state.


class TFGlobalGeneratorStream(PlainBytes):
    """The global ``tf.random.Generator`` (``tf.random.get_global_generator()``)."""

    name = "tensorflow.generator"
    framework = "tensorflow"

    def __init__(self) -> None:
        self.pending: Any = None  # what TensorFlow's creation of the global generator uses

    def on_activate(self) -> None:
        self._intercept_creation()

    def _intercept_creation(self) -> None:
        """Make ``get_global_generator``'s lazy creation use the pending seed or state."""
        module = _module("tensorflow.python.ops.stateful_random_ops")
        generator_class = module.Generator
        original = generator_class.__dict__["from_non_deterministic_state"]
        if getattr(original, "_rngstate_stream", None) is not None:
            original._rngstate_stream.append(self)
            return
        creator = inspect.unwrap(module.get_global_generator).__code__
        streams = [self]

        def from_non_deterministic_state(cls: Any, alg: Any = None) -> Any:
            pending = streams[-1].pending
            if pending is None or sys._getframe(1).f_code is not creator:
                return original.__func__(cls, alg)  # a user's own call stays non-deterministic
            if pending[0] == "seed":
                return cls.from_seed(pending[1], alg=alg)
            return cls.from_state(list(pending[2]), alg=pending[1])

        from_non_deterministic_state.__doc__ = original.__func__.__doc__
        wrapped = classmethod(from_non_deterministic_state)
        wrapped._rngstate_stream = streams  # type: ignore[attr-defined]
        generator_class.from_non_deterministic_state = wrapped

    def _live(self) -> Any:
        return _module("tensorflow.python.ops.stateful_random_ops").global_generator

    def _set_pending(self, pending: Any) -> None:
        generator = self._live()
        if generator is None:
            self.pending = pending
        elif pending is None:
            pass  # "non-deterministic at creation": any state will do; keep the live one
        elif pending[0] == "seed":
            create = _module("tensorflow.python.ops.stateful_random_ops").create_rng_state
            assign_variable(generator.state, ints(create(pending[1], generator.algorithm)))
        else:
            _set_generator(generator, pending[1], pending[2])

    def seed(self, seed: int) -> None:
        self._set_pending(("seed", seed))

    def seed_derived(self, material: bytes) -> None:
        self._set_pending(("seed", derived_int(material, 128)))

    def get_state(self) -> Any:
        generator = self._live()
        if generator is None:
            return ("pending", self.pending)
        return ("live", int(generator.algorithm), read_fast(generator.state, read_variable))

    def set_state(self, snapshot: Any) -> None:
        if snapshot[0] == "pending":
            self._set_pending(snapshot[1])
        else:
            self._set_pending(("state", snapshot[1], snapshot[2]))

    def encode(self, snapshot: Any) -> Plain:
        return lazy.encode(snapshot, lambda state: {"alg": state[0], "state": ints(state[1])})

    def decode(self, plain: Plain, where: str) -> Any:
        return lazy.decode(
            plain, where, (0, 2**128 - 1), ("alg", "state"), lambda plain: self._state(plain, where)
        )

    @staticmethod
    def _state(plain: Plain, where: str) -> tuple[int, tuple[int, ...]]:
        alg, state = check_generator_state({"alg": plain["alg"], "state": plain["state"]}, where)
        return alg, tuple(state)


class TFGeneratorKind(PlainBytesKind):
    """``tf.random.Generator`` objects the user owns (``rngstate.track(gen, "aug")``)."""

    kind = "tensorflow.Generator"
    framework = "tensorflow"

    def matches(self, obj: object) -> bool:
        if "tensorflow" not in sys.modules:
            return False
        return isinstance(obj, _module("tensorflow.python.ops.stateful_random_ops").Generator)

    def seed_derived(self, obj: Any, material: bytes) -> None:
        create = _module("tensorflow.python.ops.stateful_random_ops").create_rng_state
        assign_variable(obj.state, ints(create(derived_int(material, 128), obj.algorithm)))

    def get_state(self, obj: Any) -> Any:
        return (int(obj.algorithm), read_fast(obj.state, read_variable))

    def set_state(self, obj: Any, snapshot: Any) -> None:
        _set_generator(obj, snapshot[0], snapshot[1])

    def encode(self, snapshot: Any) -> Plain:
        return {"alg": snapshot[0], "state": ints(snapshot[1])}

    def decode(self, plain: Plain, where: str) -> Any:
        alg, state = check_generator_state(plain, where)
        return (alg, tuple(state))
