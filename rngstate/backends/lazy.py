"""The plain form of a global generator its framework creates lazily (TensorFlow's global
``tf.random.Generator``, Keras's global ``SeedGenerator``).

Until the framework creates it, rngstate keeps what creation should use: nothing, a seed, or a
full state.  Snapshots are ``("live", *state)`` or ``("pending", None | ("seed", s) |
("state", *state))``; the plain form is ``{"mode": "unseeded" | "seed" | "state", ...}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rngstate import _check
from rngstate.backends.base import Plain

MODES = ("unseeded", "seed", "state")


def encode(snapshot: Any, encode_state: Callable[[tuple[Any, ...]], dict[str, Plain]]) -> Plain:
    """Plain form; ``encode_state(state)`` gives the fields of a full state.

    >>> encode(("pending", ("seed", 5)), lambda state: {})
    {'mode': 'seed', 'seed': 5}
    """
    if snapshot[0] == "live":
        return {"mode": "state", **encode_state(tuple(snapshot[1:]))}
    pending = snapshot[1]
    if pending is None:
        return {"mode": "unseeded"}
    if pending[0] == "seed":
        return {"mode": "seed", "seed": pending[1]}
    return {"mode": "state", **encode_state(tuple(pending[1:]))}


def decode(
    plain: Plain,
    where: str,
    seed_range: tuple[int, int],
    state_keys: tuple[str, ...],
    decode_state: Callable[[dict[str, Plain]], tuple[Any, ...]],
) -> Any:
    """Validate the plain form into a pending snapshot (applied when the generator exists).

    >>> decode({"mode": "unseeded"}, "s", (0, 9), ("state",), lambda plain: ())
    ('pending', None)
    """
    _check.mapping(plain, where)
    mode = _check.text(plain.get("mode"), f"{where}.mode", MODES)
    if mode == "unseeded":
        _check.mapping(plain, where, ("mode",))
        return ("pending", None)
    if mode == "seed":
        _check.mapping(plain, where, ("mode", "seed"))
        return ("pending", ("seed", _check.integer(plain["seed"], f"{where}.seed", *seed_range)))
    _check.mapping(plain, where, ("mode", *state_keys))
    return ("pending", ("state", *decode_state(plain)))
