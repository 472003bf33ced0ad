"""Exact resume with PaddlePaddle: stop mid-epoch, resume in a new process, same weights.

The Paddle twin of ``resume_torch.py``: a model with dropout, a dataset that augments every
sample with Python ``random``, NumPy and ``paddle.randn`` noise, loaded by DataLoader workers,
Momentum SGD.  The checkpoint is a folder in Paddle's usual layout: ``model.pdparams`` and
``optimizer.pdopt`` from ``paddle.save``, the loader position and step in ``progress.pdstate``
(``paddle.save`` as well: ``loader.state_dict()`` is plain data) and every random generator in an
``rngstate.save`` side file.  (``paddle.save`` of Paddle 3.3 rejects ``bytes`` anywhere in a
checkpoint, and ``rngstate.capture().to_dict()`` holds generator states as bytes.)

    python examples/resume_paddle.py                          # uninterrupted, 2 workers
    python examples/resume_paddle.py --stop-at 8              # saves a checkpoint, exits
    python examples/resume_paddle.py --resume --workers 0     # continues: same hash

``--plain`` uses ``paddle.io.DataLoader`` with the RNG state restored and consumed batches
skipped; its resumed run ends with different weights.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import paddle
from paddle import nn

import rngstate
import rngstate.paddle

EPOCHS = 3
BATCH_SIZE = 8


class AugmentedPoints(paddle.io.Dataset):  # type: ignore[misc]
    """48 points in 4 classes; every access adds NumPy, Python and paddle randomness."""

    def __init__(self) -> None:
        source = np.random.RandomState(1234)  # the data itself is fixed
        self.labels = source.randint(0, 4, size=48).astype("int64")
        self.points = (source.normal(size=(48, 16)) + self.labels[:, None]).astype("float32")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.int64]:
        x = self.points[index] + np.random.normal(0.0, 0.3, size=16).astype("float32")  # NumPy
        if random.random() < 0.5:  # Python
            x = x[::-1].copy()
        x = x + 0.1 * paddle.randn([16]).numpy()  # paddle
        return x.astype("float32"), self.labels[index]


def weights_hash(model: nn.Layer) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensor.numpy()).tobytes())
    return digest.hexdigest()


def make_loader(dataset: AugmentedPoints, plain: bool, workers: int) -> Any:
    if plain:
        return paddle.io.DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, num_workers=workers)
    return rngstate.paddle.DataLoader(
        dataset, name="train", batch_size=BATCH_SIZE, shuffle=True, num_workers=workers
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stop-at", type=int, help="save a checkpoint after this many steps and exit")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    parser.add_argument("--checkpoint", default="resume_paddle.ckpt", help="checkpoint folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plain", action="store_true", help="plain paddle DataLoader, for comparison")
    args = parser.parse_args(argv)
    paddle.set_device("cpu")

    rngstate.seed_everything(args.seed)
    with rngstate.rng_scope("model"):
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4))
    optimizer = paddle.optimizer.Momentum(
        learning_rate=0.05, momentum=0.9, parameters=model.parameters()
    )
    loader = make_loader(AugmentedPoints(), args.plain, args.workers)

    folder = Path(args.checkpoint)
    step, start_epoch, skip = 0, 0, 0
    if args.resume:
        model.set_state_dict(paddle.load(str(folder / "model.pdparams")))
        optimizer.set_state_dict(paddle.load(str(folder / "optimizer.pdopt")))
        rngstate.restore(rngstate.load(folder / "rng.state"))
        progress = paddle.load(str(folder / "progress.pdstate"))
        step, start_epoch = progress["step"], progress["epoch"]
        if args.plain:
            skip = progress["batches_done"]
        else:
            loader.load_state_dict(progress["loader"])

    model.train()
    for epoch in range(start_epoch, EPOCHS):
        if not args.plain:
            loader.set_epoch(epoch)  # right after load_state_dict: continues mid-epoch
        for batch_index, (features, labels) in enumerate(itertools.islice(loader, skip, None), start=skip):
            loss = nn.functional.cross_entropy(model(features), labels)
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            step += 1
            if step == args.stop_at:
                folder.mkdir(parents=True, exist_ok=True)
                paddle.save(model.state_dict(), str(folder / "model.pdparams"))
                paddle.save(optimizer.state_dict(), str(folder / "optimizer.pdopt"))
                rngstate.save(folder / "rng.state")  # every generator, atomic msgpack file
                progress = {
                    "loader": None if args.plain else loader.state_dict(),
                    "epoch": epoch,
                    "batches_done": batch_index + 1,
                    "step": step,
                }
                paddle.save(progress, str(folder / "progress.pdstate"))
                print(f"checkpoint saved at step {step} (epoch {epoch}, batch {batch_index + 1}) "
                      f"-> {folder.name}")
                return
        skip = 0
    kind = "plain DataLoader" if args.plain else "rngstate DataLoader"
    print(f"final weights {weights_hash(model)}  ({kind}, {args.workers} workers, {step} steps"
          f"{', resumed' if args.resume else ''})")


if __name__ == "__main__":
    main(sys.argv[1:])
