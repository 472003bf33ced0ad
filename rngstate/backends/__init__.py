"""Registry of streams and generator kinds, found lazily by the framework they belong to.

A backend module is imported only when its framework is already in ``sys.modules`` or when a
state names one of its streams; importing a backend module never imports its framework.

Other packages add streams and kinds with :func:`register_stream` / :func:`register_kind`, or
declare them in the entry point group ``rngstate.backends`` (loaded on first need: by
``seed_everything``, or when a state or ``track`` names something unknown; never at
``import rngstate``).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import sys
import warnings
from functools import cache
from typing import Any, Protocol

from rngstate.backends.base import GeneratorKind, Stream
from rngstate.errors import BackendRegistrationError, MissingBackendError

logger = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "rngstate.backends"

# stream name -> (framework module, "backend module:class")
_STREAMS: dict[str, tuple[str, str]] = {
    "python": ("random", "rngstate.backends.python_backend:PythonStream"),
    "numpy": ("numpy", "rngstate.backends.numpy_backend:NumpyStream"),
    "torch.cpu": ("torch", "rngstate.backends.torch_backend:TorchCPUStream"),
    "torch.cuda": ("torch", "rngstate.backends.torch_backend:TorchCUDAStream"),
    "paddle.cpu": ("paddle", "rngstate.backends.paddle_backend:PaddleCPUStream"),
    "paddle.gpu": ("paddle", "rngstate.backends.paddle_backend:PaddleGPUStream"),
    "tensorflow.ops": ("tensorflow", "rngstate.backends.tensorflow_backend:TFOpSeedStream"),
    "tensorflow.generator": ("tensorflow", "rngstate.backends.tensorflow_backend:TFGlobalGeneratorStream"),
    "keras.global": ("keras", "rngstate.backends.keras_backend:KerasGlobalStream"),
}
_KINDS: dict[str, tuple[str, str]] = {
    "python.Random": ("random", "rngstate.backends.python_backend:PythonRandomKind"),
    "numpy.Generator": ("numpy", "rngstate.backends.numpy_backend:NumpyGeneratorKind"),
    "numpy.RandomState": ("numpy", "rngstate.backends.numpy_backend:NumpyRandomStateKind"),
    "torch.Generator": ("torch", "rngstate.backends.torch_backend:TorchGeneratorKind"),
    "tensorflow.Generator": ("tensorflow", "rngstate.backends.tensorflow_backend:TFGeneratorKind"),
    "keras.SeedGenerator": ("keras", "rngstate.backends.keras_backend:KerasSeedGeneratorKind"),
    # Last: objects with the __rngstate_get__/__rngstate_set__ protocol (and track(get_state=...)).
    "object": ("random", "rngstate.backends.objects:ObjectKind"),
}
_BUILTIN = frozenset(_STREAMS) | frozenset(_KINDS)
_REGISTERED: dict[str, Stream | GeneratorKind] = {}  # "stream:<name>" / "kind:<name>" -> object
_ORDER = list(_STREAMS)  # live: the runtime's candidates see later registrations
_WATCHED = {framework for framework, _ in _STREAMS.values()} - {"random", "numpy"}  # live too
_entry_points_loaded = False
_EXTRAS = {"torch": "torch", "paddle": "paddle", "tensorflow": "tensorflow", "keras": "tensorflow"}


class Listener(Protocol):
    """The runtime as the backends see it: they never import the layer above, the runtime
    registers itself with :func:`listen` instead."""

    def stream_registered(self, name: str) -> None:
        """A stream was registered; it may already be usable (its framework imported)."""

    def stream_started(self, name: str) -> None:
        """A stream became usable outside any import (CUDA initialized); called from inside
        the framework's own start-up code."""

    def current_parts(self) -> tuple[str, ...]:
        """Path components of the innermost open scope."""

    def adopt(self, key: str, kind: GeneratorKind, obj: Any) -> Any:
        """Track ``obj`` under ``key`` without seeding it (a framework seeded it already)."""

    def forget(self, key: str, obj: Any) -> None:
        """Stop tracking ``key`` if it still tracks ``obj``."""


_LISTENER: list[Listener] = []  # the runtime, once it is imported


def listen(listener: Listener) -> None:
    """Make ``listener`` the one the backends talk to (the runtime does this at import)."""
    _LISTENER[:] = [listener]


def listener() -> Listener | None:
    """The registered runtime, or None before ``rngstate.runtime`` is imported."""
    return _LISTENER[0] if _LISTENER else None


