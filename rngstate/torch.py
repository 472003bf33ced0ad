"""PyTorch helpers: tracked generators (and, later, drop-in data loaders).

>>> import rngstate, rngstate.torch
>>> _ = rngstate.seed_everything(0)
>>> loader_rng = rngstate.torch.generator("train_loader")
"""

from __future__ import annotations

from typing import Any

from rngstate import backends
from rngstate.backends import torch as torch_backend
from rngstate.tracking import tracked_generator


def generator(name: str = "generator", *, device: str = "cpu") -> Any:
    """A ``torch.Generator`` seeded from the current scope path and ``name``, included in every
    capture; the same name in the same scope returns the same object.

    >>> import rngstate, rngstate.torch, torch
    >>> _ = rngstate.seed_everything(0)
    >>> g = rngstate.torch.generator("loader")
    >>> loader = torch.utils.data.DataLoader(range(8), shuffle=True, generator=g)
    """
    kind = backends.kind("torch.Generator")
    return tracked_generator(name, kind, lambda: torch_backend.new_generator(device))
