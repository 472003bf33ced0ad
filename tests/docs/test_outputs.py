"""Every example output the docs and the README show is what the example prints."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.docs.shown import shown, shown_weights, unmarked_weights

OUTPUTS = shown("output")


def run(command: str) -> str:
    """Run ``python examples/X.py ...`` as a user would, from the project folder."""
    argv = shlex.split(command)
    assert argv[0] == "python" and argv[1].startswith("examples/"), command
    result = subprocess.run(
        [sys.executable, *argv[1:]], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("page", "command", "text"), OUTPUTS, ids=[f"{p}:{c}" for p, c, _ in OUTPUTS])
def test_shown_output_is_what_the_example_prints(page: str, command: str, text: str) -> None:
    assert run(command) == text, f"{page} shows another output than `{command}` prints"


def test_the_quickstart_and_the_demo_outputs_are_shown() -> None:
    commands = {(page, command) for page, command, _ in OUTPUTS}
    assert {
        ("README.md", "python examples/quickstart.py"),
        ("docs/index.md", "python examples/quickstart.py"),
        ("docs/init-by-name.md", "python examples/unused_layer.py"),
        ("docs/exact-resume.md", "python examples/dataset_generator.py"),
    } <= commands


def test_every_shown_training_result_is_checked() -> None:
    # The resume tests compare these hashes with their own runs (ResumeExample.check_shown).
    assert unmarked_weights() == []
    for example in ("resume_torch.py", "resume_paddle.py", "resume_keras.py"):
        assert len(shown_weights(example)) == 4, example
