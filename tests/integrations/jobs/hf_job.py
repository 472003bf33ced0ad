"""Hugging Face Trainer jobs for the accumulation matrix (tests/integrations/test_accumulation.py).

Each config (JSON: accumulation, samples, epochs, max_steps, drop_last, eval_steps) runs in
``OUT/<name>``.  ``reference``: one uninterrupted run per config that saves a checkpoint after
every optimizer step.  ``resume``: a fresh model and Trainer resume from each listed checkpoint
(``chain``: from ``a``, saving again, then from the resumed run's checkpoint ``b``).  Every run
prints one JSON line: config, where it resumed, the final weights hash and global step.

    python -m tests.integrations.jobs.hf_job reference OUT CONFIGS_JSON
    python -m tests.integrations.jobs.hf_job resume OUT CONFIGS_JSON
"""

from __future__ import annotations

import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import sys
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn

import rngstate
import rngstate.transformers
from tests.integrations.jobs.common import Noisy, Tiny, weights_hash


class Model(Tiny):
    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {"loss": nn.functional.cross_entropy(self.net(features), labels)}


class Dicts(Noisy):
    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        features, label = super().__getitem__(index)
        return {"features": features, "labels": label}


class Trainer(rngstate.transformers.RNGStateMixin, transformers.Trainer):  # type: ignore[misc]
    pass


def train(config: dict[str, Any], out: Path, resume: Path | None, save: bool) -> dict[str, Any]:
    torch.set_num_threads(1)
    rngstate.seed_everything(0)
    model = Model()
    eval_steps = config.get("eval_steps") or None
    training_args = transformers.TrainingArguments(
        output_dir=str(out),
        num_train_epochs=config.get("epochs", 2),
        max_steps=config.get("max_steps") or -1,
        per_device_train_batch_size=2,
        per_device_eval_batch_size=4,
        gradient_accumulation_steps=config["accumulation"],
        learning_rate=0.05,
        optim="sgd",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
        seed=0,
        dataloader_num_workers=config.get("workers", 0),
        dataloader_drop_last=config.get("drop_last", False),
        save_strategy="steps" if save else "no",
        save_steps=1,
        eval_strategy="steps" if eval_steps else "no",
        eval_steps=eval_steps,
        logging_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        ignore_data_skip=config.get("ignore_data_skip", False),
    )
    eval_dataset = Dicts(6) if eval_steps else None
    dataset = Dicts(config["samples"])
    callback = rngstate.transformers.RNGStateCallback(check_resume=config.get("check_resume", True))
    trainer = Trainer(
        model=model, args=training_args, train_dataset=dataset, eval_dataset=eval_dataset,
        callbacks=[callback],
    )
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except rngstate.RNGStateError as exc:
        return {"error": type(exc).__name__, "message": str(exc)}
    return {"hash": weights_hash(model), "global_step": int(trainer.state.global_step)}


def main() -> None:
    mode, out, configs = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    for name, config in configs.items():
        folder = out / config.get("from", name)  # "from": resume another config's checkpoints
        if mode == "reference":
            if "from" in config:
                continue
            runs = [(None, train(config, folder, None, save=True))]
        else:
            runs = []
            for step in config.get("resume", []):
                runs.append((step, train(config, folder, folder / f"checkpoint-{step}", save=False)))
            if "chain" in config:
                first, second = config["chain"]
                chained = out / f"{name}-chain"
                train(config, chained, folder / f"checkpoint-{first}", save=True)
                result = train(config, chained, chained / f"checkpoint-{second}", save=False)
                runs.append(([first, second], result))
        for resume, result in runs:
            print(json.dumps({"config": name, "resume": resume, **result}), flush=True)


if __name__ == "__main__":
    main()
