"""Keras ``model.fit``: a run killed right after a mid-epoch backup by
``rngstate.keras.RNGStateCallback`` and started again in a new process ends with the weights of a
run that never stopped (``examples/trainer_keras.py``; TensorFlow only ever runs in those
subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PRELOAD_KERAS, ROOT, python_command, run_python
from tests.integrations.conftest import TrainerExample

EXAMPLE = TrainerExample("trainer_keras.py", preload=PRELOAD_KERAS)
slow = pytest.mark.slow


@slow
def test_resume_mid_epoch_with_other_worker_threads(tmp_path: Path) -> None:
    # 6 steps per epoch: step 8 is the second batch of epoch 1; PyDataset(workers=3), then 1.
    EXAMPLE.interrupted(tmp_path / "backup", 8, "--workers", "3")
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == [
        "optimizer.npz", "progress.json", "rng.state", "weights.npz"
    ]
    resumed = EXAMPLE.final("--checkpoint", str(tmp_path / "backup"))
    assert resumed == EXAMPLE.reference(checkpoint=True)


@slow
def test_resume_at_the_last_batch_of_an_epoch(tmp_path: Path) -> None:
    EXAMPLE.interrupted(tmp_path / "backup", 12)
    resumed = EXAMPLE.final("--checkpoint", str(tmp_path / "backup"))
    assert resumed == EXAMPLE.reference(checkpoint=True)


@slow
def test_keras_alone_does_not_resume_exactly(tmp_path: Path) -> None:
    # Control: keras.utils.set_random_seed + BackupAndRestore(save_freq=8), which restarts the
    # interrupted epoch with the mid-epoch weights and no optimizer state.
    EXAMPLE.interrupted(tmp_path / "backup", 8, "--plain")
    resumed = EXAMPLE.final("--plain", "--checkpoint", str(tmp_path / "backup"))
    assert resumed != EXAMPLE.reference("--plain", checkpoint=True)


def fit_example(folder: Path, cases: str, *options: str, backend: str = "tensorflow") -> list[dict[str, str]]:
    """examples/resume_keras_fit.py: uninterrupted (keeping the backup folder as it is right
    after each listed step), then resumed from each kept backup in a second process; returns
    the uninterrupted and the resumed weights hashes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": backend}
    env.pop("RNGSTATE_SEED", None)

    def run(mode: str) -> dict[str, str]:
        command = python_command(
            str(ROOT / "examples" / "resume_keras_fit.py"), "--run", "--mode", mode, "--cases", cases,
            "--folder", str(folder), *options, env=env,
            preload=("keras",) if backend == "torch" else PRELOAD_KERAS,
        )
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        assert result.returncode == 0, result.stderr[-4000:]
        return dict(json.loads(result.stdout.strip().splitlines()[-1]))

    return [run("uninterrupted"), run("resume")]


@slow
@pytest.mark.parametrize(
    ("cases", "stops"), [("arrays,dict,steps", 5), ("accumulate,execution,tfdata,loop", 8)]
)
def test_fit_on_arrays_and_tf_data_and_a_custom_loop_resume_exactly(
    tmp_path: Path, cases: str, stops: int
) -> None:
    # arrays: RandomFlip, RandomTranslation, Dropout, validation_split, stopped in epochs 0 and 1
    # and at the end of epoch 1; a dict of arrays with shuffle="batch" and validation_data;
    # steps_per_epoch; gradient accumulation stopped at phases 1, 2 and 0; steps_per_execution=2;
    # fit on tf.data; a GradientTape loop with a CheckpointManager.
    # Two halves, so that two workers can share the cases (examples/resume_keras_fit.py STOPS).
    reference, resumed = fit_example(tmp_path, cases)
    assert len(resumed) == stops
    for key, weights in resumed.items():
        assert weights == reference[key.split("@")[0] + "@0"], key


