"""Small pieces the trainer integrations share (no framework is imported here)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOADER_MODULES = ("rngstate.torch", "rngstate.paddle")


def is_rngstate_loader(obj: Any) -> bool:
    """True for an ``rngstate.torch.DataLoader`` or ``rngstate.paddle.DataLoader`` (or a
    subclass), recognised without importing either framework."""
    classes = type(obj).__mro__
    return any(klass.__module__ in LOADER_MODULES and klass.__qualname__ == "DataLoader" for klass in classes)


def replace_folder(folder: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(partial)`` on a fresh sibling folder, then put it in place of ``folder``:
    a crash while writing leaves the previous backup whole.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "backup"
    >>> replace_folder(target, lambda p: (p / "a.txt").write_text("1"))
    >>> [p.name for p in target.iterdir()]
    ['a.txt']
    """
    partial, old = folder.with_name(folder.name + ".partial"), folder.with_name(folder.name + ".old")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write(partial)
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(partial, folder)
    shutil.rmtree(old, ignore_errors=True)


def read_progress(folder: Path, fmt: str, version: int, error: type[Exception]) -> dict[str, Any]:
    """The ``progress.json`` of a backup written with ``{"format": fmt, "version": version}``;
    ``error`` (naming ``folder`` and what to do) for anything else."""
    try:
        progress = json.loads((folder / "progress.json").read_text())
    except (OSError, ValueError) as exc:
        raise error(f"{folder}: unreadable backup ({exc}); delete the folder to start over") from None
    if not isinstance(progress, dict) or progress.get("format") != fmt:
        raise error(f"{folder}: not an {fmt.rpartition('.')[0]} backup (progress.json)")
    if progress.get("version", 0) > version:
        raise error(f"{folder}: written by a newer rngstate; upgrade rngstate")
    return progress
