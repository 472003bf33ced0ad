"""``rng_scope``: a named substream for a block of code."""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Any

from rngstate.derive import split_path
from rngstate.errors import ScopeError
from rngstate.runtime import RUNTIME, Frame


class rng_scope(contextlib.ContextDecorator):  # noqa: N801  (a context manager named like one)
    """Run a block with its own random substream, derived from the root seed and the path.

    First entry seeds every active generator from ``derive(root, path, stream)``; exit keeps the
    substream's state and puts the outer state back bit-for-bit; re-entry continues.  Nested
    scopes compose paths (``"model/encoder"``).  Usable as a decorator.

    ``per_rank=True`` folds the distributed rank into the path (``"dropout/#rank3"``) for
    randomness that must differ per rank; by default every rank gets the same substream.
    ``per_rank=group`` folds the rank *within* a group instead: a ``ProcessGroup``, a 1-D
    ``DeviceMesh`` or ``(mesh, "tp")`` (``"dropout/#tp.1of2"``), so tensor-parallel ranks differ
    while data-parallel replicas share the substream.

    >>> import rngstate, torch
    >>> _ = rngstate.seed_everything(0)
    >>> with rngstate.rng_scope("encoder"):
    ...     encoder = torch.nn.Linear(4, 4)
    """

    def __init__(self, name: str, *, per_rank: Any = False) -> None:
        self.name = name
        self.per_rank = per_rank
        self._parts = split_path(name)
        self._path = "/".join(self._parts)  # the frame's path, not joined again per entry
        self._frames: list[Frame] = []  # one per active entry: the same scope may recurse

    def __enter__(self) -> rng_scope:
        per_rank = self.per_rank
        if per_rank is False or per_rank is None:
            self._frames.append(RUNTIME.enter(self._parts, self._path))
            return self
        # Looked up at entry: a decorator may be built before the group exists.
        from rngstate.distributed import group_component, rank_component

        last = rank_component() if per_rank is True else group_component(per_rank)
        self._frames.append(RUNTIME.enter((*self._parts, last), f"{self._path}/{last}"))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        frames = self._frames
        if not frames:
            raise ScopeError(f"{self!r} exited without being entered")
        RUNTIME.exit(frames[-1])
        frames.pop()

    @property
    def path(self) -> str:
        """The full path of the innermost active entry (``"model/encoder"``)."""
        return self._frames[-1].path if self._frames else "/".join(self._parts)

    def __repr__(self) -> str:
        return f"rng_scope({self.name!r}{'' if self.per_rank is False else f', per_rank={self.per_rank!r}'})"
