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
    assert "without rng_scope: encoder and head weights of the two models are DIFFERENT" in result.stdout
    assert "with rng_scope   : encoder and head weights of the two models are identical" in result.stdout
