"""Lightning jobs for the accumulation matrix (tests/integrations/test_accumulation.py); the
same command line and output as :mod:`tests.integrations.jobs.hf_job`.  Checkpoints are
written where ``ModelCheckpoint(every_n_train_steps=1)`` writes them (``on_train_batch_end``
after each optimizer step), as ``step-N.ckpt``."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

import rngstate
import rngstate.lightning
import rngstate.torch
from tests.integrations.jobs.common import Noisy, Tiny, weights_hash

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", module="lightning")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")


class Module(pl.LightningModule):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config
        self.model = Tiny()

    def training_step(self, batch: Any, index: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.model(x), y)

    def validation_step(self, batch: Any, index: int) -> None:
        x, y = batch
        self.log("val", nn.functional.cross_entropy(self.model(x), y))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.05)

    def train_dataloader(self) -> Any:
        return rngstate.torch.DataLoader(
            Noisy(self.config["samples"]), name="train", batch_size=2, shuffle=True,
            drop_last=self.config.get("drop_last", False),
        )

    def val_dataloader(self) -> Any:
        return torch.utils.data.DataLoader(Noisy(6), batch_size=4)


class SaveEachStep(pl.Callback):
    """``step-N.ckpt`` after each optimizer step; ``every_batch``: also ``batch-M.ckpt`` after
    each batch (M: batches trained), between optimizer steps too."""

    def __init__(self, folder: Path, every_batch: bool) -> None:
        self.folder, self.saved, self.every_batch, self.batches = folder, -1, every_batch, 0

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        self.batches += 1
        if self.every_batch:
            trainer.save_checkpoint(self.folder / f"batch-{self.batches}.ckpt")
        if trainer.global_step != self.saved:
            self.saved = trainer.global_step
            trainer.save_checkpoint(self.folder / f"step-{trainer.global_step}.ckpt")


def train(config: dict[str, Any], out: Path, resume: Path | None, save: bool) -> dict[str, Any]:
    torch.set_num_threads(1)
    rngstate.seed_everything(0)
    module = Module(config)
    callbacks: list[Any] = [rngstate.lightning.RNGStateCallback()]
    if save:
        callbacks.append(SaveEachStep(out, config.get("every_batch", False)))
    eval_steps = config.get("eval_steps")
    trainer = pl.Trainer(
        max_epochs=config.get("epochs", 2), max_steps=config.get("max_steps") or -1,
        accumulate_grad_batches=config["accumulation"], callbacks=callbacks,
        val_check_interval=eval_steps, limit_val_batches=2 if eval_steps else 0,
        num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
        default_root_dir=str(out),
    )
    try:
        trainer.fit(module, ckpt_path=str(resume) if resume else None)
    except rngstate.RNGStateError as exc:
        return {"error": type(exc).__name__, "message": str(exc)}
    return {"hash": weights_hash(module.model), "global_step": int(trainer.global_step)}


def main() -> None:
    mode, out, configs = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    for name, config in configs.items():
        folder = out / config.get("from", name)  # "from": resume another config's checkpoints
        if mode == "reference":
            if "from" in config:
                continue
            runs: list[tuple[Any, dict[str, Any]]] = [(None, train(config, folder, None, save=True))]
        else:
            runs = []
            for step in config.get("resume", []):  # a step number, or a file name
                file = f"step-{step}.ckpt" if isinstance(step, int) else step
                runs.append((step, train(config, folder, folder / file, save=False)))
            if "chain" in config:
                first, second = config["chain"]
                chained = out / f"{name}-chain"
                train(config, chained, folder / f"step-{first}.ckpt", save=True)
                result = train(config, chained, chained / f"step-{second}.ckpt", save=False)
                runs.append(([first, second], result))
        for resume, result in runs:
            print(json.dumps({"config": name, "resume": resume, **result}), flush=True)


if __name__ == "__main__":
    main()
