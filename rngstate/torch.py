"""PyTorch helpers: tracked generators and a drop-in DataLoader that resumes exactly.

``import rngstate.torch`` does not import torch; ``rngstate.torch.DataLoader`` does, on first use.

>>> import rngstate, rngstate.torch
>>> _ = rngstate.seed_everything(0)
>>> loader_rng = rngstate.torch.generator("train_loader")
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rngstate import backends
from rngstate.backends import torch as torch_backend
from rngstate.data.loader import ResumableLoader, ResumingIterator, lazy_loader
from rngstate.data.seeding import preserve_streams
from rngstate.errors import DataLoaderError
from rngstate.tracking import tracked_generator

if TYPE_CHECKING:
    DataLoader: Any


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


_REJECTED = ("sampler", "batch_sampler", "generator")


def _build_dataloader() -> type:
    # torch is imported here, when the user first asks for rngstate.torch.DataLoader.
    torch_data = importlib.import_module("torch.utils.data")

    class DataLoader(ResumableLoader, torch_data.DataLoader):  # type: ignore[misc,name-defined]
        """A ``torch.utils.data.DataLoader`` whose order, per-sample randomness and position
        come from rngstate, so training resumes bit-for-bit, even mid-epoch.

        * The order of epoch ``e`` derives from (root seed, scope path, ``name``, ``e``).
        * Before each sample is loaded, Python ``random``, NumPy's global generator and torch's
          CPU generator (and paddle's, if imported) are seeded from (root seed, loader path,
          epoch, position in the epoch): results do not depend on ``num_workers``, on which
          worker loads a sample, on prefetching or on where training resumed.  A ``collate_fn``
          is seeded per batch the same way.  In the training process the outer generators are
          put back after each sample, so loading with ``num_workers=0`` does not shift dropout.
        * Creating an iterator does not touch the training generators (torch draws its workers'
          base seed from a private generator here).
        * ``set_epoch(e)``, ``state_dict()`` (plain data) and ``load_state_dict(sd)``: after a
          load, ``set_epoch`` of the saved epoch (or none) continues mid-epoch.
        * Under data parallelism each rank loads its shard, like ``DistributedSampler``
          (``rank``/``world_size`` default to the process group or ``RANK``/``WORLD_SIZE``;
          ``world_size=1`` loads everything on every rank).  A sample's randomness depends on
          its position in the whole epoch, so it is the same whatever the world size.

        Every other keyword goes to ``torch.utils.data.DataLoader``; ``sampler``,
        ``batch_sampler`` and ``generator`` are not accepted.  Map-style datasets only.

        >>> import rngstate, rngstate.torch, torch
        >>> _ = rngstate.seed_everything(0)
        >>> loader = rngstate.torch.DataLoader(torch.arange(10.0), name="train", batch_size=4,
        ...                                    shuffle=True)
        >>> loader.set_epoch(0)
        >>> first = next(iter(loader))
        >>> checkpoint = {"loader": loader.state_dict(), "rng": rngstate.capture().to_dict()}
        """

        def __init__(
            self,
            dataset: Any,
            *,
            name: str = "loader",
            batch_size: int | None = 1,
            shuffle: bool = False,
            num_workers: int = 0,
            collate_fn: Callable[[list[Any]], Any] | None = None,
            drop_last: bool = False,
            worker_init_fn: Callable[[int], Any] | None = None,
            rank: int | None = None,
            world_size: int | None = None,
            **kwargs: Any,
        ) -> None:
            for key in _REJECTED:
                if kwargs.get(key) is not None:
                    raise DataLoaderError(
                        f"rngstate.torch.DataLoader does not take {key}=: the order and the seeds "
                        "come from rngstate (name=, shuffle=). To keep your own sampler, use "
                        "torch.utils.data.DataLoader with rngstate.ResumableSampler and "
                        "worker_init_fn=rngstate.worker_init_fn"
                    )
            if isinstance(dataset, torch_data.IterableDataset):
                raise DataLoaderError(
                    "rngstate.torch.DataLoader needs a map-style dataset (__getitem__ and "
                    "__len__): an IterableDataset has no positions to resume from"
                )
            seeded, collate = self._rng_setup(
                dataset,
                name=name,
                shuffle=shuffle,
                batch_size=batch_size,
                drop_last=drop_last,
                rank=rank,
                world_size=world_size,
                collate_fn=collate_fn,
                worker_init_fn=worker_init_fn,
            )
            super().__init__(
                seeded,
                batch_size=batch_size,
                sampler=self._rng_sampler,
                num_workers=num_workers,
                collate_fn=collate,
                drop_last=drop_last,
                worker_init_fn=self._rng_worker_init,
                # torch draws each iterator's worker base seed from this generator instead of
                # the global one; rngstate seeds every sample itself, so its value is unused.
                generator=torch_backend.new_generator("cpu"),
                **kwargs,
            )

        def __iter__(self) -> Any:
            token = self._rng_begin()
            with preserve_streams():
                iterator = super().__iter__()
            return ResumingIterator(iterator, self._rng_sampler, token)

    return DataLoader


__getattr__ = lazy_loader(globals(), _build_dataloader)
