"""rngstate: named random substreams, full RNG snapshots and exact resume for deep learning.

The top level holds the everyday verbs and types; everything else lives in its module:
``rngstate.errors`` (every exception and ``RNGStateWarning``), ``rngstate.diagnostics``
(``check_reproducible``, ``AuditReport``, ``untracked_generators``), ``rngstate.distributed``
(``rank_info``), ``rngstate.backends`` (``register_stream``, ``register_kind``, ``generator_state``),
``rngstate.determinism`` (``DeterminismReport``), ``rngstate.tracing`` (``compare``, ``Trace``),
and the framework helpers ``rngstate.torch``,
``rngstate.paddle``, ``rngstate.numpy``, ``rngstate.data``, loaded on first use.

>>> import rngstate
>>> rngstate.seed_everything(42)
42
>>> with rngstate.rng_scope("encoder"):
...     pass
"""

import importlib as _importlib
import typing as _typing

from rngstate._version import __version__
from rngstate.determinism import deterministic
from rngstate.diagnostics import audit, fingerprint
from rngstate.errors import RNGStateError, StateFileError
from rngstate.scope import rng_scope
from rngstate.seeding import derive_seed, seed_everything
from rngstate.snapshot import capture, restore
from rngstate.state import RNGState
from rngstate.stateful import stateful
from rngstate.storage import load, save
from rngstate.tracking import track

if _typing.TYPE_CHECKING:
    from rngstate import data as data
    from rngstate import numpy as numpy
    from rngstate import paddle as paddle
    from rngstate import torch as torch
    from rngstate.data import ResumableSampler as ResumableSampler
    from rngstate.data import worker_init_fn as worker_init_fn
    from rngstate.tracing import trace as trace

__all__ = [
    "RNGState",
    "RNGStateError",
    "ResumableSampler",
    "StateFileError",
    "__version__",
    "audit",
    "capture",
    "derive_seed",
    "deterministic",
    "fingerprint",
    "load",
    "restore",
    "rng_scope",
    "save",
    "seed_everything",
    "stateful",
    "trace",
    "track",
    "worker_init_fn",
]

# Loaded on first use, so `import rngstate` imports no framework.
_SUBMODULES = frozenset(
    {"data", "keras", "lightning", "numpy", "paddle", "tensorflow", "tf_data", "torch", "transformers"}
)
_LAZY = {"ResumableSampler": "rngstate.data", "trace": "rngstate.tracing", "worker_init_fn": "rngstate.data"}
# Names the top level had in 0.1.0, and where they live now.
_MOVED = {
    "AuditReport": "rngstate.diagnostics",
    "BackendRegistrationError": "rngstate.errors",
    "DeterminismReport": "rngstate.determinism",
    "InvalidSeedError": "rngstate.errors",
    "InvalidStateError": "rngstate.errors",
    "MissingBackendError": "rngstate.errors",
    "NoRootSeedError": "rngstate.errors",
    "NotReproducibleError": "rngstate.errors",
    "RNGStateWarning": "rngstate.errors",
    "RankInfo": "rngstate.distributed",
    "ReproducibilityReport": "rngstate.diagnostics",
    "ScopeError": "rngstate.errors",
    "TopologyError": "rngstate.errors",
    "check_reproducible": "rngstate.diagnostics",
    "generator_state": "rngstate.backends.objects",
    "rank_info": "rngstate.distributed",
    "register_kind": "rngstate.backends",
    "register_stream": "rngstate.backends",
    "set_generator_state": "rngstate.backends.objects",
}


def __getattr__(name: str) -> _typing.Any:
    if name in _SUBMODULES:
        try:
            return _importlib.import_module(f"rngstate.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"rngstate.{name}":
                raise  # the framework itself is missing: say so
            raise AttributeError(f"module 'rngstate' has no attribute {name!r}") from None
    if name in _LAZY:
        return getattr(_importlib.import_module(_LAZY[name]), name)
    if name in _MOVED:
        where = _MOVED[name]
        raise AttributeError(f"rngstate.{name} moved to {where}: use `from {where} import {name}`")
    raise AttributeError(f"module 'rngstate' has no attribute {name!r}")
