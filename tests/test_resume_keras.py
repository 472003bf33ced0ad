"""End to end, Keras 3 on TensorFlow: a model with Dropout trained with train_on_batch, with
tf.random noise on every batch and the order from rngstate.ResumableSampler, stopped mid-epoch
and resumed in a new process, ends with the weights of a run that never stopped.

Each run is examples/resume_keras.py in its own process; the RNG state travels in an
rngstate.save side file next to .npz weights and optimizer variables.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.conftest import PRELOAD_KERAS, ResumeExample

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("keras") is None or importlib.util.find_spec("tensorflow") is None,
        reason="needs keras and tensorflow",
    ),
]
EXAMPLE = ResumeExample("resume_keras.py", preload=PRELOAD_KERAS)


def test_keras_resumes_mid_epoch_exactly(tmp_path: Path) -> None:
    # 6 batches per epoch: step 8 is the second batch of epoch 1.
    assert EXAMPLE.resumed(tmp_path, 8) == EXAMPLE.uninterrupted()


def test_keras_usual_recipe_does_not_resume_exactly(tmp_path: Path) -> None:
    # Control: set_random_seed, weights and optimizer saved, no RNG state: the dropout masks
    # and the tf.random noise after the resume differ, so the weights do.
    assert EXAMPLE.resumed(tmp_path, 8, plain=True) != EXAMPLE.uninterrupted(plain=True)


def test_the_docs_show_these_runs(tmp_path: Path) -> None:
    EXAMPLE.check_shown(tmp_path, workers=(None, None))  # docs/frameworks/tensorflow-keras.md
