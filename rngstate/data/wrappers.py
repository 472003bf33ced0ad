"""What the rngstate loaders wrap around the user's dataset and collate_fn."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from rngstate.data.seeding import LOCAL, SEEDER, batch_parts, sample_parts, seeded


class SampleKey(NamedTuple):
    """What a loader's sampler yields instead of a bare index: the index and everything its
    randomness derives from."""

    dataset_index: int
    epoch: int
    position: int  # position in the epoch's order, padded and before sharding across ranks
    batch_start: int  # position of the first sample of its batch (seeds collate_fn)
    root: int


class SeededDataset:
    """Wraps a map-style dataset: ``dataset[SampleKey]`` seeds Python, NumPy, torch and paddle
    from (root, loader path, epoch, position) and returns ``dataset[key.dataset_index]``.

    Built by the rngstate loaders; ``loader.dataset.dataset`` is the user's dataset, and other
    attributes are forwarded to it.  Plain indices are passed through unseeded.

    >>> import random, rngstate
    >>> from rngstate.data.wrappers import SampleKey, SeededDataset
    >>> ds = SeededDataset([10, 20, 30], ("loader",))
    >>> ds[SampleKey(dataset_index=1, epoch=0, position=0, batch_start=0, root=0)]
    20
    """

    def __init__(self, dataset: Any, parts: tuple[str, ...]) -> None:
        self.dataset = dataset
        self.parts = parts

    def __len__(self) -> int:
        return len(self.dataset)

    def _load(self, key: SampleKey) -> Any:
        root = key.root
        parts = sample_parts(self.parts, key.epoch, key.position)
        LOCAL.sample = (root, parts)
        LOCAL.batch = (root, key.epoch, key.batch_start)
        try:
            SEEDER.seed(root, parts)
            return self.dataset[key.dataset_index]
        finally:
            LOCAL.sample = None

    def __getitem__(self, key: Any) -> Any:
        if type(key) is not SampleKey:
            return self.dataset[key]
        saved = SEEDER.save()
        try:
            return self._load(key)
        finally:
            SEEDER.put_back(saved)

    def __getitems__(self, keys: list[Any]) -> list[Any]:
        """One batch (torch's fetcher calls this when it exists): in the training process the
        generators are saved and put back once per batch instead of once per sample."""
        saved = SEEDER.save()
        try:
            return [self._load(key) if type(key) is SampleKey else self.dataset[key] for key in keys]
        finally:
            SEEDER.put_back(saved)

    def __getattr__(self, name: str) -> Any:
        # Dunders are not forwarded: the user's own __getitems__ or __getstate__ must not be
        # found through here.  "dataset" missing means unpickling is still in progress.
        if name.startswith("__") or name in ("dataset", "parts"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return f"SeededDataset({self.dataset!r}, path={'/'.join(self.parts)!r})"


class SeededCollate:
    """Wraps a ``collate_fn`` so that randomness in it (mixup, cutmix) derives from (root,
    loader path, epoch, position of the batch's first sample), not from the worker.

    >>> from rngstate.data.wrappers import SeededCollate
    >>> SeededCollate(list, ("loader",))([1, 2])
    [1, 2]
    """

    def __init__(self, collate_fn: Callable[[list[Any]], Any], parts: tuple[str, ...]) -> None:
        self.collate_fn = collate_fn
        self.parts = parts

    def __call__(self, batch: list[Any]) -> Any:
        # The samples of this batch were just loaded by this thread; they left the batch's key.
        info = getattr(LOCAL, "batch", None)
        LOCAL.batch = None
        if info is None:
            return self.collate_fn(batch)
        root, epoch, batch_start = info
        with seeded(root, batch_parts(self.parts, epoch, batch_start)):
            return self.collate_fn(batch)
