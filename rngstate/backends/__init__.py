"""Registry of streams and generator kinds, found lazily by the framework they belong to.

A backend module is imported only when its framework is already in ``sys.modules`` or when a
state names one of its streams; importing a backend module never imports its framework.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from functools import cache

from rngstate.backends.base import GeneratorKind, Stream
from rngstate.errors import MissingBackendError

# stream name -> (framework module, "backend module:class")
_STREAMS: dict[str, tuple[str, str]] = {
    "python": ("random", "rngstate.backends.python:PythonStream"),
    "numpy": ("numpy", "rngstate.backends.numpy:NumpyStream"),
    "torch.cpu": ("torch", "rngstate.backends.torch:TorchCPUStream"),
    "torch.cuda": ("torch", "rngstate.backends.torch:TorchCUDAStream"),
}
_KINDS: dict[str, tuple[str, str]] = {
    "python.Random": ("random", "rngstate.backends.python:PythonRandomKind"),
    "numpy.Generator": ("numpy", "rngstate.backends.numpy:NumpyGeneratorKind"),
    "numpy.RandomState": ("numpy", "rngstate.backends.numpy:NumpyRandomStateKind"),
    "torch.Generator": ("torch", "rngstate.backends.torch:TorchGeneratorKind"),
}
_EXTRAS = {"torch": "torch", "paddle": "paddle", "tensorflow": "tensorflow", "keras": "tensorflow"}


def _load(target: str) -> object:
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)()


@cache
def stream(name: str) -> Stream:
    """Return the stream called ``name`` (e.g. ``"torch.cpu"``)."""
    if name not in _STREAMS:
        raise MissingBackendError(
            f"no backend provides the stream {name!r}; known streams: {sorted(_STREAMS)}. "
            "Install the package that registers it, or restore with strict=False to skip it"
        )
    loaded = _load(_STREAMS[name][1])
    assert isinstance(loaded, Stream)
    return loaded


@cache
def kind(name: str) -> GeneratorKind:
    """Return the generator kind called ``name`` (e.g. ``"torch.Generator"``)."""
    if name not in _KINDS:
        raise MissingBackendError(f"unknown generator kind {name!r}; known kinds: {sorted(_KINDS)}")
    loaded = _load(_KINDS[name][1])
    assert isinstance(loaded, GeneratorKind)
    return loaded


def stream_names() -> list[str]:
    """All registered stream names, in seeding order."""
    return list(_STREAMS)


def framework_of(stream_name: str) -> str:
    """The top-level module a stream belongs to."""
    return _STREAMS[stream_name][0]


def watched_frameworks() -> set[str]:
    """Frameworks whose import should activate streams (everything but the always-on ones)."""
    return {framework for framework, _ in _STREAMS.values()} - {"random", "numpy"}


def is_installed(framework: str) -> bool:
    """True when ``framework`` can be imported (checked without importing it)."""
    return framework in sys.modules or importlib.util.find_spec(framework) is not None


def extra_for(framework: str) -> str:
    """The pip extra that installs ``framework``."""
    return _EXTRAS.get(framework, framework)


def kind_for(obj: object) -> GeneratorKind:
    """Return the kind that handles ``obj``, looking only at frameworks already imported."""
    for name, (framework, _) in _KINDS.items():
        if framework in sys.modules and kind(name).matches(obj):
            return kind(name)
    raise MissingBackendError(
        f"rngstate cannot track a {type(obj).__module__}.{type(obj).__qualname__}; "
        f"supported kinds: {sorted(_KINDS)}"
    )
