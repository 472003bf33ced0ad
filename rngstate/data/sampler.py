"""ResumableSampler: an epoch order that is a pure function of (root seed, scope path, name,
epoch), and a position that saves and restores mid-epoch.

Orders are derived with :func:`rngstate.derive.derive_bytes` and turned into permutations only
through PCG64 raw bits, which NumPy keeps stable; golden values in ``tests/data`` pin them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rngstate import _check
from rngstate.derive import MAX_SEED, derive_bytes, split_path
from rngstate.distributed import TopologyError, group_rank, rank_info
from rngstate.errors import DataLoaderError, InvalidStateError
from rngstate.runtime import RUNTIME

STATE_FORMAT = "rngstate.sampler"
STATE_VERSION = 2  # 2 added world_size; version 1 (pre-release) is no longer read
_STATE_KEYS = ("format", "version", "path", "n", "shuffle", "epoch", "position", "root_seed", "world_size")


@dataclass(frozen=True)
class SamplerState:
    """A sampler's position as a value: what ``state_dict()`` holds, checked on the way in.

    >>> state = SamplerState("train", 10, True, 2, 4, 0, 1)
    >>> SamplerState.from_dict(state.to_dict()) == state
    True
    """

    path: str
    n: int
    shuffle: bool
    epoch: int
    position: int  # samples of `epoch` this rank has taken
    root_seed: int | None  # root seed of the iteration the position belongs to
    world_size: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data (json, ``torch.save`` with ``weights_only``, ``paddle.save``)."""
        return {"format": STATE_FORMAT, "version": STATE_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, state: Any, where: str = "SamplerState") -> SamplerState:
        """Validate a :meth:`to_dict`; raises :class:`~rngstate.errors.InvalidStateError`."""
        _check.mapping(state, where)
        version = _check.integer(state.get("version"), f"{where}: version", 2, 2**31)
        if version > STATE_VERSION:
            raise InvalidStateError(
                f"{where}: the state has version {version}, newer than {STATE_VERSION}; upgrade rngstate"
            )
        _check.mapping(state, where, _STATE_KEYS)
        _check.text(state["format"], f"{where}: format", (STATE_FORMAT,))
        world_size = _check.integer(state["world_size"], f"{where}: world_size", 1, 2**31)
        n = _check.integer(state["n"], f"{where}: n", 0, 2**63)
        if not isinstance(state["shuffle"], bool):
            raise InvalidStateError(f"{where}: shuffle must be a bool, got {_check.show(state['shuffle'])}")
        root = state["root_seed"]
        return cls(
            path=_check.text(state["path"], f"{where}: path"),
            n=n,
            shuffle=state["shuffle"],
            epoch=_check.integer(state["epoch"], f"{where}: epoch", 0, 2**63),
            position=_check.integer(state["position"], f"{where}: position", 0, share(n, world_size)),
            root_seed=None if root is None else _check.integer(root, f"{where}: root_seed", 0, MAX_SEED),
            world_size=world_size,
        )


def epoch_order(root: int, parts: tuple[str, ...], epoch: int, n: int) -> np.ndarray:
    # Sorting PCG64 raw words gives a uniform permutation and depends only on the bit
    # generator's stream, which NumPy keeps stable (Generator.permutation may change).
    material = derive_bytes(root, (*parts, "#order", str(epoch)), "order")
    bits = np.random.PCG64(np.random.SeedSequence(int.from_bytes(material, "big")))
    words = bits.random_raw(n)
    # The stable sort's order, at the cost of NumPy's default (SIMD) one: without equal words
    # (almost surely: 64 random bits each) every sort gives the same order; with some, stable.
    order = np.argsort(words)
    ordered = words[order]
    if n > 1 and (ordered[1:] == ordered[:-1]).any():
        order = np.argsort(words, kind="stable")
    order.flags.writeable = False
    return order


def check_count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DataLoaderError(f"{what} must be a non-negative int, got {_check.show(value)}")
    return value


