"""The README's demo command works and tells the story."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_unused_layer_demo() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "unused_layer.py")],
        capture_output=True, text=True, timeout=300, check=True,
    )
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines == [
        ["layer", "as", "built", "after", "init_by_name"],
        ["encoder.0", "identical", "identical"],  # built before the extra layer
        ["encoder.2", "identical", "identical"],
        ["head", "DIFFERENT", "identical"],  # built after it: shifted, until init_by_name
    ]