@slow
def test_fit_resumes_exactly_on_the_torch_backend(tmp_path: Path) -> None:
    reference, resumed = fit_example(tmp_path, "arrays,dict,accumulate", backend="torch")
    assert len(resumed) == 7
    for key, weights in resumed.items():
        assert weights == reference[key.split("@")[0] + "@0"], key


@slow
def test_keras_alone_restarts_the_epoch_of_a_fit_on_arrays(tmp_path: Path) -> None:
    # Control: keras.utils.set_random_seed + BackupAndRestore(save_freq=k) on the same fit.
    reference, resumed = fit_example(tmp_path, "arrays", "--plain")
    assert resumed["arrays@4"] != reference["arrays@0"]
    assert resumed["arrays@9"] != reference["arrays@0"]


@pytest.mark.slow
def test_only_the_facade_imports_keras() -> None:
    code = """
    import sys, rngstate
    before = bool({'keras', 'tensorflow'} & set(sys.modules))
    import rngstate.keras
    print(before, 'keras' in sys.modules)
    """
    assert run_python(code).strip() == "False True"


@pytest.mark.slow
def test_bad_arguments_are_refused() -> None:
    out = run_python(
        """
        import os
        os.environ["KERAS_BACKEND"] = "tensorflow"
        import rngstate.keras
        from rngstate.keras import KerasResumeError
        for kwargs in ({"save_freq": 0}, {"save_freq": "3"}, {"save_freq": 5, "data": [1, 2]}):
            try:
                rngstate.keras.RNGStateCallback("backup", **kwargs)
            except KerasResumeError as exc:
                print("refused:", str(exc).split(" ")[0])
        """
    )
    assert out.split() == ["refused:", "save_freq", "refused:", "save_freq", "refused:", "data"]


FIT_CHECKS = """
import os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
import keras, numpy as np
import rngstate, rngstate.keras
from rngstate.errors import KerasResumeError, NoRootSeedError

class Stop(Exception):
    pass

class StopAt(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 2:
            raise Stop

x, y = np.random.RandomState(0).normal(size=(48, 4)).astype("float32"), np.arange(48) % 2

def fit(folder, batch_size=8, accumulate=None, data=None, stop=False):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.1, gradient_accumulation_steps=accumulate),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callbacks = [rngstate.keras.RNGStateCallback(folder, save_freq=3)] + ([StopAt()] if stop else [])
    try:
        if data is not None:
            model.fit(data, epochs=1, steps_per_epoch=6, callbacks=callbacks, verbose=0)
        else:
            model.fit(x, y, batch_size=batch_size, epochs=2, callbacks=callbacks, verbose=0)
    except Stop:
        pass

def refused(what, call):
    try:
        call()
    except (KerasResumeError, NoRootSeedError) as exc:
        print(what, type(exc).__name__, str(exc).replace(chr(10), " "))
    else:
        print(what, "accepted")

folder = sys.argv[1]
refused("noseed", lambda: fit(folder + "/a"))
rngstate.seed_everything(0)
def batches():
    while True:
        yield x[:8], y[:8]

refused("generator", lambda: fit(folder + "/g", data=batches()))
fit(folder + "/b", stop=True)
refused("batch_size", lambda: fit(folder + "/b", batch_size=4))
fit(folder + "/c", accumulate=3, stop=True)
refused("accumulation", lambda: fit(folder + "/c", accumulate=2))
refused("same", lambda: fit(folder + "/c", accumulate=3))
"""


@slow
def test_a_fit_that_cannot_resume_exactly_is_refused(tmp_path: Path) -> None:
    out = run_python(FIT_CHECKS, str(tmp_path))
    lines = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert "NoRootSeedError" in lines["noseed"] and "seed_everything" in lines["noseed"]
    assert "KerasResumeError" in lines["generator"]
    assert "NumPy arrays or a tf.data.Dataset" in lines["generator"]
    assert "batch_size is 4 in this run but 8 in the backup" in lines["batch_size"]
    assert "gradient_accumulation_steps is 2 in this run but 3 in the backup" in lines["accumulation"]
    assert lines["same"] == "same accepted"
