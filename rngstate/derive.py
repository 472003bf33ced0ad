"""The stable derivation: (root seed, scope path, stream) -> seed material.

Reproducibility policy: for a given ``DERIVATION_VERSION`` the output never changes across
processes, machines, Python versions or ``PYTHONHASHSEED``.  It is BLAKE2b over a
length-prefixed encoding, so ``("ab", "c")`` and ``("a", "bc")`` never collide.  Golden
vectors in ``tests/test_derive.py`` pin it; changing it means bumping the version.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from rngstate._check import show
from rngstate.errors import InvalidSeedError, ScopeError

DERIVATION_VERSION = 1
_PERSONALIZATION = b"rngstate.derive1"  # 16 bytes, the BLAKE2b maximum; names the version
MAX_SEED = 2**32 - 1
MAX_NAME_LENGTH = 256
MAX_PATH_DEPTH = 64


def check_seed(seed: object) -> int:
    """Return ``seed`` as an ``int`` in [0, 2**32 - 1] or raise :class:`InvalidSeedError`.

    >>> check_seed(42)
    42
    """
    if isinstance(seed, bool):
        raise InvalidSeedError(f"seed must be an integer in [0, {MAX_SEED}], got the bool {seed!r}")
    try:
        value = seed.__index__()  # type: ignore[attr-defined]  # accepts int and np.integer
    except (AttributeError, TypeError):
        raise InvalidSeedError(
            f"seed must be an integer in [0, {MAX_SEED}], got {type(seed).__name__} {show(seed)}"
        ) from None
    if not 0 <= value <= MAX_SEED:
        raise InvalidSeedError(f"seed must be an integer in [0, {MAX_SEED}], got {show(value)}")
    return int(value)


# Components rngstate adds for per-rank scopes: "#rank3" (global rank), "#tp.1of2" (rank 1 of a
# group of 2, the mesh dimension "tp"), "#group.1of2" (a ProcessGroup).
_RANK_PART = re.compile(r"#(rank[0-9]+|[A-Za-z_][A-Za-z0-9_]*\.[0-9]+of[0-9]+)\Z")


def is_rank_part(part: str) -> bool:
    """True for the path components of per-rank and per-group scopes (``"#rank3"``, ``"#tp.1of2"``)."""
    return _RANK_PART.match(part) is not None


def split_path(path: str) -> tuple[str, ...]:
    """Split a scope path such as ``"model/encoder"`` into checked components.

    >>> split_path("model/encoder")
    ('model', 'encoder')
    """
    if not isinstance(path, str):
        raise ScopeError(f"a scope name must be a str, got {type(path).__name__} {path!r}")
    parts = tuple(path.split("/"))
    if len(parts) > MAX_PATH_DEPTH:
        raise ScopeError(f"scope path {path[:80]!r} is deeper than {MAX_PATH_DEPTH} components")
    for part in parts:
        if not part:
            raise ScopeError(
                f"scope name {path!r} has an empty component; use non-empty names joined by '/'"
            )
        if len(part) > MAX_NAME_LENGTH:
            raise ScopeError(f"scope name component {part[:40]!r}... is longer than {MAX_NAME_LENGTH}")
        if not part.isprintable():
            raise ScopeError(f"scope name {path!r} contains control or non-printable characters")
        if part[0] == "#" and not is_rank_part(part):
            # "#" starts rngstate's own components ("#rank3" of per-rank scopes)
            raise ScopeError(f"scope name component {part!r} may not start with '#' (reserved)")
    return parts


def derive_bytes(root: int, path: Sequence[str], stream: str) -> bytes:
    """Return 32 bytes of seed material for ``stream`` at ``path`` under ``root``.

    >>> len(derive_bytes(0, ("encoder",), "torch.cpu"))
    32
    """
    digest = hashlib.blake2b(digest_size=32, person=_PERSONALIZATION)
    digest.update(root.to_bytes(8, "big"))
    digest.update(len(path).to_bytes(4, "big"))
    for part in (*path, stream):
        encoded = part.encode("utf-8")
        digest.update(len(encoded).to_bytes(4, "big"))
        digest.update(encoded)
    return digest.digest()


class PathHead:
    """:func:`derive_bytes` for many paths that differ only in their last component (a
    loader's samples differ only in their position): the rest is hashed once.

    >>> head = PathHead(0, ("loader", "#sample", "0"))
    >>> head.derive("7", "sample") == derive_bytes(0, ("loader", "#sample", "0", "7"), "sample")
    True
    """

    def __init__(self, root: int, head: Sequence[str]) -> None:
        digest = hashlib.blake2b(digest_size=32, person=_PERSONALIZATION)
        digest.update(root.to_bytes(8, "big"))
        digest.update((len(head) + 1).to_bytes(4, "big"))
        for part in head:
            encoded = part.encode("utf-8")
            digest.update(len(encoded).to_bytes(4, "big") + encoded)
        self._digest = digest

    def derive(self, last: str, stream: str) -> bytes:
        """``derive_bytes(root, (*head, last), stream)``."""
        digest = self._digest.copy()
        part, name = last.encode("utf-8"), stream.encode("utf-8")
        digest.update(len(part).to_bytes(4, "big") + part + len(name).to_bytes(4, "big") + name)
        return digest.digest()


def derived_int(material: bytes, bits: int) -> int:
    """The first ``bits`` bits of derived ``material`` as a non-negative integer (big-endian):
    the one way seed material becomes a backend's seed.

    >>> derived_int(bytes([0b10110000]) + bytes(31), 3)
    5
    """
    size = -(-bits // 8)
    return int.from_bytes(material[:size], "big") >> (8 * size - bits)
