"""Regenerate the committed state files in this folder (run from the repository root):

    .venv/bin/python tests/data/make_fixtures.py

- ``v1.rngstate``: a state file as rngstate 0.1.0 writes it (format 1, schema 1).
- ``expected.json``: what the program draws after restoring it.

The files are committed so that later rngstate versions are tested against bytes written by
this one: never regenerate them to make a failing test pass.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import rngstate
import rngstate.numpy
import rngstate.torch

HERE = Path(__file__).resolve().parent


def draws() -> dict[str, Any]:
    """Draws after restoring the fixture state (tracked generators are created here, so they
    take their pending state)."""
    loader = rngstate.torch.generator("loader")
    noise = rngstate.numpy.generator("noise")
    out: dict[str, Any] = {
        "python": [random.random(), random.gauss(0, 1)],
        "numpy": [np.random.rand(), np.random.standard_normal()],
        "torch": torch.rand(3).tolist(),
    }
    with rngstate.rng_scope("model/encoder"):
        out["scoped"] = [random.random(), np.random.rand(), *torch.rand(2).tolist()]
    out["loader"] = torch.rand(2, generator=loader).tolist()
    out["noise"] = noise.random(2).tolist()
    return out


def make_state() -> rngstate.RNGState:
    rngstate.seed_everything(1234)
    random.gauss(0, 1)
    np.random.standard_normal()  # leaves a cached Gaussian
    torch.randn(3)
    with rngstate.rng_scope("model"), rngstate.rng_scope("encoder"):
        torch.rand(4)
    torch.rand(5, generator=rngstate.torch.generator("loader"))
    rngstate.numpy.generator("noise").random(3)
    return rngstate.capture()


def main() -> None:
    state = make_state()
    rngstate.save(HERE / "v1.rngstate", state)
    rngstate.seed_everything(0)  # forget the tracked generators: restore leaves them pending
    from rngstate.runtime import RUNTIME

    RUNTIME.tracked.clear()
    rngstate.restore(state)
    expected = draws()
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"wrote fixtures with rngstate {rngstate.__version__}, torch {torch.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
