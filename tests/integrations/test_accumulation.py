"""Exact or loud at the seams of training (issue 24): gradient accumulation 1/2/3, epochs a
multiple of the accumulation or not (a shorter last accumulation), resumed at every kind of
step (the first, mid-epoch, right before the epoch's short last update, at the epoch's end),
``max_steps`` ending mid-epoch, ``drop_last``, an evaluation inside the epoch, two resumes in a
row.  Per trainer, one process runs every uninterrupted reference (saving a checkpoint at each
optimizer step) and another resumes from each listed checkpoint: the final weights must be the
reference's bit for bit, or the run must raise an RNGStateError naming what disagrees.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    PRELOAD_ACCELERATE,
    PRELOAD_LIGHTNING,
    PRELOAD_PADDLE,
    PRELOAD_TRANSFORMERS,
    ROOT,
    python_command,
)

slow = pytest.mark.slow
# The frameworks each job imports first (its run is forked from an interpreter that has them).
JOB_IMPORTS = {
    "accelerate_job": PRELOAD_ACCELERATE,
    "hf_job": PRELOAD_TRANSFORMERS,
    "lightning_job": PRELOAD_LIGHTNING,
    "paddle_job": PRELOAD_PADDLE,
}


def run_job(module: str, mode: str, out: Path, configs: dict[str, Any]) -> list[dict[str, Any]]:
    """Run ``tests.integrations.jobs.<module>`` in its own process; its JSON result lines."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("RNGSTATE_SEED", None)
    argv = ("-m", f"tests.integrations.jobs.{module}", mode, str(out), json.dumps(configs))
    result = subprocess.run(
        python_command(*argv, env=env, preload=JOB_IMPORTS[module]),
        capture_output=True, text=True, timeout=900, cwd=ROOT, env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"config"')]


def check_matrix(module: str, configs: dict[str, Any], out: Path) -> dict[str, list[dict[str, Any]]]:
    """Reference and resumed runs of ``configs`` in two processes; every resume that did not
    raise equals its reference.  Returns the other runs by config: those that raised, and those
    resumed from another config's checkpoints (no reference of their own)."""
    references = {r["config"]: r for r in run_job(module, "reference", out, configs)}
    resumed = run_job(module, "resume", out, configs)
    expected_runs = sum(len(c.get("resume", [])) + ("chain" in c) for c in configs.values())
    assert len(resumed) == expected_runs, resumed
    raised: dict[str, list[dict[str, Any]]] = {}
    for run in resumed:
        if "error" in run or run["config"] not in references:
            raised.setdefault(run["config"], []).append(run)
            continue
        reference = references[run["config"]]
        same = (run["hash"], run["global_step"]) == (reference["hash"], reference["global_step"])
        assert same, (run, reference)
    return raised


# Batches of 2: 24 samples are 12 batches (a multiple of 1, 2 and 3), 26 are 13 (a multiple of
# none but 1: the epoch ends on a shorter accumulation).  Steps are optimizer steps.
HF_CONFIGS: dict[str, Any] = {
    "k1-multiple": {"accumulation": 1, "samples": 24, "resume": [5, 12]},
    "k1-odd": {"accumulation": 1, "samples": 26, "resume": [12, 14]},
    "k2-multiple": {"accumulation": 2, "samples": 24, "resume": [1, 5, 6, 7]},
    "k2-odd": {"accumulation": 2, "samples": 26, "resume": [1, 6, 7, 8]},  # 7 steps, the last of 1 batch
    "k3-multiple": {"accumulation": 3, "samples": 24, "resume": [3, 4, 5]},
    "k3-odd": {"accumulation": 3, "samples": 26, "resume": [2, 4, 5, 6]},  # 5 steps, the last of 1 batch
    "max-steps-mid-epoch": {"accumulation": 2, "samples": 26, "epochs": 3, "max_steps": 10, "resume": [3, 8]},
    "drop-last": {"accumulation": 3, "samples": 27, "drop_last": True, "resume": [2, 5]},
    "eval-inside-epoch": {"accumulation": 2, "samples": 26, "eval_steps": 3, "resume": [3, 5, 9]},
    "two-resumes": {"accumulation": 3, "samples": 26, "chain": [2, 7]},
    # Loud: another accumulation than the checkpoint's, and the Trainer told to count the
    # resumed epoch from its first batch.
    "other-accumulation": {"accumulation": 3, "samples": 26, "from": "k2-odd", "resume": [4]},
    # Silenced on purpose: the same change, unchecked, trains on.
    "unchecked": {"accumulation": 3, "samples": 26, "from": "k2-odd", "check_resume": False, "resume": [4]},
    "ignore-data-skip": {
        "accumulation": 2, "samples": 26, "from": "k2-odd", "ignore_data_skip": True, "resume": [4]
    },
}


@slow
def test_transformers_trainer_gradient_accumulation_matrix(tmp_path: Path) -> None:
    raised = check_matrix("hf_job", HF_CONFIGS, tmp_path)
    assert sorted(raised) == ["ignore-data-skip", "other-accumulation", "unchecked"], raised
    (unchecked,) = raised["unchecked"]
    assert "error" not in unchecked and unchecked["global_step"] > 4
    (other,) = raised["other-accumulation"]
    assert other["error"] == "ResumeMismatchError" and "gradient accumulation steps is 3" in other["message"]
    (ignore,) = raised["ignore-data-skip"]
    assert ignore["error"] == "DataLoaderError" and "ignore_data_skip" in ignore["message"]


LIGHTNING_CONFIGS: dict[str, Any] = {
    "k1-multiple": {"accumulation": 1, "samples": 24, "resume": [12]},
    "k1-odd": {"accumulation": 1, "samples": 26, "resume": [5, 13]},
    "k2-multiple": {"accumulation": 2, "samples": 24, "resume": [1, 6, 7]},
    "k2-odd": {"accumulation": 2, "samples": 26, "resume": [1, 6, 7, 8]},
    "k3-multiple": {"accumulation": 3, "samples": 24, "resume": [3, 4]},
    "k3-odd": {"accumulation": 3, "samples": 26, "resume": [2, 4, 5, 6]},
    "max-steps-mid-epoch": {"accumulation": 2, "samples": 26, "epochs": 3, "max_steps": 10, "resume": [3, 8]},
    "drop-last": {"accumulation": 3, "samples": 27, "drop_last": True, "resume": [2, 5]},
    "eval-inside-epoch": {"accumulation": 2, "samples": 26, "eval_steps": 3, "resume": [3, 5, 9]},
    "two-resumes": {"accumulation": 3, "samples": 26, "chain": [2, 7]},
    "other-accumulation": {"accumulation": 3, "samples": 26, "from": "k2-odd", "resume": [4]},
    # A checkpoint written after every batch: the one between two optimizer steps lacks the
    # gradients accumulated so far; the one right after a step resumes exactly.
    "mid-accumulation": {
        "accumulation": 2, "samples": 26, "every_batch": True, "resume": ["batch-3.ckpt", "batch-4.ckpt"]
    },
}


@slow
def test_lightning_gradient_accumulation_matrix(tmp_path: Path) -> None:
    raised = check_matrix("lightning_job", LIGHTNING_CONFIGS, tmp_path)
    assert sorted(raised) == ["mid-accumulation", "other-accumulation"], raised
    (other,) = raised["other-accumulation"]
    assert other["error"] == "ResumeMismatchError" and "gradient accumulation steps is 3" in other["message"]
    (middle,) = raised["mid-accumulation"]
    assert middle["resume"] == "batch-3.ckpt" and "between two optimizer steps" in middle["message"]


# Paddle: steps are batches trained; backups only right after an optimizer step.
PADDLE_CONFIGS: dict[str, Any] = {
    "k1-multiple": {"accumulation": 1, "samples": 24, "resume": [12]},
    "k1-odd": {"accumulation": 1, "samples": 26, "resume": [5, 13]},
    "k2-multiple": {"accumulation": 2, "samples": 24, "resume": [2, 12, 14]},
    "k2-odd": {"accumulation": 2, "samples": 26, "resume": [2, 12, 13, 15]},
    "k3-multiple": {"accumulation": 3, "samples": 24, "resume": [6, 12]},
    "k3-odd": {"accumulation": 3, "samples": 26, "resume": [3, 12, 13, 16]},
    "drop-last": {"accumulation": 3, "samples": 27, "drop_last": True, "resume": [6, 13]},
    "two-resumes": {"accumulation": 3, "samples": 26, "chain": [6, 19]},
    "other-accumulation": {"accumulation": 3, "samples": 26, "from": "k2-odd", "resume": [2]},
}


@slow
def test_paddle_fit_gradient_accumulation_matrix(tmp_path: Path) -> None:
    raised = check_matrix("paddle_job", PADDLE_CONFIGS, tmp_path)
    assert sorted(raised) == ["other-accumulation"], raised
    (other,) = raised["other-accumulation"]
    assert other["error"] == "ResumeMismatchError" and "gradient accumulation steps is 3" in other["message"]


# accelerate, the loader not prepared: accelerate does not see the end of the loader, so the
# accumulation runs on across epochs (2 epochs of 13 batches at accumulation 2: 13 steps).
ACCELERATE_CONFIGS: dict[str, Any] = {
    "k1-multiple": {"accumulation": 1, "samples": 24, "resume": [12]},
    "k1-odd": {"accumulation": 1, "samples": 26, "resume": [5, 13]},
    "k2-multiple": {"accumulation": 2, "samples": 24, "resume": [6]},
    "k2-odd": {"accumulation": 2, "samples": 26, "resume": [1, 6, 7, 8]},
    "k3-multiple": {"accumulation": 3, "samples": 24, "resume": [3, 4, 5]},
    "k3-odd": {"accumulation": 3, "samples": 26, "resume": [2, 4, 5]},
    "max-steps-mid-epoch": {"accumulation": 2, "samples": 26, "epochs": 3, "max_steps": 10, "resume": [3, 8]},
    "drop-last": {"accumulation": 3, "samples": 27, "drop_last": True, "resume": [2, 5]},
    "two-resumes": {"accumulation": 3, "samples": 26, "chain": [2, 6]},
}


@slow
def test_accelerate_gradient_accumulation_matrix(tmp_path: Path) -> None:
    assert check_matrix("accelerate_job", ACCELERATE_CONFIGS, tmp_path) == {}
