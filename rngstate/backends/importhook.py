"""Act on a framework at the moment it is imported, so import order never matters.

One meta-path finder sees the import of a watched top-level package (``torch``), lets the normal
finders locate it, and wraps that one loader's ``exec_module`` so that, once the package has
finished executing, each subscriber watching it is called: the runtime activates (seeds or
restores) its streams, ``rngstate.deterministic`` sets its switches.
"""

from __future__ import annotations

import importlib.util
import logging
import random
import sys
import threading
from collections.abc import Callable, Collection, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import importlib.machinery

logger = logging.getLogger(__name__)

Subscriber = tuple[Collection[str], Callable[[str], None]]


class _ImportWatcher:
    """A meta-path finder (duck-typed: importing importlib.abc costs several ms at import)."""

    def __init__(self) -> None:
        # (frameworks, callback); a framework collection may grow (registered streams).
        self.subscribers: list[Subscriber] = []
        self._busy = threading.local()

    def watches(self, name: str) -> bool:
        return any(name in frameworks for frameworks, _ in self.subscribers)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if "." in fullname or getattr(self._busy, "name", None) == fullname or not self.watches(fullname):
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
        subscribers = self.subscribers

        def exec_module(module: ModuleType) -> None:
            # Importing TensorFlow draws from Python's global `random`; put it back so that
            # importing a framework after seed_everything() shifts no stream.
            python_state = random.getstate()
            try:
                original(module)
            finally:
                del loader.exec_module  # type: ignore[attr-defined]  # back to the class method
            random.setstate(python_state)
            for frameworks, callback in list(subscribers):
                if fullname in frameworks:
                    callback(fullname)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


_watcher = _ImportWatcher()
_lock = threading.Lock()


def install(frameworks: Collection[str], on_import: Callable[[str], None]) -> None:
    """Call ``on_import(name)`` after each later import of a framework in ``frameworks``
    (idempotent for the same callback; the collection is read at each import)."""
    with _lock:
        if any(callback == on_import for _, callback in _watcher.subscribers):
            return
        _watcher.subscribers.append((frameworks, on_import))
        if _watcher not in sys.meta_path:
            sys.meta_path.insert(0, _watcher)
        logger.debug("import hook watches %s", sorted(frameworks))