def announce_started(name: str) -> None:
    """Called by a backend when its stream ``name`` starts (e.g. CUDA initialized)."""
    for runtime in _LISTENER:
        runtime.stream_started(name)


def _load(target: str) -> object:
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)()


@cache
def stream(name: str) -> Stream:
    """Return the stream called ``name`` (e.g. ``"torch.cpu"``)."""
    if name not in _STREAMS:
        load_entry_points()
    if name not in _STREAMS:
        raise MissingBackendError(
            f"no backend provides the stream {name!r}; known streams: {sorted(_STREAMS)}. "
            "Install the package that registers it, or restore with strict=False to skip it"
        )
    loaded = _REGISTERED.get(f"stream:{name}") or _load(_STREAMS[name][1])
    assert isinstance(loaded, Stream)
    return loaded


@cache
def kind(name: str) -> GeneratorKind:
    """Return the generator kind called ``name`` (e.g. ``"torch.Generator"``)."""
    if name not in _KINDS:
        load_entry_points()
    if name not in _KINDS:
        raise MissingBackendError(f"unknown generator kind {name!r}; known kinds: {sorted(_KINDS)}")
    loaded = _REGISTERED.get(f"kind:{name}") or _load(_KINDS[name][1])
    assert isinstance(loaded, GeneratorKind)
    return loaded


def stream_names() -> list[str]:
    """All registered stream names, in seeding order (a live list: registrations append)."""
    return _ORDER


def framework_of(stream_name: str) -> str:
    """The top-level module a stream belongs to."""
    return _STREAMS[stream_name][0]


def watched_frameworks() -> set[str]:
    """Frameworks whose import should activate streams (everything but the always-on ones;
    a live set: registrations add to it)."""
    return _WATCHED


def is_installed(framework: str) -> bool:
    """True when ``framework`` can be imported (checked without importing it)."""
    return framework in sys.modules or importlib.util.find_spec(framework) is not None


def extra_for(framework: str) -> str:
    """The pip extra that installs ``framework``."""
    return _EXTRAS.get(framework, framework)


def kind_for(obj: object) -> GeneratorKind:
    """Return the kind that handles ``obj``, looking only at frameworks already imported."""
    for attempt in range(2):
        if attempt and not load_entry_points():
            break
        for name, (framework, _) in _KINDS.items():
            if framework in sys.modules and kind(name).matches(obj):
                return kind(name)
    raise MissingBackendError(
        f"rngstate cannot track a {type(obj).__module__}.{type(obj).__qualname__}; "
        f"supported kinds: {sorted(_KINDS)}; pass get_state= and set_state= to rngstate.track, "
        "or install the package that registers a kind for it"
    )


# -- registration (public) ---------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _instance(value: object, base: type, what: str) -> object:
    if isinstance(value, type) and issubclass(value, base):
        try:
            return value()
        except Exception as exc:
            raise BackendRegistrationError(f"{what} {value.__qualname__}() failed: {exc}") from exc
    if isinstance(value, base):
        return value
    raise BackendRegistrationError(
        f"{what} must be a rngstate.backends.{base.__name__} subclass or instance, got {value!r}"
    )


def _check_names(name: object, framework: object, what: str) -> tuple[str, str]:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BackendRegistrationError(
            f"{what} name {name!r} must be letters, digits, '_', '.' or '-' (e.g. 'mylib.global')"
        )
    if not isinstance(framework, str) or not _MODULE.fullmatch(framework):
        raise BackendRegistrationError(
            f"{what} {name!r}: framework {framework!r} must be a top-level module name (e.g. 'mylib')"
        )
    return name, framework


def _claim(
    table: dict[str, tuple[str, str]], prefix: str, what: str, name: str, framework: str,
    instance: Stream | GeneratorKind,
) -> Stream | GeneratorKind:
    """Enter ``instance`` under ``name`` in ``table`` (and as ``prefix:name`` in _REGISTERED,
    where stream() and kind() look); returns it, or the instance of the same class registered
    before.  A name taken by anything else is refused."""
    key = f"{prefix}:{name}"
    if name in table:
        known = _REGISTERED.get(key)
        if known is not None and type(known) is type(instance):
            return known
        raise BackendRegistrationError(
            f"the {what} name {name!r} is already taken by "
            f"{'rngstate itself' if name in _BUILTIN else type(known).__qualname__}; pick another name"
        )
    _REGISTERED[key] = instance
    table[name] = (framework, f"{type(instance).__module__}:{type(instance).__qualname__}")
    return instance


