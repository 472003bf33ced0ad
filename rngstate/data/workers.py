"""Seeding DataLoader worker processes: rngstate.worker_init_fn for plain framework loaders,
and the worker_init_fn the rngstate loaders install."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from rngstate.data.seeding import SEEDER, scope_root
from rngstate.derive import MAX_SEED, check_seed, derive_bytes
from rngstate.errors import DataLoaderError, NoRootSeedError, RNGStateError
from rngstate.runtime import RUNTIME


def _framework_worker_info() -> tuple[str, Any] | None:
    # Only modules already loaded are consulted: a worker of torch's DataLoader has
    # torch.utils.data loaded, one of Paddle's has paddle.io.
    torch_data = sys.modules.get("torch.utils.data")
    if torch_data is not None:
        info = torch_data.get_worker_info()
        if info is not None:
            return "torch", info
    paddle_io = sys.modules.get("paddle.io")
    if paddle_io is not None:
        info = paddle_io.get_worker_info()
        if info is not None:
            return "paddle", info
    return None


def _worker_root() -> int:
    if RUNTIME.root is not None:  # forked workers inherit it
        return RUNTIME.root
    text = os.environ.get("RNGSTATE_SEED")  # spawned workers: seed_everything exported it
    if text is not None:
        try:
            return check_seed(int(text.strip()))
        except (ValueError, RNGStateError):
            raise NoRootSeedError(f"RNGSTATE_SEED={text!r} is not an integer in [0, {MAX_SEED}]") from None
    raise NoRootSeedError(
        "worker_init_fn: no root seed in this worker; call rngstate.seed_everything(seed) in the "
        "main process before creating the DataLoader iterator"
    )


def worker_init_fn(worker_id: int) -> None:
    """Seed Python ``random``, NumPy, torch and paddle in a DataLoader worker.

    Pass it as ``worker_init_fn=rngstate.worker_init_fn`` to ``torch.utils.data.DataLoader`` or
    ``paddle.io.DataLoader``.  Each worker's generators derive from the root seed, the seed the
    framework drew for this epoch's workers and ``worker_id``, so every worker and every epoch
    differs (NumPy included, which forked workers otherwise share) and a rerun repeats.  Scopes
    opened in the worker (``rngstate.rng_scope`` in ``__getitem__``) derive from the worker's
    seed too, so they also differ across workers and epochs.

    Randomness then depends on ``num_workers``; for randomness per sample, independent of the
    workers and resumable mid-epoch, use ``rngstate.torch.DataLoader`` or
    ``rngstate.paddle.DataLoader``.

    >>> import rngstate, torch
    >>> _ = rngstate.seed_everything(0)
    >>> loader = torch.utils.data.DataLoader(
    ...     range(8), num_workers=2, worker_init_fn=rngstate.worker_init_fn,
    ...     generator=rngstate.torch.generator("loader"))
    """
    found = _framework_worker_info()
    if found is None:
        raise DataLoaderError(
            "worker_init_fn must be called by a torch.utils.data.DataLoader or "
            "paddle.io.DataLoader worker (pass it as worker_init_fn=rngstate.worker_init_fn)"
        )
    framework, info = found
    # torch's info.seed is base_seed + worker_id, Paddle's is base_seed: both change per epoch.
    parts = ("#worker", framework, str(int(info.seed)), str(int(worker_id)))
    # Scopes too: the worker inherited its parent's substreams, which every worker would repeat.
    RUNTIME.rebase(SEEDER.seed(_worker_root(), parts))


class WorkerScopes:
    """The ``worker_init_fn`` ``rngstate.torch.DataLoader`` hands its workers (the loader's
    own attribute stays the user's function): bases the worker's scopes on its own seed, which
    torch derived from (root, loader path, epoch, worker id), then calls the user's function."""

    def __init__(self, user_fn: Callable[[int], Any] | None) -> None:
        self.user_fn = user_fn

    def __call__(self, worker_id: int) -> None:
        found = _framework_worker_info()
        if found is not None:
            framework, info = found
            key = derive_bytes(_worker_root(), ("#worker", framework, str(int(info.seed))), "scopes")
            RUNTIME.rebase(scope_root(key))
        if self.user_fn is not None:
            self.user_fn(worker_id)


class LoaderWorkerInit:
    """The ``worker_init_fn`` rngstate.paddle.DataLoader installs: seeds the worker's
    generators for code outside ``__getitem__`` from (root, loader path, epoch, worker id),
    then calls the user's function.  (Paddle draws its workers' base seed from NumPy's global
    generator; torch's loader derives that base seed instead.)"""

    def __init__(self, user_fn: Callable[[int], Any] | None, parts: tuple[str, ...]) -> None:
        self.user_fn = user_fn
        self.parts = parts
        self.root = 0
        self.epoch = 0

    def __call__(self, worker_id: int) -> None:
        SEEDER.seed(self.root, (*self.parts, "#worker", str(self.epoch), str(int(worker_id))))
        if self.user_fn is not None:
            self.user_fn(worker_id)
