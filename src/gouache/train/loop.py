"""The one training loop: batch → forward → loss → backward → clip → step → log / checkpoint.

What is trained differs between trainers (the VAE, the denoiser and text encoder, a LoRA, an
embedding); the loop does not. A trainer is an :class:`Objective`: it names the module whose
parameters train, computes the loss of micro-batch ``i`` (batches are derived from their index, so a
resumed run sees exactly the data it would have seen), and saves what it produced at the end.

Checkpoints are written with ``accelerate`` into a temporary folder that is renamed into place only
when complete, so a run killed at any moment resumes from its last complete checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol

import torch

from gouache.errors import InvalidArgument

CHECKPOINT_PREFIX = "step-"


@dataclass
class LoopConfig:
    out_dir: Path
    steps: int
    lr: float
    warmup_steps: int = 100
    grad_accum: int = 1
    mixed_precision: str = "no"  # "no", "bf16" or "fp16", as accelerate takes it
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    checkpoint_minutes: float = 5.0
    log_every: int = 25
    seed: int = 0
    keep_checkpoints: int = 2

    def validate(self) -> None:
        if self.steps < 1:
            raise InvalidArgument(f"`steps` must be at least 1, got {self.steps}")
        if self.lr <= 0 or not math.isfinite(self.lr):
            raise InvalidArgument(f"`lr` must be a positive number, got {self.lr}")
        if self.grad_accum < 1:
            raise InvalidArgument(f"`grad_accum` must be at least 1, got {self.grad_accum}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise InvalidArgument(
                f"`mixed_precision` must be one of no, bf16, fp16, got {self.mixed_precision!r}"
            )


class Objective(Protocol):
    name: str

    def trainable(self) -> torch.nn.Module: ...

    def loss(self, model: torch.nn.Module, index: int) -> torch.Tensor: ...

    def after_step(self, model: torch.nn.Module) -> None: ...

    def save_extra(self, folder: Path) -> None: ...

    def load_extra(self, folder: Path) -> None: ...

    def finish(self, model: torch.nn.Module, out_dir: Path) -> Path: ...


def last_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest complete checkpoint folder (temporary ``.tmp`` folders are ignored)."""
    if not ckpt_dir.is_dir():
        return None
    done = [p for p in ckpt_dir.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and (p / "state.json").is_file()]
    return max(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]), default=None)


def _save_checkpoint(accelerator, objective: Objective, ckpt_dir: Path, step: int, keep: int) -> Path:
    final = ckpt_dir / f"{CHECKPOINT_PREFIX}{step:07d}"
    tmp = ckpt_dir / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    accelerator.save_state(str(tmp))
    objective.save_extra(tmp)
    (tmp / "state.json").write_text(json.dumps({"step": step}))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    old = sorted(p for p in ckpt_dir.iterdir() if p.name.startswith(CHECKPOINT_PREFIX))
    for p in old[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def train(objective: Objective, cfg: LoopConfig, log: Callable[[str], None] = print) -> Path:
    """Run (or resume) ``objective`` for ``cfg.steps`` optimizer steps; returns what ``finish`` saved."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers.optimization import get_cosine_schedule_with_warmup

    cfg.validate()
    out_dir = Path(cfg.out_dir)
    ckpt_dir = out_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "loop_config.json").write_text(json.dumps(asdict(cfg), default=str, indent=2))

    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=cfg.mixed_precision)
    set_seed(cfg.seed)
    model = objective.trainable()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, min(cfg.warmup_steps, cfg.steps // 2), cfg.steps)
    model, opt, sched = accelerator.prepare(model, opt, sched)

    start = 0
    resume = last_checkpoint(ckpt_dir)
    if resume is not None:
        accelerator.load_state(str(resume))
        objective.load_extra(resume)
        start = json.loads((resume / "state.json").read_text())["step"]
        log(f"[{objective.name}] resumed from {resume} at step {start}")

    last_save, t0, running = time.monotonic(), time.monotonic(), []
    for step in range(start, cfg.steps):
        model.train()
        for k in range(cfg.grad_accum):
            with accelerator.accumulate(model):
                loss = objective.loss(model, step * cfg.grad_accum + k)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"[{objective.name}] loss is {loss.item()} at step {step}")
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
            running.append(loss.item())
        objective.after_step(model)
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            rate = (done - start) / (time.monotonic() - t0)
            log(
                f"[{objective.name}] step {done}/{cfg.steps} loss {sum(running) / len(running):.4f} "
                f"lr {sched.get_last_lr()[0]:.2e} {rate:.2f} step/s"
            )
            running = []
        if time.monotonic() - last_save > cfg.checkpoint_minutes * 60 or done == cfg.steps:
            path = _save_checkpoint(accelerator, objective, ckpt_dir, done, cfg.keep_checkpoints)
            log(f"[{objective.name}] checkpoint {path}")
            last_save = time.monotonic()
    return objective.finish(accelerator.unwrap_model(model), out_dir)
