"""Exact resume inside the Hugging Face Trainer: killed right after a mid-epoch checkpoint, resumed
in a new process with ``trainer.train(resume_from_checkpoint=...)``, the final weights equal the
run that never stopped.

    python examples/trainer_transformers.py            # runs all three processes, prints the verdict

rngstate adds (marked ``# rngstate``): ``seed_everything`` and ``RNGStateMixin`` in the trainer's
bases (it provides the train loader and the callback).  One run at a time:

    python examples/trainer_transformers.py --run                                # uninterrupted
    python examples/trainer_transformers.py --run --stop-at 8 --checkpoint out   # dies after saving
    python examples/trainer_transformers.py --run --resume out/checkpoint-8 --workers 0

``--model bert`` trains a tiny BERT built from a config (no download) instead of a plain
``nn.Module``; ``--plain`` is the Trainer alone (``TrainingArguments(seed=...)``, its own
checkpoints with ``rng_state.pth`` and its own batch skipping).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import transformers
from torch import nn

import rngstate
import rngstate.transformers

EPOCHS = 3
BATCH_SIZE = 8  # 48 samples: 6 steps per epoch


class AugmentedPoints(torch.utils.data.Dataset[dict[str, Any]]):
    """48 examples in 4 classes; every access adds NumPy, Python and torch randomness."""

    def __init__(self, tokens: bool) -> None:
        source = np.random.RandomState(1234)  # the data itself is fixed
        self.tokens = tokens
        self.labels = source.randint(0, 4, size=48)
        self.points = source.normal(size=(48, 16)) + self.labels[:, None]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        x = self.points[index] + np.random.normal(0.0, 0.3, size=16)
        if random.random() < 0.5:
            x = x[::-1].copy()
        features = torch.from_numpy(x).float() + 0.1 * torch.randn(16)
        if self.tokens:  # token ids for the BERT variant
            return {"input_ids": (features * 4).long().clamp(-15, 15) + 16, "labels": int(self.labels[index])}
        return {"features": features, "labels": int(self.labels[index])}


class Classifier(nn.Module):
    """A plain nn.Module: the Trainer only needs a forward that returns the loss."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": nn.functional.cross_entropy(self.net(features), labels)}


def build_model(kind: str) -> nn.Module:
    if kind == "bert":
        config = transformers.BertConfig(
            vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=16, num_labels=4,
        )
        return transformers.BertForSequenceClassification(config)
    return Classifier()


class Trainer(rngstate.transformers.RNGStateMixin, transformers.Trainer):  # rngstate
    pass


class DieAfterSaving(transformers.TrainerCallback):
    """The process dies right after the checkpoint of step ``stop_at`` (as if killed)."""

    def __init__(self, stop_at: int) -> None:
        self.stop_at = stop_at

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.stop_at:
            print(f"checkpoint saved at step {self.stop_at}", flush=True)
            os._exit(0)


def weights_hash(model: nn.Module) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)  # the same arithmetic in every run
    if not args.plain:
        rngstate.seed_everything(args.seed)  # rngstate
    model = build_model(args.model)
    training_args = transformers.TrainingArguments(
        output_dir=args.checkpoint,
        num_train_epochs=EPOCHS,
        per_device_train_batch_size=BATCH_SIZE,
        learning_rate=0.05,
        optim="sgd",
        optim_args="momentum=0.9",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
        seed=args.seed,
        dataloader_num_workers=args.workers,
        save_strategy="steps" if args.stop_at else "no",
        save_steps=args.stop_at or 500,
        logging_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer_class = transformers.Trainer if args.plain else Trainer
    dataset = AugmentedPoints(args.model == "bert")
    trainer = trainer_class(model=model, args=training_args, train_dataset=dataset)
    if args.stop_at:
        trainer.add_callback(DieAfterSaving(args.stop_at))
    trainer.train(resume_from_checkpoint=True if args.resume == "last" else args.resume)
    kind = "Trainer alone" if args.plain else "Trainer + rngstate"
    print(f"final weights {weights_hash(model)}  ({kind}, {args.model}, {args.workers} workers)")


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
    reference = final_hash(run("--workers", "2", *extra))
    with tempfile.TemporaryDirectory() as folder:
        run("--workers", "2", "--stop-at", "8", "--checkpoint", folder, *extra)
        workers = "2" if plain else "0"
        resumed = final_hash(run("--workers", workers, "--resume", str(Path(folder, "checkpoint-8")), *extra))
    kind = "Trainer alone" if plain else "Trainer + rngstate"
    print(f"{kind}: uninterrupted {reference}, killed at step 8 and resumed with {workers} workers "
          f"{resumed}: bit-identical: {reference == resumed}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", action="store_true", help="one training run (else: the whole demo)")
    parser.add_argument("--stop-at", type=int, default=0, help="save a checkpoint at this step and die")
    parser.add_argument("--checkpoint", default="transformers_out", help="output_dir of the Trainer")
    parser.add_argument("--resume", help="checkpoint folder ('last': the newest in --checkpoint)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", choices=("mlp", "bert"), default="mlp")
    parser.add_argument("--plain", action="store_true", help="the Trainer alone, without rngstate")
    args = parser.parse_args()
    if args.run:
        train(args)
    else:
        demo(plain=False)
        demo(plain=True)


if __name__ == "__main__":
    main()
