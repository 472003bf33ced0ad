"""Seed a framework at the moment it is imported, so import order never matters.

A meta-path finder sees the import of a watched top-level package (``torch``), lets the normal
finders locate it, and wraps that one loader's ``exec_module`` so that, once the package has
finished executing, the runtime activates (seeds or restores) its streams.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import random
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType

logger = logging.getLogger(__name__)


class _ImportWatcher(importlib.abc.MetaPathFinder):
    def __init__(self, frameworks: set[str], on_import: Callable[[str], None]) -> None:
        self.frameworks = frameworks
        self.on_import = on_import
        self._busy = threading.local()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.frameworks or getattr(self._busy, "name", None) == fullname:
            return None
        self._busy.name = fullname  # let the other finders answer for this name
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy.name = None
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return None
        original = loader.exec_module
        on_import = self.on_import

        def exec_module(module: ModuleType) -> None:
            # Importing TensorFlow draws from Python's global `random`; put it back so that
            # importing a framework after seed_everything() shifts no stream.
            python_state = random.getstate()
            try:
                original(module)
            finally:
                del loader.exec_module  # type: ignore[attr-defined]  # back to the class method
            random.setstate(python_state)
            on_import(fullname)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


_watcher: _ImportWatcher | None = None


def install(frameworks: set[str], on_import: Callable[[str], None]) -> None:
    """Install the watcher once (idempotent)."""
    global _watcher
    if _watcher is None:
        _watcher = _ImportWatcher(frameworks, on_import)
        sys.meta_path.insert(0, _watcher)
        logger.debug("import hook installed for %s", sorted(frameworks))
