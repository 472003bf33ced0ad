"""Initialization by name: each layer's weights from a substream named by its qualified name.

``rngstate.torch.init_by_name``, ``rngstate.paddle.init_by_name`` and
``rngstate.keras.init_by_name`` re-initialize a built model layer by layer.  The substream of a
layer is the one named ``<current scope path>/#init/<qualified name>`` (the qualified name split
into components: ``"encoder.0"`` gives ``.../#init/encoder/0``).  User scope names cannot start
with ``#``, so these substreams never collide with a user's ``rng_scope``.  Each call starts
every layer's substream afresh from the derivation: calling it twice gives the same weights.

This module holds the framework-free parts; each framework's module imports only its framework.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from rngstate.derive import derive_bytes
from rngstate.errors import InitializationError, RNGStateWarning
from rngstate.runtime import RUNTIME

logger = logging.getLogger(__name__)

INIT_COMPONENT = "#init"  # reserved: split_path rejects user names starting with "#"
_SHOWN = 20  # names listed in a warning before "... and N more"


class Namer:
    """Seed material for each layer: (root seed, scope path at the call, qualified name).

    >>> import rngstate
    >>> _ = rngstate.seed_everything(0)
    >>> Namer().parts("encoder.0", ".")
    ('#init', 'encoder', '0')
    """

    def __init__(self) -> None:
        self.root = RUNTIME.require_root()
        self.base = (*RUNTIME.current_parts(), INIT_COMPONENT)

    def parts(self, qualified_name: str, separator: str) -> tuple[str, ...]:
        """Path components of the layer called ``qualified_name`` (``""``: the model itself)."""
        if not qualified_name:
            return self.base
        return (*self.base, *qualified_name.split(separator))

    def material(self, parts: tuple[str, ...], stream: str) -> bytes:
        """32 bytes for ``stream`` at ``parts``: what ``rng_scope`` would seed it with there."""
        return derive_bytes(self.root, parts, stream)

    def seed(self, parts: tuple[str, ...], stream: str) -> int:
        """A seed in [0, 2**31) for ``stream`` at ``parts`` (fits every framework's int seed)."""
        return int.from_bytes(self.material(parts, stream)[:4], "big") >> 1


def check_init_fn(init_fn: Callable[[Any], Any] | None, function: str) -> None:
    """Raise InitializationError unless ``init_fn`` is None or callable."""
    if init_fn is not None and not callable(init_fn):
        raise InitializationError(
            f"{function}: init_fn must be a function taking one module (like "
            f"model._init_weights), got {type(init_fn).__name__} {init_fn!r}"
        )


def wrong_model(function: str, expected: str, model: object) -> InitializationError:
    """The error for a model of the wrong type."""
    return InitializationError(f"{function} takes a {expected}, got {type(model).__name__}")


def report_untouched(function: str, names: Sequence[str], hint: str) -> None:
    """Warn (RNGStateWarning) naming the parameters that nothing re-initialized."""
    if not names:
        return
    shown = ", ".join(names[:_SHOWN])
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    message = (
        f"{function}: {len(names)} parameter(s) were not re-initialized and keep their current "
        f"values (uninitialized memory if the model was built without weights): {shown}{more}. "
        f"{hint}"
    )
    warnings.warn(message, RNGStateWarning, stacklevel=3)
