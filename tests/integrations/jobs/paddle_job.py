"""``paddle.Model.fit(accumulate_grad_batches=)`` jobs for the accumulation matrix
(tests/integrations/test_accumulation.py); the same command line and output as
:mod:`tests.integrations.jobs.hf_job`.  The callback backs up after every optimizer step; the
reference run keeps a copy of each backup as ``backup-N`` (N: batches trained)."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import paddle
from paddle import nn

import rngstate
import rngstate.paddle
from rngstate.guard import ResumeWarning

warnings.simplefilter("error", ResumeWarning)  # no false alarms


class Noisy(paddle.io.Dataset):  # type: ignore[misc]
    def __init__(self, n: int) -> None:
        super().__init__()
        source = np.random.RandomState(1234)
        self.labels = source.randint(0, 3, size=(n, 1)).astype("int64")
        self.points = (source.normal(size=(n, 6)) + self.labels).astype("float32")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        x = self.points[index] + np.random.normal(0.0, 0.3, size=6).astype("float32")
        if random.random() < 0.5:
            x = x[::-1].copy()
        return x + 0.1 * paddle.randn([6]).numpy(), self.labels[index]


class KeepBackups(paddle.callbacks.Callback):  # type: ignore[misc]
    """After the rngstate callback: a copy of every new backup, named by its step count."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder, self.seen = folder, -1

    def on_train_batch_end(self, step: int, logs: Any = None) -> None:
        progress = self.folder / "progress.json"
        if progress.exists():
            steps = json.loads(progress.read_text())["steps"]
            if steps != self.seen:
                self.seen = steps
                shutil.copytree(self.folder, self.folder.with_name(f"backup-{steps}"))


def weights_hash(network: nn.Layer) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in network.state_dict().items():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensor.numpy()).tobytes())
    return digest.hexdigest()


def train(config: dict[str, Any], folder: Path, keep: bool) -> dict[str, Any]:
    paddle.set_device("cpu")
    rngstate.seed_everything(0)
    network = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3))
    model = paddle.Model(network)
    optimizer = paddle.optimizer.SGD(learning_rate=0.05, parameters=network.parameters())
    model.prepare(optimizer, nn.CrossEntropyLoss())
    drop_last = config.get("drop_last", False)
    loader = rngstate.paddle.DataLoader(
        Noisy(config["samples"]), name="train", batch_size=2, shuffle=True, drop_last=drop_last
    )
    callbacks: list[Any] = [rngstate.paddle.RNGStateCallback(folder, loader, save_freq=1)]
    if keep:
        callbacks.append(KeepBackups(folder))
    try:
        model.fit(loader, epochs=config.get("epochs", 2), accumulate_grad_batches=config["accumulation"],
                  callbacks=callbacks, verbose=0)
    except rngstate.RNGStateError as exc:
        return {"error": type(exc).__name__, "message": str(exc)}
    return {"hash": weights_hash(network), "global_step": callbacks[0]._steps}


def main() -> None:
    mode, out, configs = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    for name, config in configs.items():
        source = out / config.get("from", name)  # "from": resume another config's backups
        runs: list[tuple[Any, dict[str, Any]]] = []
        if mode == "reference":
            if "from" not in config:
                runs.append((None, train(config, source / "backup", keep=True)))
        else:
            for step in config.get("resume", []):
                folder = out / f"{name}-from-{step}"
                shutil.copytree(source / f"backup-{step}", folder)
                runs.append((step, train(config, folder, keep=False)))
            if "chain" in config:
                first, second = config["chain"]
                chained = out / f"{name}-chain" / "backup"
                shutil.copytree(source / f"backup-{first}", chained)
                train(config, chained, keep=True)
                again = out / f"{name}-chain-again"
                shutil.copytree(chained.with_name(f"backup-{second}"), again)
                runs.append(([first, second], train(config, again, keep=False)))
        for resume, result in runs:
            print(json.dumps({"config": name, "resume": resume, **result}), flush=True)


if __name__ == "__main__":
    main()