class ResumableSampler:
    """A sampler whose order is a pure function of (root seed, scope path, name, epoch) and
    whose position can be saved and restored mid-epoch.

    Works as the ``sampler`` of ``torch.utils.data.DataLoader`` and of
    ``paddle.io.BatchSampler``.  Call ``set_epoch(epoch)`` before each epoch; without it, a new
    iteration continues an unfinished epoch or starts the next one.  ``state_dict()`` is plain
    data; after ``load_state_dict(sd)``, ``set_epoch`` of the saved epoch (or no call) resumes at
    the saved position and any other epoch starts at its beginning.

    Under data parallelism it shards like ``DistributedSampler``: ``rank`` and ``world_size``
    default to :func:`rngstate.distributed.rank_info` (the process group, else ``RANK``/``WORLD_SIZE``);
    with ``group=`` (a ``torch.distributed`` ProcessGroup or a 1-D DeviceMesh, such as the
    data-parallel dimension under tensor parallelism) they come from that group instead, so
    every tensor-parallel rank of one replica reads the same samples.  Every rank draws the
    same epoch order, pads it by repeating its start to a multiple of
    ``world_size`` and takes every ``world_size``-th index from its rank.  Positions count this
    rank's samples.  Pass ``world_size=1`` to give every rank the whole dataset.

    The sampler counts what it has *yielded*.  A DataLoader with workers prefetches, so record
    the samples your loop consumed and resume with ``set_epoch(epoch, start=consumed)`` -- or use
    ``rngstate.torch.DataLoader`` / ``rngstate.paddle.DataLoader``, which count consumed
    batches for you.

    >>> import rngstate
    >>> _ = rngstate.seed_everything(0)
    >>> sampler = rngstate.ResumableSampler(10, name="train")
    >>> sampler.set_epoch(3)
    >>> it = iter(sampler); first = [next(it) for _ in range(4)]
    >>> sd = sampler.state_dict()
    >>> again = rngstate.ResumableSampler(10, name="train"); again.load_state_dict(sd)
    >>> again.set_epoch(3); list(again) == list(sampler.order(3))[4:]
    True
    """

    def __init__(
        self,
        n: int,
        *,
        name: str = "sampler",
        shuffle: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        group: Any = None,
    ) -> None:
        self.n = check_count(n, "ResumableSampler: n")
        if not isinstance(shuffle, bool):
            raise DataLoaderError(f"ResumableSampler: shuffle must be a bool, got {_check.show(shuffle)}")
        self.shuffle = shuffle
        self.rank, self.world_size = shard(rank, world_size, group)
        self.length = share(self.n, self.world_size)
        self.parts = RUNTIME.current_parts() + split_path(name)
        self.path = "/".join(self.parts)
        self.epoch = 0
        self.position = 0  # samples of `epoch` already taken (yielded, or consumed by a loader)
        self._pinned = False  # set_epoch chose (epoch, position) for the next iteration
        self._begun = False  # an iteration started (or a state was loaded): auto-advance allowed
        self._restored: tuple[int, int | None] | None = None  # (epoch, root) of a loaded state
        self._root: int | None = None  # root seed of the current iteration
        self._iteration = 0
        self._start = 0
        self._cache: tuple[int, int, np.ndarray] | None = None  # (root, epoch, order)

    # -- the order --------------------------------------------------------------------------

    def order(self, epoch: int | None = None) -> np.ndarray:
        """The (read-only) index order of ``epoch`` (default: the current one).

        >>> import rngstate
        >>> _ = rngstate.seed_everything(0)
        >>> sorted(rngstate.ResumableSampler(5).order(0).tolist())
        [0, 1, 2, 3, 4]
        """
        epoch = self.epoch if epoch is None else check_count(epoch, "epoch")
        root = RUNTIME.require_root()
        cache = self._cache
        if cache is not None and cache[0] == root and cache[1] == epoch:
            return cache[2]
        order = (
            epoch_order(root, self.parts, epoch, self.n)
            if self.shuffle
            else np.arange(self.n, dtype=np.int64)
        )
        if self.world_size > 1 and self.n:
            order = order[self.global_positions(np.arange(self.length)) % self.n]
        order.flags.writeable = False
        self._cache = (root, epoch, order)
        return order

    def global_positions(self, positions: Any) -> Any:
        """Position in the padded epoch order of this rank's ``positions`` (an int or array):
        per-sample seeds derive from it, so a sample's randomness does not depend on the
        world size."""
        return positions * self.world_size + self.rank

    # -- the cursor -------------------------------------------------------------------------

    def _min_remaining(self) -> int:
        """Fewer samples left than this means the epoch is finished (drop_last loaders)."""
        return 1

    def _finished(self) -> bool:
        return self.length - self.position < self._min_remaining()

    def _plan(self) -> tuple[int, int]:
        """(epoch, start) of the next iteration, without committing to it."""
        if not self._pinned and self._begun and self._finished():
            return self.epoch + 1, 0
        return self.epoch, self.position

    def set_epoch(self, epoch: int, start: int | None = None) -> None:
        """Make the next iteration yield ``epoch`` from position ``start``.

        ``start=None`` means 0, except right after :meth:`load_state_dict` for the saved epoch,
        where it keeps the saved position.
        """
        epoch = check_count(epoch, "set_epoch: epoch")
        if start is None:
            restored = self._restored
            start = self.position if restored is not None and restored[0] == epoch else 0
        start = check_count(start, "set_epoch: start")
        if start > self.length:
            raise DataLoaderError(
                f"set_epoch: start={start} is past the end of the epoch ({self.length} samples)"
            )
        if self._restored is not None and self._restored[0] != epoch:
            self._restored = None  # another epoch: the saved root no longer matters
        self.epoch, self.position, self._pinned = epoch, start, True

    def _begin(self) -> int:
        """Commit to the next iteration: returns its token.  Checks the root seed."""
        self.epoch, self.position = self._plan()
        root = RUNTIME.require_root()
        restored = self._restored
        if restored is not None and self.position > 0 and restored[1] is not None and restored[1] != root:
            raise InvalidStateError(
                f"{self.path}: the saved position {self.position} of epoch {self.epoch} belongs to "
                f"root seed {restored[1]}, but the root seed is now {root}; restore the RNG state "
                "saved with it (rngstate.restore) before iterating, or set_epoch() another epoch"
            )
        self._pinned = False
        self._begun = True
        self._restored = None
        self._root = root
        self._start = self.position
        self._iteration += 1
        self.order(self.epoch)  # computed now, so the first batch is not late
        return self._iteration

    def __len__(self) -> int:
        _epoch, start = self._plan()
        return self.length - start

    def __iter__(self) -> Iterator[int]:
        token = self._begin()
        return self._yield_indices(token, self.order(self.epoch), self._start)

    def _yield_indices(self, token: int, order: np.ndarray, start: int) -> Iterator[int]:
        for position in range(start, self.length):
            if self._iteration != token:  # a newer iteration took over
                return
            self.position = position + 1
            yield int(order[position])

    # -- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The position as plain data (json, ``torch.save`` with ``weights_only``,
        ``paddle.save``).

        >>> import json, rngstate
        >>> _ = rngstate.seed_everything(0)
        >>> state = json.loads(json.dumps(rngstate.ResumableSampler(4, name="s").state_dict()))
        >>> state["path"], state["epoch"], state["position"], state["root_seed"]
        ('s', 0, 0, 0)
        """
        root = self._root if self._root is not None else RUNTIME.root
        return SamplerState(
            self.path, self.n, self.shuffle, self.epoch, self.position, root, self.world_size
        ).to_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the next iteration (or ``set_epoch`` of the saved
        epoch) continues at the saved position.  Raises :class:`~rngstate.errors.InvalidStateError`
        when the state is malformed or belongs to another sampler."""
        where = f"{self.path}.load_state_dict"
        saved = SamplerState.from_dict(state, where)
        problems = []
        if saved.path != self.path:
            problems.append(f"it was saved by {saved.path!r}, this is {self.path!r}")
        if saved.n != self.n:
            problems.append(f"it covers {saved.n} samples, this dataset has {self.n}")
        if saved.shuffle != self.shuffle:
            problems.append(f"it was saved with shuffle={saved.shuffle}, this has shuffle={self.shuffle}")
        if problems:
            raise InvalidStateError(f"{where}: the state does not belong here: " + "; ".join(problems))
        position = saved.position
        if saved.world_size != self.world_size:
            # Positions count one rank's share; another sharding puts other samples there.
            # (Any rank's state fits every rank: data parallel ranks consume the same number.)
            # At an epoch boundary nothing is shared out yet, so the state carries over.
            if position == share(saved.n, saved.world_size):
                position = self.length
            elif position != 0:
                raise TopologyError(
                    f"{where}: the state was saved with world_size={saved.world_size}, this job has "
                    f"world_size={self.world_size}; a mid-epoch position cannot move to another "
                    f"sharding. Resume with the same world size, or start the next epoch: "
                    f"set_epoch({saved.epoch + 1}) (or pass world_size={saved.world_size} to keep "
                    "the old sharding)"
                )
        self.epoch, self.position = saved.epoch, position
        self._restored = (saved.epoch, saved.root_seed)
        self._pinned = False
        self._begun = True  # a finished saved epoch moves on to the next one
        self._iteration += 1  # iterators started before the load stop counting

    def __repr__(self) -> str:
        shard = f", rank={self.rank}, world_size={self.world_size}" if self.world_size > 1 else ""
        return (
            f"{type(self).__name__}(n={self.n}, path={self.path!r}, shuffle={self.shuffle}{shard}, "
            f"epoch={self.epoch}, position={self.position})"
        )


