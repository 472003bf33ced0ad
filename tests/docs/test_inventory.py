"""The API reference documents every public name and nothing else, read from the built site's
``objects.inv`` (what intersphinx and sphobjinv read).

Public: the names in a public module's ``__all__``, read from the source (importing the
facades would import their frameworks). Everything else in the inventory is a leak: a private
helper, a name a module merely imports, a module that is not public.
"""

from __future__ import annotations

import ast
import html
import re
import zlib
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.xdist_group("docs-site")  # one site build for this file and test_browser.py

PUBLIC_MODULES = [
    "rngstate",
    "rngstate.backends",
    "rngstate.backends.base",
    "rngstate.backends.objects",
    "rngstate.data",
    "rngstate.determinism",
    "rngstate.diagnostics",
    "rngstate.distributed",
    "rngstate.errors",
    "rngstate.guard",
    "rngstate.keras",
    "rngstate.lightning",
    "rngstate.numpy",
    "rngstate.paddle",
    "rngstate.stateful",
    "rngstate.tensorflow",
    "rngstate.tf_data",
    "rngstate.torch",
    "rngstate.tracing",
    "rngstate.transformers",
]


def source(module: str) -> Path:
    path = ROOT / module.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def public_names(module: str) -> list[str]:
    """The module's ``__all__``, a literal list of strings at its top level."""
    for node in ast.parse(source(module).read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            names = ast.literal_eval(node.value)
            assert isinstance(names, list) and all(isinstance(name, str) for name in names), module
            return names
    raise AssertionError(f"{module} has no __all__: a public module says what it exports")


def inventory(site: Path) -> dict[str, str]:
    """``{name: "domain:role priority"}`` from objects.inv: four header lines, then zlib."""
    header, _, body = (site / "objects.inv").read_bytes().partition(b"\n# The remainder")
    assert header.startswith(b"# Sphinx inventory version 2\n# Project: rngstate")
    entries = zlib.decompress(body.split(b"\n", 1)[1]).decode().splitlines()
    return {name: f"{role} {priority}" for name, role, priority, *_ in (e.split(" ", 4) for e in entries)}


def owner(name: str) -> str | None:
    """The public module that ``name`` belongs to (the longest matching one), None if none."""
    candidates = [m for m in PUBLIC_MODULES if name == m or name.startswith(m + ".")]
    return max(candidates, key=len, default=None)


@pytest.mark.slow
def test_every_public_name_is_documented(site: Path) -> None:
    listed = inventory(site)
    missing = []
    for module in PUBLIC_MODULES:
        if module not in listed:
            missing.append(module)
        for name in public_names(module):
            if name.startswith("__"):
                continue  # __version__: an attribute, not an API entry
            path = f"{module}.{name}"
            if source(path).exists():
                # rngstate.stateful, rngstate.tracing.compare: a function that shares its name
                # with its module is documented there, as rngstate.stateful.stateful.
                path = f"{path}.{name}"
            if path not in listed or listed[path].startswith("py:module"):
                missing.append(path)
    assert missing == []


@pytest.mark.slow
def test_nothing_private_is_listed(site: Path) -> None:
    leaks = []
    for name in inventory(site):
        module = owner(name)
        if module is None:
            leaks.append(f"{name} (not in a public module)")
            continue
        rest = name[len(module) + 1 :].split(".") if name != module else []
        if rest and rest[0] not in public_names(module):
            leaks.append(f"{name} (not in {module}.__all__)")
        elif any(part.startswith("_") for part in rest):
            leaks.append(f"{name} (private)")
    assert leaks == []


def signature(site: Path, page: str, name: str) -> str:
    """The signature the reference shows under ``name``'s heading, as plain text."""
    text = (site / page / "index.html").read_text()
    start = text.index("doc-signature", text.index(f'id="{name}"'))
    code = text[start : text.index("</code>", start)].split(">", 1)[1]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", code)).split())


def test_the_main_classes_are_documented_with_their_real_signature(site: Path) -> None:
    listed = inventory(site)
    classes = {
        "api": ["rngstate.RNGState"],
        "api/frameworks": [
            "rngstate.torch.DataLoader", "rngstate.paddle.DataLoader", "rngstate.paddle.RNGStateCallback",
        ],
        "api/integrations": [
            "rngstate.lightning.RNGStateCallback", "rngstate.keras.RNGStateCallback",
            "rngstate.transformers.RNGStateCallback", "rngstate.transformers.RNGStateMixin",
        ],
    }
    for page, names in classes.items():
        for name in names:
            assert listed.get(name) == "py:class 1", name
            assert "*args: object, **kwargs: object" not in signature(site, page, name), name
    for framework in ["torch", "paddle", "keras"]:
        function = f"rngstate.{framework}.init_by_name"
        assert listed.get(function) == "py:function 1", function
    assert signature(site, "api", "rngstate.RNGState") == "RNGState(data: dict[str, Any])"
    loader = signature(site, "api/frameworks", "rngstate.torch.DataLoader")
    assert loader.startswith("DataLoader( dataset: Any, batch_size: int | None = 1, shuffle:")
    assert "name: str" in loader
