"""The silent trap: a dataset that owns its generator breaks exact resume.

Three datasets add noise to every sample.  Each is loaded for two epochs without a stop, then
again stopped after 8 samples and resumed from a checkpoint in a fresh dataset and loader.

* ``np.random.default_rng(7)`` created in ``__init__``: the resumed run starts that generator
  over, so it draws other noise; ``untracked_generators`` (and ``rngstate.audit(dataset)``) say so.
* a tracked generator (``rngstate.numpy.generator``, or any via ``rngstate.track``): its state
  is in the checkpoint (enough when the data loads in the training process, ``num_workers=0``).
* a generator seeded per sample from ``rngstate.data.sample_seed``: exact with any
  ``num_workers`` (resumed here with 2 workers).

    python examples/dataset_generator.py
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import rngstate
import rngstate.numpy
import rngstate.torch
from rngstate.diagnostics import untracked_generators


class Noisy(torch.utils.data.Dataset[float]):
    def __len__(self) -> int:
        return 12


class OwnGenerator(Noisy):
    def __init__(self) -> None:
        self.rng = np.random.default_rng(7)  # the trap: rngstate never sees this generator

    def __getitem__(self, index: int) -> float:
        return index + float(self.rng.normal())


class TrackedGenerator(OwnGenerator):
    def __init__(self) -> None:
        self.rng = rngstate.numpy.generator("noise")  # tracked: in every capture()


class PerSampleSeed(Noisy):
    def __getitem__(self, index: int) -> float:
        rng = np.random.default_rng(rngstate.data.sample_seed("noise"))  # a function of the sample
        return index + float(rng.normal())


def train(make: Callable[[], Noisy], stop_at: int | None = None, checkpoint: dict[str, Any] | None = None,
          workers: int = 0) -> tuple[list[float], dict[str, Any] | None]:
    """Two epochs of noisy samples; stop after ``stop_at`` samples, or resume from ``checkpoint``."""
    rngstate.seed_everything(0)
    dataset = make()
    loader = rngstate.torch.DataLoader(dataset, name="train", batch_size=4, shuffle=True,
                                       num_workers=workers)
    start = 0
    if checkpoint is not None:
        rngstate.restore(checkpoint["rng"])
        loader.load_state_dict(checkpoint["loader"])
        start = checkpoint["epoch"]
    seen: list[float] = []
    for epoch in range(start, 2):
        loader.set_epoch(epoch)
        for batch in loader:
            seen += batch.tolist()
            if len(seen) == stop_at:
                return seen, {"rng": rngstate.capture().to_dict(), "loader": loader.state_dict(),
                              "epoch": epoch}
    return seen, None


def main() -> None:
    for make in (OwnGenerator, TrackedGenerator, PerSampleSeed):
        uninterrupted, _ = train(make)
        head, checkpoint = train(make, stop_at=8)
        tail, _ = train(make, checkpoint=checkpoint, workers=2 if make is PerSampleSeed else 0)
        verdict = "exact" if head + tail == uninterrupted else "DIFFERENT"
        print(f"{make.__name__:16} resumed run is {verdict:9} untracked generators: "
              f"{untracked_generators(make()) or 'none'}")


if __name__ == "__main__":
    main()
