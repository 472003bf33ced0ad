"""mkdocs hook: ``objects.inv`` lists what the API reference documents, under its public names.

mkdocstrings also enters every other import path of a documented object, with priority 2
(``rngstate.stateful.capture`` for ``rngstate.capture``, ``rngstate.paddle_fit.RNGStateCallback``
for ``rngstate.paddle.RNGStateCallback``): internal paths that intersphinx users should not
learn. They are dropped after the build; tests/docs/test_inventory.py checks the result.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any


def on_post_build(config: Any, **kwargs: Any) -> None:
    path = Path(config["site_dir"]) / "objects.inv"
    if not path.exists():
        return
    *header, body = path.read_bytes().split(b"\n", 4)
    entries = zlib.decompress(body).decode().splitlines()
    # "name domain:role priority uri display": names have no spaces.
    kept = [entry for entry in entries if entry.split(" ", 3)[2] != "2"]
    path.write_bytes(b"\n".join(header) + b"\n" + zlib.compress(("\n".join(kept) + "\n").encode()))
