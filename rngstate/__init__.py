"""rngstate: named random substreams, full RNG snapshots and exact resume for deep learning.

>>> import rngstate
>>> rngstate.seed_everything(42)
42
>>> with rngstate.rng_scope("encoder"):
...     pass
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from rngstate.backends import register_kind, register_stream
from rngstate.backends.objects import generator_state, set_generator_state
from rngstate.derive import derive_seed
from rngstate.determinism import DeterminismReport, deterministic
from rngstate.diagnostics import (
    AuditReport,
    NotReproducibleError,
    ReproducibilityReport,
    audit,
    check_reproducible,
    fingerprint,
)
from rngstate.distributed import RankInfo, TopologyError, rank_info
from rngstate.errors import (
    BackendRegistrationError,
    InvalidSeedError,
    InvalidStateError,
    MissingBackendError,
    NoRootSeedError,
    RNGStateError,
    ScopeError,
    StateFileError,
)
from rngstate.scope import rng_scope
from rngstate.seeding import seed_everything
from rngstate.snapshot import RNGStateWarning, capture, restore
from rngstate.state import RNGState
from rngstate.stateful import stateful
from rngstate.storage import load, save
from rngstate.tracking import track

if TYPE_CHECKING:
    from rngstate import data as data
    from rngstate import numpy as numpy
    from rngstate import paddle as paddle
    from rngstate import torch as torch
    from rngstate.data import ResumableSampler as ResumableSampler
    from rngstate.data import worker_init_fn as worker_init_fn

__all__ = [
    "AuditReport",
    "BackendRegistrationError",
    "DeterminismReport",
    "InvalidSeedError",
    "InvalidStateError",
    "MissingBackendError",
    "NoRootSeedError",
    "NotReproducibleError",
    "RankInfo",
    "RNGState",
    "RNGStateError",
    "RNGStateWarning",
    "ReproducibilityReport",
    "ResumableSampler",
    "ScopeError",
    "StateFileError",
    "TopologyError",
    "__version__",
    "audit",
    "capture",
    "check_reproducible",
    "derive_seed",
    "deterministic",
    "fingerprint",
    "generator_state",
    "load",
    "rank_info",
    "register_kind",
    "register_stream",
    "restore",
    "rng_scope",
    "save",
    "seed_everything",
    "set_generator_state",
    "stateful",
    "track",
    "worker_init_fn",
]

def __getattr__(name: str) -> Any:
    # Framework helpers load on first use so `import rngstate` imports no framework.
    if name in ("torch", "numpy", "paddle", "data"):
        return importlib.import_module(f"rngstate.{name}")
    if name in ("ResumableSampler", "worker_init_fn"):  # rngstate.data, loaded on first use
        return getattr(importlib.import_module("rngstate.data"), name)
    raise AttributeError(f"module 'rngstate' has no attribute {name!r}")
