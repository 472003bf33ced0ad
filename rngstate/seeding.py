"""``seed_everything``: one root seed for every framework, including ones imported later."""

from __future__ import annotations

import logging
import os

from rngstate import _check, backends
from rngstate.backends import importhook
from rngstate.derive import MAX_SEED, check_seed, derive_bytes, derived_int, split_path
from rngstate.errors import NoRootSeedError
from rngstate.runtime import RUNTIME

logger = logging.getLogger(__name__)
SEED_VARIABLE = "RNGSTATE_SEED"


def _seed_from_environment() -> int:
    text = os.environ.get(SEED_VARIABLE)
    if text is None:
        raise NoRootSeedError(
            f"seed_everything() got no seed and {SEED_VARIABLE} is not set: pass a seed, "
            f"e.g. seed_everything(42), or run under `rngstate run --seed 42 -- ...`"
        )
    return _check.seed_text(text, SEED_VARIABLE, MAX_SEED)


def seed_everything(seed: int | None = None, *, deterministic: bool = False) -> int:
    """Seed Python, NumPy and every imported framework, and make ``seed`` the root seed.

    Frameworks imported later are seeded at import, so import order never matters.  The seed
    is exported as ``RNGSTATE_SEED`` for child processes and logged at INFO level.
    ``deterministic=True`` (or ``RNGSTATE_DETERMINISTIC=1``, set by ``rngstate run
    --deterministic``) also calls :func:`rngstate.deterministic`.  Re-seeding
    forgets every substream and reseeds tracked generators.

    >>> import random, rngstate
    >>> rngstate.seed_everything(8)
    8
    >>> a = random.random(); _ = rngstate.seed_everything(8); a == random.random()
    True
    """
    seed = check_seed(_seed_from_environment() if seed is None else seed)
    backends.load_entry_points()  # third-party streams are seeded too (once per process)
    RUNTIME.seed_all(seed)
    importhook.install(backends.watched_frameworks(), RUNTIME.on_framework_import)
    os.environ[SEED_VARIABLE] = str(seed)
    logger.info("rngstate: root seed %d (streams: %s)", seed, ", ".join(RUNTIME.active))
    if deterministic or os.environ.get("RNGSTATE_DETERMINISTIC") == "1":  # set by `rngstate run`
        from rngstate.determinism import deterministic as set_deterministic

        set_deterministic(True)
    return seed


def derive_seed(path: str, root: int | None = None) -> int:
    """Return a stable seed in [0, 2**63) for the scope ``path`` under ``root``.

    ``root=None`` uses the root seed set by :func:`rngstate.seed_everything`.  Use it to seed
    things rngstate does not manage, for example ``tf.data`` shuffles.

    >>> derive_seed("data/shuffle", root=0) == derive_seed("data/shuffle", root=0)
    True
    """
    root = RUNTIME.require_root() if root is None else check_seed(root)
    return derived_int(derive_bytes(root, split_path(path), "seed"), 63)
