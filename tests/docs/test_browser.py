"""Every page of the docs site, in headless Chromium: diagrams drawn, code blocks shown, no
Markdown left raw, no console error. Skipped without Chromium (Debian: ``apt-get install
chromium``; .ci/run installs it). ``RNGSTATE_DOCS_SCREENSHOTS=folder`` keeps a screenshot of
each page (and of each page's first diagram) there, to look at."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.docs.browser import Browser, chromium_path

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("docs-site"),  # one site build for this file and test_inventory.py
    pytest.mark.skipif(chromium_path() is None, reason="needs Chromium (apt-get install chromium)"),
]


def pages(site: Path) -> list[str]:
    """Every page's path on the site ("" for the home page)."""
    return sorted(
        str(page.parent.relative_to(site)).replace(".", "") for page in site.rglob("index.html")
        if "assets" not in page.parts
    )


def test_every_page_renders_its_diagrams_and_code_without_errors(
    site: Path, served: str, tmp_path: Path
) -> None:
    folder = os.environ.get("RNGSTATE_DOCS_SCREENSHOTS")
    shots = Path(folder) if folder else None
    problems: dict[str, dict[str, object]] = {}
    drawn = 0
    with Browser(str(chromium_path()), tmp_path / "profile") as browser:
        for path in pages(site):
            expected = (site / path / "index.html").read_text().count('<pre class="mermaid">')
            page = browser.open(served + path + ("/" if path else ""))
            found = {
                "diagrams drawn": (page["diagrams"], expected),
                "diagram errors": page["diagram_errors"],
                "empty code blocks": page["empty_code_blocks"],
                "code wider than the page at 1280 px": page["overflowing_code"],
                "raw Markdown": page["raw_markdown"],
                "errors": page["errors"],
            }
            wrong = {k: v for k, v in found.items() if (v[0] != v[1] if k == "diagrams drawn" else v)}
            if wrong:
                problems[path or "home"] = wrong
            drawn += page["diagrams"]
            if shots:
                name = (path or "home").replace("/", "_")
                browser.screenshot(shots / f"{name}.png")
                if expected:
                    browser.screenshot(shots / f"{name}-diagram.png", scroll_to="div.mermaid")
    assert not problems, "\n".join(f"{page}: {wrong}" for page, wrong in problems.items())
    assert drawn >= 3  # the resume timeline, the per-sample seeds, the scope tree
