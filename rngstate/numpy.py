"""NumPy helpers: tracked ``np.random.Generator`` and ``RandomState`` objects.

>>> import rngstate, rngstate.numpy
>>> _ = rngstate.seed_everything(0)
>>> rng = rngstate.numpy.generator("noise")
>>> _ = rng.normal(size=3)
"""

from __future__ import annotations

import numpy as np

from rngstate import backends
from rngstate.tracking import tracked_generator


def generator(name: str = "generator", *, bit_generator: str = "PCG64") -> np.random.Generator:
    """An ``np.random.Generator`` seeded from the current scope path and ``name``, included in
    every capture; the same name in the same scope returns the same object.

    >>> import rngstate, rngstate.numpy
    >>> _ = rngstate.seed_everything(0)
    >>> rngstate.numpy.generator("a") is rngstate.numpy.generator("a")
    True
    """
    kind = backends.kind("numpy.Generator")
    bit_generator_type = getattr(np.random, bit_generator)
    rng = tracked_generator(name, kind, lambda: np.random.Generator(bit_generator_type()))
    assert isinstance(rng, np.random.Generator)
    return rng


def random_state(name: str = "random_state") -> np.random.RandomState:
    """A legacy ``np.random.RandomState`` seeded from the current scope path, tracked.

    >>> import rngstate, rngstate.numpy
    >>> _ = rngstate.seed_everything(0)
    >>> _ = rngstate.numpy.random_state("legacy").rand()
    """
    kind = backends.kind("numpy.RandomState")
    rng = tracked_generator(name, kind, np.random.RandomState)
    assert isinstance(rng, np.random.RandomState)
    return rng


__all__ = ["generator", "random_state"]