def register_stream(stream: type[Stream] | Stream) -> Stream:
    """Add a global generator of another library, seeded by ``seed_everything`` and scopes and
    included in ``capture()`` once its ``framework`` module is imported.

    ``stream`` is a :class:`Stream` subclass (instantiated without arguments) or an instance
    with ``name`` and ``framework`` set.  Registering the same class again does nothing.

    >>> import random
    >>> from rngstate.backends import Stream, kind, register_stream
    >>> class SharedRandom(Stream):  # a library's module-level random.Random
    ...     name, framework = "doctest.shared", "random"
    ...     rng = random.Random()
    ...     codec = kind("python.Random")  # rngstate's checked plain form of Random states
    ...     def seed(self, seed): self.rng.seed(seed)
    ...     def seed_derived(self, material): self.rng.seed(int.from_bytes(material, "big"))
    ...     def get_state(self): return self.rng.getstate()
    ...     def set_state(self, snapshot): self.rng.setstate(snapshot)
    ...     def encode(self, snapshot): return self.codec.encode(snapshot)
    ...     def decode(self, plain, where): return self.codec.decode(plain, where)
    >>> register_stream(SharedRandom).name
    'doctest.shared'
    """
    instance = _instance(stream, Stream, "a stream")
    assert isinstance(instance, Stream)
    name, framework = _check_names(instance.name, instance.framework, "stream")
    known = _claim(_STREAMS, "stream", "stream", name, framework, instance)
    if known is not instance:
        return known  # type: ignore[return-value]
    _ORDER.append(name)
    if framework not in ("random", "numpy"):
        _WATCHED.add(framework)
    for runtime in _LISTENER:
        runtime.stream_registered(name)
    logger.debug("stream %s registered for %s", name, framework)
    return instance


def register_kind(kind: type[GeneratorKind] | GeneratorKind) -> GeneratorKind:
    """Add a kind of generator object that ``rngstate.track(obj, name)`` accepts.

    ``kind`` is a :class:`GeneratorKind` subclass (instantiated without arguments) or an
    instance with ``kind`` and ``framework`` set; its ``matches`` is asked only once
    ``framework`` is imported.  Registering the same class again does nothing.

    >>> from rngstate.backends import GeneratorKind, register_kind
    >>> class Counter(GeneratorKind):
    ...     kind, framework = "doctest.Counter", "random"
    ...     def matches(self, obj): return False
    >>> register_kind(Counter).kind
    'doctest.Counter'
    """
    instance = _instance(kind, GeneratorKind, "a generator kind")
    assert isinstance(instance, GeneratorKind)
    name, framework = _check_names(instance.kind, instance.framework, "generator kind")
    known = _claim(_KINDS, "kind", "generator kind", name, framework, instance)
    if known is not instance:
        return known  # type: ignore[return-value]
    logger.debug("generator kind %s registered for %s", name, framework)
    return instance


def load_entry_points() -> bool:
    """Register what installed packages declare in the ``rngstate.backends`` entry point group
    (once per process).  Returns True when this call registered something.

    An entry point names a Stream or GeneratorKind subclass or instance, or a list of them::

        [project.entry-points."rngstate.backends"]
        mylib = "mylib.rngstate_plugin:MyLibStream"

    A plugin that fails to load is skipped with a warning; the others still load.
    """
    global _entry_points_loaded
    if _entry_points_loaded:
        return False
    _entry_points_loaded = True
    added = False
    import importlib.metadata  # 20-30 ms: only when a plugin may be needed, not at import

    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry_point.load()
            items = loaded if isinstance(loaded, (list, tuple)) else [loaded]
            for item in items:
                is_stream = isinstance(item, Stream) or (isinstance(item, type) and issubclass(item, Stream))
                if is_stream:
                    register_stream(item)
                else:
                    register_kind(item)
                added = True
        except Exception as exc:  # a broken plugin must not take the others down
            message = (
                f"rngstate: skipped the backend plugin {entry_point.name!r} "
                f"({entry_point.value}): {exc}"
            )
            logger.warning(message)
            warnings.warn(message, stacklevel=2)
    return added


__all__ = [
    "kind",
    "kind_for",
    "load_entry_points",
    "register_kind",
    "register_stream",
    "stream",
    "stream_names",
]
