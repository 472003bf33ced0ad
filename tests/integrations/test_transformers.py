"""Hugging Face Trainer: a run killed right after a mid-epoch checkpoint and resumed in a new
process with ``trainer.train(resume_from_checkpoint=...)`` ends with the weights of a run that
never stopped (``examples/trainer_transformers.py``: a plain nn.Module, or a tiny BERT built
from a config, a dataset drawing Python, NumPy and torch randomness, dataloader workers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PRELOAD_TRANSFORMERS, run_python
from tests.integrations.conftest import TrainerExample

EXAMPLE = TrainerExample("trainer_transformers.py", preload=PRELOAD_TRANSFORMERS)
slow = pytest.mark.slow


@slow
def test_resume_mid_epoch_with_fewer_workers(tmp_path: Path) -> None:
    EXAMPLE.interrupted(tmp_path, 8, "--workers", "2")
    assert sorted(p.name for p in (tmp_path / "checkpoint-8").glob("rngstate*")) == [
        "rngstate.state", "rngstate_loader.json", "rngstate_next.json"
    ]
    resume = ("--checkpoint", str(tmp_path), "--resume", str(tmp_path / "checkpoint-8"))
    resumed = EXAMPLE.final(*resume, "--workers", "0")
    assert resumed == EXAMPLE.reference("--workers", "2")


@slow
def test_tiny_bert_from_a_config_resumes_from_the_last_checkpoint(tmp_path: Path) -> None:
    EXAMPLE.interrupted(tmp_path, 9, "--model", "bert", "--workers", "0")
    resume = ("--checkpoint", str(tmp_path), "--resume", "last")
    resumed = EXAMPLE.final("--model", "bert", *resume, "--workers", "1")
    assert resumed == EXAMPLE.reference("--model", "bert", "--workers", "0")


@slow
def test_the_trainer_alone_does_not_resume_exactly(tmp_path: Path) -> None:
    # Control: the Trainer's own recipe (seed in TrainingArguments, rng_state.pth, batch
    # skipping), resumed with the same number of workers.
    EXAMPLE.interrupted(tmp_path, 8, "--plain", "--workers", "2")
    resumed = EXAMPLE.final(
        "--plain", "--checkpoint", str(tmp_path), "--resume", str(tmp_path / "checkpoint-8"), "--workers", "2"
    )
    assert resumed != EXAMPLE.reference("--plain", "--workers", "2")


@pytest.mark.slow
def test_only_the_facade_imports_transformers() -> None:
    code = """
    import sys, rngstate
    before = 'transformers' in sys.modules
    import rngstate.transformers
    print(before, 'transformers' in sys.modules)
    """
    assert run_python(code).strip() == "False True"


@pytest.mark.slow
def test_a_checkpoint_without_rngstate_files_is_refused(tmp_path: Path) -> None:
    out = run_python(
        """
        import sys, rngstate.transformers
        from rngstate.data import DataLoaderError
        callback = rngstate.transformers.RNGStateCallback()
        callback.resume_from = sys.argv[1]
        try:
            callback.on_train_begin(None, None, None)
        except DataLoaderError as exc:
            print("refused:", exc)
        """,
        str(tmp_path),
    )
    assert "refused:" in out and "rngstate.state" in out
