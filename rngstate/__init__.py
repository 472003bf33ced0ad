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
from rngstate.storage import load, save
from rngstate.tracking import track

if TYPE_CHECKING:
    from rngstate import numpy as numpy
    from rngstate import torch as torch

__all__ = [
    "AuditReport",
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
    "load",
    "rank_info",
    "restore",
    "rng_scope",
    "save",
    "seed_everything",
    "track",
]

def __getattr__(name: str) -> Any:
    # Framework helpers load on first use so `import rngstate` imports no framework.
    if name in ("torch", "numpy"):
        return importlib.import_module(f"rngstate.{name}")
    raise AttributeError(f"module 'rngstate' has no attribute {name!r}")
