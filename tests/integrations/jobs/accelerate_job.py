"""accelerate jobs for the accumulation matrix (tests/integrations/test_accumulation.py); the
same command line and output as :mod:`tests.integrations.jobs.hf_job`.  The documented recipe:
the rngstate loader is not prepared, ``register_for_checkpointing(rngstate.stateful(), loader)``,
``with accelerator.accumulate(model)``; ``save_state`` after each optimizer step
(``accelerator.sync_gradients``) into ``state-N`` (N: optimizer steps)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import accelerate
import torch
from torch import nn

import rngstate
import rngstate.torch
from tests.integrations.jobs.common import Noisy, Tiny, weights_hash


class Steps:
    """The optimizer steps taken, saved with the state."""

    def __init__(self) -> None:
        self.steps = 0

    def state_dict(self) -> dict[str, int]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.steps = state["steps"]


def train(config: dict[str, Any], out: Path, resume: Path | None, save: bool) -> dict[str, Any]:
    torch.set_num_threads(1)
    accelerator = accelerate.Accelerator(cpu=True, gradient_accumulation_steps=config["accumulation"])
    rngstate.seed_everything(0)
    model = Tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    model, optimizer = accelerator.prepare(model, optimizer)
    loader = rngstate.torch.DataLoader(
        Noisy(config["samples"]), name="train", batch_size=2, shuffle=True,
        drop_last=config.get("drop_last", False),
    )
    progress = Steps()
    accelerator.register_for_checkpointing(rngstate.stateful(), loader, progress)
    if resume is not None:
        accelerator.load_state(str(resume))
    epochs, max_steps = config.get("epochs", 2), config.get("max_steps") or None
    for epoch in range(loader.epoch, epochs):
        loader.set_epoch(epoch)
        for x, y in loader:
            with accelerator.accumulate(model):
                loss = nn.functional.cross_entropy(model(x), y)
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                progress.steps += 1
                if save:
                    accelerator.save_state(str(out / f"state-{progress.steps}"))
                if progress.steps == max_steps:
                    break
        if progress.steps == max_steps:
            break
    return {"hash": weights_hash(accelerator.unwrap_model(model)), "global_step": progress.steps}


def main() -> None:
    mode, out, configs = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    for name, config in configs.items():
        folder = out / name
        runs: list[tuple[Any, dict[str, Any]]] = []
        if mode == "reference":
            runs.append((None, train(config, folder, None, save=True)))
        else:
            for step in config.get("resume", []):
                runs.append((step, train(config, folder, folder / f"state-{step}", save=False)))
            if "chain" in config:
                first, second = config["chain"]
                chained = out / f"{name}-chain"
                train(config, chained, folder / f"state-{first}", save=True)
                result = train(config, chained, chained / f"state-{second}", save=False)
                runs.append(([first, second], result))
        for resume, result in runs:
            print(json.dumps({"config": name, "resume": resume, **result}), flush=True)


if __name__ == "__main__":
    main()
