"""What the docs show as an example's output, read from the Markdown sources.

A shown output is a ``text`` block right after a marker comment (invisible on the site and on
GitHub):

* ``<!-- output of: python examples/X.py -->``: the block is exactly what the command prints;
  tests/docs/test_outputs.py runs it.
* ``<!-- weights of: examples/resume_X.py -->``: the block's ``final weights`` hashes are those
  of the runs that tests/test_resume_X.py makes anyway (``ResumeExample.check_shown``).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT

MARKED = re.compile(r"<!-- (output|weights) of: (.+?) -->\n```text\n(.*?)```", re.S)
TEXT_BLOCK = re.compile(r"(?:<!-- (?:output|weights) of: .+? -->\n)?```text\n(.*?)```", re.S)
WEIGHTS = re.compile(r"final weights ([0-9a-f]{16})")


def pages() -> list[Path]:
    """The README and every Markdown page of the docs site."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def shown(kind: str) -> list[tuple[str, str, str]]:
    """``(page, what, text)`` for every block marked ``<!-- KIND of: WHAT -->``."""
    return [
        (str(page.relative_to(ROOT)), match.group(2), match.group(3))
        for page in pages()
        for match in MARKED.finditer(page.read_text())
        if match.group(1) == kind
    ]


def shown_weights(example: str) -> list[str]:
    """The ``final weights`` hashes shown for ``examples/<example>``, in page order."""
    return [
        digest
        for _, what, text in shown("weights")
        if what == f"examples/{example}"
        for digest in WEIGHTS.findall(text)
    ]


def unmarked_weights() -> list[str]:
    """Text blocks that show ``final weights`` without a marker saying which test checks them."""
    return [
        f"{page.relative_to(ROOT)}: {match.group(0)[:60]!r}"
        for page in pages()
        for match in TEXT_BLOCK.finditer(page.read_text())
        if WEIGHTS.search(match.group(1)) and not match.group(0).startswith("<!--")
    ]