def share(n: int, world_size: int) -> int:
    """Samples per rank and epoch: the epoch is padded to a multiple of ``world_size``."""
    return -(-n // world_size)


def shard(rank: Any, world_size: Any, group: Any = None) -> tuple[int, int]:
    """Validated (rank, world_size); from ``group`` when given, else what is not given comes
    from the job (rank_info)."""
    if group is not None:
        if rank is not None or world_size is not None:
            raise DataLoaderError("pass either group= or rank=/world_size=, not both")
        rank, world_size = group_rank(group)
    if rank is None or world_size is None:
        info = rank_info()
        if world_size is None:
            world_size = info.world_size
        if rank is None:
            if world_size == 1:
                rank = 0
            elif world_size == info.world_size:
                rank = info.rank
            else:
                raise DataLoaderError(
                    f"world_size={world_size} differs from the job's ({info.world_size}, from "
                    f"{info.source}): pass rank= as well"
                )
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise DataLoaderError(f"world_size must be a positive int, got {_check.show(world_size)}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise DataLoaderError(f"rank must be an int in [0, world_size={world_size}), got {_check.show(rank)}")
    return rank, world_size


def sampler_at(
    parts: tuple[str, ...], n: int, *, shuffle: bool, rank: int, world_size: int
) -> ResumableSampler:
    """A sampler whose path is ``parts`` (a loader's), whatever scope is open now."""
    sampler = ResumableSampler(n, name="loader", shuffle=shuffle, rank=rank, world_size=world_size)
    sampler.parts, sampler.path = parts, "/".join(parts)
    return sampler
