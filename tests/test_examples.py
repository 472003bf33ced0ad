"""The README's demo command works and tells the story."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_unused_layer_demo() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "unused_layer.py")],
        capture_output=True, text=True, timeout=300, check=True,
    )
    lines = result.stdout.splitlines()
    # The story in the demo's own words: which two models, which two ways of initializing.
    assert lines[:4] == [
        "Two models, both built after rngstate.seed_everything(42):",
        "  model A: encoder -> head",
        "  model B: the same, plus an unused nn.Linear defined between them (forward() never calls it)",
        "Does each layer of A start with the same weights as that layer of B?",
    ]
    table = [line.split(maxsplit=1) for line in lines[5:9]]
    assert [[name, verdicts.split()] for name, verdicts in table] == [
        ["layer", ["plain", "PyTorch", "with", "rngstate.torch.init_by_name(model)"]],
        ["encoder.0", ["identical", "identical"]],  # built before the extra layer
        ["encoder.2", ["identical", "identical"]],
        ["head", ["DIFFERENT", "identical"]],  # built after it: shifted, until init_by_name
    ]
    assert "so the unused layer shifts every layer built after it (here: head)." in lines


def run_example(name: str) -> str:
    command = [sys.executable, str(ROOT / "examples" / name)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=True).stdout


def test_quickstart_prints_what_the_readme_shows() -> None:
    lines = run_example("quickstart.py").splitlines()
    assert lines[0] == "encoder draws 0.4157073607790295"  # the README's output: derivation pinned
    assert lines[1] == "after restore, the same draw: True"
    assert lines[2].startswith("saved step0.rngstate fingerprint ") and len(lines[2].split()[-1]) == 12


@pytest.mark.slow
def test_dataset_generator_trap_and_its_fixes() -> None:
    assert run_example("dataset_generator.py").splitlines() == [
        "OwnGenerator     resumed run is DIFFERENT untracked generators: ['rng']",
        "TrackedGenerator resumed run is exact     untracked generators: none",
        "PerSampleSeed    resumed run is exact     untracked generators: none",
    ]


def test_readme_is_short_and_shows_what_the_examples_run() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert readme.split("```bash\n")[0].count("\n") == 5  # the title, one paragraph, then the commands
    commands = [block.split("\n```")[0] for block in readme.split("```bash\n")[1:3]]
    assert commands[0].startswith("python3 -m venv .venv && ")
    assert commands[0].endswith(".venv/bin/python examples/unused_layer.py")
    assert commands[1].endswith(".venv/bin/python -m pytest -q -n auto")  # every core: pytest-xdist
    assert all(len(line) <= 110 for command in commands for line in command.splitlines())
    quickstart = (ROOT / "examples" / "quickstart.py").read_text()
    code = quickstart[quickstart.index("import random") :]  # the example without its docstring
    assert f"```python\n{code}```" in readme
