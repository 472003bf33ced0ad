"""Exact resume inside ``paddle.Model.fit``: killed right after a mid-epoch backup, ``fit`` called
again in a new process with the same callback, the final weights equal the run that never stopped.

    python examples/trainer_paddle.py            # runs all three processes, prints the verdict

rngstate adds (marked ``# rngstate``): ``seed_everything``, the loader and the callback.

    python examples/trainer_paddle.py --run                                  # uninterrupted
    python examples/trainer_paddle.py --run --stop-at 8 --checkpoint backup  # dies after saving
    python examples/trainer_paddle.py --run --checkpoint backup --workers 0  # resumes

``--plain`` is Paddle alone: ``paddle.seed`` + NumPy/``random`` seeds, ``fit`` on the Dataset
(Paddle's own loader), ``Model.save``/``Model.load`` and the consumed batches skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import paddle
from paddle import nn

import rngstate
import rngstate.paddle

EPOCHS = 3
BATCH_SIZE = 8  # 48 samples: 6 steps per epoch


class AugmentedPoints(paddle.io.Dataset):  # type: ignore[misc]
    """48 points in 4 classes; every access adds NumPy, Python and paddle randomness."""

    def __init__(self) -> None:
        super().__init__()
        source = np.random.RandomState(1234)  # the data itself is fixed
        self.labels = source.randint(0, 4, size=(48, 1)).astype("int64")
        self.points = (source.normal(size=(48, 16)) + self.labels).astype("float32")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        x = self.points[index] + np.random.normal(0.0, 0.3, size=16).astype("float32")
        if random.random() < 0.5:
            x = x[::-1].copy()
        x = x + 0.1 * paddle.randn([16]).numpy()
        return x, self.labels[index]


class DieAfterSaving(paddle.callbacks.Callback):  # type: ignore[misc]
    def __init__(self, stop_at: int, on_save: Any = None) -> None:
        super().__init__()
        self.stop_at, self.steps, self.on_save = stop_at, 0, on_save

    def on_train_batch_end(self, step: int, logs: Any = None) -> None:
        self.steps += 1
        if self.steps == self.stop_at:
            if self.on_save is not None:
                self.on_save(self.steps)
            print(f"checkpoint saved at step {self.stop_at}", flush=True)
            die()


def die() -> None:
    """Stop at once, like a killed job: this process and its DataLoader workers (Paddle's
    workers would otherwise outlive it)."""
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            os.kill(int(pid), signal.SIGKILL)
    os._exit(0)


def weights_hash(network: nn.Layer) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in network.state_dict().items():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensor.numpy()).tobytes())
    return digest.hexdigest()


class SkipBatches:
    """Paddle alone: its DataLoader, the first ``skip`` batches of the first epoch skipped."""

    def __init__(self, loader: Any, skip: int) -> None:
        self.loader, self.skip = loader, skip

    def __iter__(self) -> Any:
        skip, self.skip = self.skip, 0
        return itertools.islice(iter(self.loader), skip, None)

    def __len__(self) -> int:
        return len(self.loader)


def train(args: argparse.Namespace) -> None:
    paddle.set_device("cpu")
    if args.plain:
        paddle.seed(args.seed)
        np.random.seed(args.seed)
        random.seed(args.seed)
    else:
        rngstate.seed_everything(args.seed)  # rngstate
    network = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4))
    model = paddle.Model(network)
    model.prepare(
        paddle.optimizer.Momentum(learning_rate=0.05, momentum=0.9, parameters=network.parameters()),
        nn.CrossEntropyLoss(),
    )
    folder = Path(args.checkpoint)
    callbacks: list[Any] = []
    epochs = EPOCHS
    if args.plain:
        loader: Any = paddle.io.DataLoader(
            AugmentedPoints(), batch_size=BATCH_SIZE, shuffle=True, num_workers=args.workers
        )
        if (folder / "progress.json").exists():  # resume: weights, optimizer, skip batches
            model.load(str(folder / "model"))
            done = json.loads((folder / "progress.json").read_text())["steps"]
            epochs -= done // 6
            loader = SkipBatches(loader, done % 6)

        def save_plain(steps: int) -> None:
            model.save(str(folder / "model"))
            (folder / "progress.json").write_text(json.dumps({"steps": steps}))

        if args.stop_at:
            callbacks.append(DieAfterSaving(args.stop_at, save_plain))
    else:
        loader = rngstate.paddle.DataLoader(  # rngstate
            AugmentedPoints(), name="train", batch_size=BATCH_SIZE, shuffle=True, num_workers=args.workers
        )
        callbacks.append(  # rngstate
            rngstate.paddle.RNGStateCallback(folder, loader, save_freq=args.stop_at or 6)
        )
        if args.stop_at:
            callbacks.append(DieAfterSaving(args.stop_at))
    model.fit(loader, epochs=epochs, callbacks=callbacks, verbose=0)
    kind = "Paddle alone" if args.plain else "Paddle + rngstate"
    print(f"final weights {weights_hash(network)}  ({kind}, {args.workers} workers)")


def run(*options: str) -> str:
    """One training in its own process; returns what it printed."""
    command = [sys.executable, __file__, "--run", *options]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def final_hash(output: str) -> str:
    return output.split("final weights ")[1].split()[0]


def demo(plain: bool) -> None:
    extra = ["--plain"] if plain else []
    with tempfile.TemporaryDirectory() as folder:
        reference = final_hash(run("--workers", "2", "--checkpoint", str(Path(folder, "unused")), *extra))
        backup = str(Path(folder, "backup"))
        run("--workers", "2", "--stop-at", "8", "--checkpoint", backup, *extra)
        workers = "2" if plain else "0"
        resumed = final_hash(run("--workers", workers, "--checkpoint", backup, *extra))
    kind = "Paddle alone" if plain else "Paddle + rngstate"
    print(f"{kind}: uninterrupted {reference}, killed at step 8 and resumed with {workers} workers "
          f"{resumed}: bit-identical: {reference == resumed}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", action="store_true", help="one training run (else: the whole demo)")
    parser.add_argument("--stop-at", type=int, default=0, help="back up at this step and die")
    parser.add_argument("--checkpoint", default="paddle_backup", help="backup folder (resumed if present)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plain", action="store_true", help="Paddle alone, without rngstate")
    args = parser.parse_args()
    if args.run:
        train(args)
    else:
        demo(plain=False)
        demo(plain=True)


if __name__ == "__main__":
    main()
