"""Tracked generators: derived from the scope path, same object per key, captured."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import rngstate
from rngstate.errors import MissingBackendError, NoRootSeedError, ScopeError


def test_torch_generator_derived_from_path() -> None:
    rngstate.seed_everything(1)
    with rngstate.rng_scope("data"):
        gen = rngstate.torch.generator("loader")
        assert rngstate.torch.generator("loader") is gen
    values = torch.rand(4, generator=gen)
    rngstate.seed_everything(1)
    torch.rand(100)  # the global stream does not matter
    with rngstate.rng_scope("data"):
        again = rngstate.torch.generator("loader")
    assert again is gen  # re-seeding reseeds the same tracked object
    assert torch.equal(torch.rand(4, generator=again), values)
    assert rngstate.capture().generators == ("data/loader",)


def test_torch_generator_drives_dataloader_shuffle() -> None:
    def order() -> list[int]:
        rngstate.seed_everything(3)
        torch.rand(5)
        loader = torch.utils.data.DataLoader(
            list(range(10)), batch_size=None, shuffle=True, generator=rngstate.torch.generator("dl")
        )
        return [int(x) for x in loader]

    first = order()
    assert first == order() and sorted(first) == list(range(10))


def test_numpy_generators() -> None:
    rngstate.seed_everything(1)
    pcg = rngstate.numpy.generator("pcg")
    philox = rngstate.numpy.generator("philox", bit_generator="Philox")
    legacy = rngstate.numpy.random_state("legacy")
    first = (pcg.random(), philox.random(), legacy.rand())
    rngstate.seed_everything(1)
    assert (pcg.random(), philox.random(), legacy.rand()) == first


def test_track_user_objects() -> None:
    rngstate.seed_everything(1)
    rng = rngstate.track(random.Random(), "aug")
    gen = rngstate.track(torch.Generator(), "gen")
    bitgen = rngstate.track(np.random.default_rng(), "np")
    state = rngstate.capture()
    expected = (rng.random(), torch.rand(1, generator=gen).item(), bitgen.random())
    rngstate.restore(state)
    assert (rng.random(), torch.rand(1, generator=gen).item(), bitgen.random()) == expected


def test_track_errors() -> None:
    with pytest.raises(NoRootSeedError):
        rngstate.torch.generator("x")
    rngstate.seed_everything(1)
    rngstate.track(random.Random(), "taken")
    with pytest.raises(ScopeError, match="already tracks"):
        rngstate.track(random.Random(), "taken")
    with pytest.raises(MissingBackendError, match="cannot track"):
        rngstate.track(object(), "nope")
    with pytest.raises(ScopeError, match="already tracks a"):
        rngstate.numpy.generator("taken")
