"""Data loading that resumes exactly: sample order, per-sample randomness and worker seeds.

Framework-agnostic building blocks (no framework is imported here), one module per concern:

* :mod:`~rngstate.data.sampler`: :class:`ResumableSampler`, whose epoch order is a pure function
  of (root seed, scope path, name, epoch) and whose position saves and restores mid-epoch.
* :mod:`~rngstate.data.seeding`: the global CPU generators seeded per sample from (root seed,
  loader path, epoch, position), so a sample's randomness does not depend on ``num_workers``,
  on which worker loads it, on prefetching or on a resume; :func:`sample_seed`.
* :mod:`~rngstate.data.wrappers`: what the loaders wrap around the dataset and ``collate_fn``.
* :mod:`~rngstate.data.workers`: :func:`worker_init_fn` for plain framework loaders.
* :mod:`~rngstate.data.loader`: the mixin behind ``rngstate.torch.DataLoader`` and
  ``rngstate.paddle.DataLoader``; :mod:`~rngstate.data.passes`: a pass's bookkeeping, the
  iterable state and the batches of a pass.
* :mod:`rngstate.guard` (outside this package): the resume guard the loaders and trainer
  integrations record and check.
"""

from __future__ import annotations

from rngstate.data.sampler import ResumableSampler, SamplerState
from rngstate.data.seeding import preserve_streams, sample_seed
from rngstate.data.workers import worker_init_fn
from rngstate.errors import DataLoaderError

__all__ = [
    "DataLoaderError",
    "ResumableSampler",
    "SamplerState",
    "preserve_streams",
    "sample_seed",
    "worker_init_fn",
]
