"""The one training loop: batch → forward → loss → backward → clip → step → log / checkpoint.

What is trained differs between trainers (the VAE, the denoiser and text encoder, a LoRA, an
embedding); the loop does not. A trainer is an :class:`Objective`: it names the module whose
parameters train, computes the loss of micro-batch ``i`` (batches are derived from their index, so a
resumed run sees exactly the data it would have seen), and saves what it produced at the end.

Checkpoints are written with ``accelerate`` into a temporary folder that is fsynced and renamed
into place only when complete, so a run killed at any moment resumes from its last complete
checkpoint, and a damaged newest checkpoint is skipped for the one before it (see
:mod:`gouache.train.checkpoints`). A checkpoint holds only the parameters that train (a LoRA's few
megabytes, not the frozen UNet around it), the optimizer, the learning-rate schedule, the random
states and the settings a resumed run must keep (``LoopConfig.settings``: a LoRA's rank, the base
model), so the resumed run continues exactly, or is refused before it changes anything.

Every step's loss is appended to ``loss.jsonl`` in the run folder, which is never rewritten: a
resumed run appends a ``{"resumed_from": step}`` line and the steps it redoes, and
:func:`read_losses` reads the file as the run stands. ``loss.png`` plots it at the end. An
objective with a ``validate(model, step, folder)`` method is asked for validation images every
``validate_every`` steps (or figures: its ``validation_kind`` says which).

What stops a run is one :class:`~gouache.errors.GouacheError` with what to do (a full disk, a loss
that became NaN, a resume with other settings), never a half-written file under a published name.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import torch

from gouache.errors import GouacheError, InvalidArgument, OutputError, check_int, check_number
from gouache.train.checkpoints import (CHECKPOINT_PREFIX, check_settings, last_checkpoint, resume, save_checkpoint,
                                       write_synced)
from gouache.train.config import MAX_STEPS, OPTIMIZERS, check_loop_fields
from gouache.train.processes import WHOLE, Shard, process_state, takes_shards, use_cpu

__all__ = ["CHECKPOINT_PREFIX", "LoopConfig", "OPTIMIZERS", "Objective", "ObjectiveBase", "TrainingDiverged",
           "last_checkpoint", "plot_losses", "read_losses", "train", "write_config"]


class TrainingDiverged(GouacheError, FloatingPointError):
    """The loss became NaN or infinite; the run stopped before that step changed the weights."""


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
    checkpoint_every: int = 0  # steps; 0: by time only (checkpoint_minutes)
    validate_every: int = 0  # steps; 0: only at the end (if the objective validates at all)
    optimizer: str = "adamw"  # or "adamw8bit" (needs bitsandbytes)
    resume: bool = False  # a run always continues from its last checkpoint; True: it is an error if there is none
    # what a resumed run must share with its checkpoints, keyed by the flag that sets it: {"--rank": "8"}
    settings: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        check_loop_fields(self)
        check_number("max_grad_norm", self.max_grad_norm, 0, 1e6, " (0: no clipping)")
        check_number("weight_decay", self.weight_decay, 0, 1)
        check_int("log_every", self.log_every, 1, MAX_STEPS)
        check_int("validate_every", self.validate_every, 0, MAX_STEPS)


class Objective(Protocol):
    name: str

    def trainable(self) -> torch.nn.Module: ...

    def loss(self, model: torch.nn.Module, index: int) -> torch.Tensor: ...

    def after_step(self, model: torch.nn.Module) -> None: ...

    def save_extra(self, folder: Path) -> None: ...

    def load_extra(self, folder: Path) -> None: ...

    def finish(self, model: torch.nn.Module, out_dir: Path) -> Path: ...


class ObjectiveBase:
    """No-op defaults for the hooks most objectives do not need (an EMA does: see ``base.py``)."""

    # the rows of each global micro-batch this process computes; the loop sets it for a loss marked
    # `processes.sharded` (see gouache.train.processes)
    shard: Shard = WHOLE

    def after_step(self, model: torch.nn.Module) -> None:
        pass

    def save_extra(self, folder: Path) -> None:
        pass

    def load_extra(self, folder: Path) -> None:
        pass


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def _register_partial_state(accelerator) -> None:
    """Checkpoints hold the trainable parameters only (``trainable.safetensors``)."""
    from safetensors.torch import load_file, save

    def save_hook(models, weights, folder):
        for i, m in enumerate(models):
            if accelerator.is_main_process:  # accelerate calls the hook in every process: one writes
                write_synced(Path(folder) / f"trainable_{i}.safetensors", save(_trainable_state(_inner(accelerator, m))))
        weights.clear()  # accelerate would otherwise save the full (frozen) models too

    def load(models, folder):
        for i in range(len(models)):
            m = _inner(accelerator, models.pop())
            state = load_file(str(Path(folder) / f"trainable_{len(models)}.safetensors"))
            missing = set(_trainable_state(m)) - set(state)
            if missing:
                raise RuntimeError(f"checkpoint {folder} lacks {sorted(missing)[:3]}")
            m.load_state_dict(state, strict=False)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load)


class _LossOf(torch.nn.Module):
    """The trainable module with the objective's loss as its ``forward``: accelerate's wrappers act on
    a forward, so the loss runs inside it (DDP, with several processes, averages the gradients only
    of a backward that follows its forward; mixed precision autocasts it). Checkpoints and the
    objective see ``module`` itself."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, loss: Callable[[torch.nn.Module, int], torch.Tensor], index: int) -> torch.Tensor:
        return loss(self.module, index)


def _inner(accelerator, prepared: torch.nn.Module) -> torch.nn.Module:
    """The objective's trainable module inside what ``accelerator.prepare`` made of its :class:`_LossOf`."""
    return accelerator.unwrap_model(prepared).module


def write_config(path: Path, cfg) -> Path:
    """A run's config (a dataclass) as JSON in its folder, written atomically: a kill never leaves half."""
    from gouache.metadata.png import atomic_write_bytes

    return atomic_write_bytes(path, json.dumps(asdict(cfg), default=str, indent=2).encode(), overwrite=True)


@dataclass
class _Parts:
    """What ``accelerate`` prepared: the module that trains (``model``; ``step`` is it wrapped to run
    the loss, see :class:`_LossOf`), its trainable parameters, the optimizer and the learning-rate schedule."""

    accelerator: object
    model: torch.nn.Module
    step: torch.nn.Module
    params: list[torch.nn.Parameter]
    opt: torch.optim.Optimizer
    sched: object


def train(objective: Objective, cfg: LoopConfig, log: Callable[[str], None] = print) -> Path:
    """Run (or resume) ``objective`` for ``cfg.steps`` optimizer steps; returns what ``finish`` saved."""
    cfg.validate()
    out_dir = Path(cfg.out_dir)
    ckpt_dir = out_dir / "checkpoints"
    check_settings(ckpt_dir, cfg.settings, out_dir)  # before this run writes anything
    main = process_state().is_main_process  # the one process that logs, validates and writes files
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    if main:
        write_config(out_dir / "loop_config.json", cfg)
    else:
        log = _quiet
    parts = _prepare(objective, cfg)
    accelerator = parts.accelerator
    start = resume(accelerator, objective.load_extra, ckpt_dir, cfg.settings, log, objective.name)
    if start == 0 and cfg.resume:
        raise InvalidArgument(f"nothing to resume: {ckpt_dir} holds no complete checkpoint")
    losses = _LossLog(out_dir / "loss.jsonl", start, enabled=main)
    bar = _progress(cfg.steps, start, objective.name, enabled=main)
    last_save, t0, running = time.monotonic(), time.monotonic(), []
    for step in range(start, cfg.steps):
        running += _mean_over_processes(accelerator, _optimizer_step(objective, cfg, parts, step))
        objective.after_step(parts.model)
        done = step + 1
        losses.add(done, sum(running[-cfg.grad_accum:]) / cfg.grad_accum, parts.sched.get_last_lr()[0])
        bar.update(1)
        bar.set_postfix(loss=f"{running[-1]:.4f}", refresh=False)
        if done % cfg.log_every == 0 or done == cfg.steps:
            rate = (done - start) / (time.monotonic() - t0)
            log(f"[{objective.name}] step {done}/{cfg.steps} loss {sum(running) / len(running):.4f} "
                f"lr {parts.sched.get_last_lr()[0]:.2e} {rate:.2f} step/s")
            running = []
        if main and (done == cfg.steps or (cfg.validate_every and done % cfg.validate_every == 0)):
            _validate(objective, parts, done, out_dir / "validation", log)
        timed = _main_decides(accelerator, time.monotonic() - last_save > cfg.checkpoint_minutes * 60)
        if timed or done == cfg.steps or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
            path = save_checkpoint(accelerator, objective.save_extra, ckpt_dir, done, cfg.keep_checkpoints,
                                   cfg.settings)
            log(f"[{objective.name}] checkpoint {path}")
            last_save = time.monotonic()
    bar.close()
    accelerator.wait_for_everyone()
    if not main:
        return out_dir
    return _finish(objective, parts.model, out_dir, ckpt_dir, losses.read())


def _prepare(objective: Objective, cfg: LoopConfig) -> _Parts:
    """The accelerator (checkpoints of the trainable parameters only), seeded, and what it prepared."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed
    from diffusers.optimization import get_cosine_schedule_with_warmup

    # split_batches: a step's batch is the global one, split over the processes (processes.py), so the
    # learning-rate schedule steps once per optimizer step, not once per process
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=cfg.mixed_precision,
                              cpu=use_cpu(), dataloader_config=DataLoaderConfiguration(split_batches=True))
    _register_partial_state(accelerator)
    set_seed(cfg.seed)
    model = objective.trainable()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = objective.param_groups(model, cfg.lr) if hasattr(objective, "param_groups") else params
    opt = OPTIMIZERS[cfg.optimizer](groups, cfg.lr, cfg.weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, min(cfg.warmup_steps, cfg.steps // 2), cfg.steps)
    step, opt, sched = accelerator.prepare(_LossOf(model), opt, sched)
    if takes_shards(objective):
        objective.shard = Shard(accelerator.process_index, accelerator.num_processes)
    return _Parts(accelerator, _inner(accelerator, step), step, params, opt, sched)


def _mean_over_processes(accelerator, values: list[float]) -> list[float]:
    """The mean of each value over the processes: the loss of the global micro-batch (what one process
    with the whole batch logs), not the main process's part of it."""
    if accelerator.num_processes == 1:
        return values
    return accelerator.reduce(torch.tensor(values, dtype=torch.float64, device=accelerator.device), "mean").tolist()


def _main_decides(accelerator, flag: bool) -> bool:
    """The main process's ``flag`` in every process: a decision read from a clock (a timed checkpoint,
    which every process must take part in) is taken once."""
    if accelerator.num_processes == 1:
        return flag
    from accelerate.utils import broadcast

    return bool(broadcast(torch.tensor([int(flag)], device=accelerator.device), from_process=0).item())


def _quiet(_: str) -> None:
    pass


def _optimizer_step(objective: Objective, cfg: LoopConfig, parts: _Parts, step: int) -> list[float]:
    """Optimizer step ``step``: ``cfg.grad_accum`` micro-batches, clipped; returns their losses."""
    accelerator, model = parts.accelerator, parts.step
    model.train()
    losses = []
    for k in range(cfg.grad_accum):
        with accelerator.accumulate(model):
            index = step * cfg.grad_accum + k  # the global micro-batch: a sharded loss takes its rows of it
            if not takes_shards(objective):  # else each process draws micro-batches of its own
                index = index * accelerator.num_processes + accelerator.process_index
            loss = model(objective.loss, index)
            if not torch.isfinite(loss):
                raise TrainingDiverged(_diverged(objective.name, loss.item(), step + 1, cfg))
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                accelerator.clip_grad_norm_(parts.params, cfg.max_grad_norm)
            parts.opt.step()
            parts.sched.step()
            parts.opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def _validate(objective: Objective, parts: _Parts, step: int, folder: Path, log: Callable[[str], None]) -> None:
    """Validation images of an objective that draws them (``objective.validate``)."""
    if not hasattr(objective, "validate"):
        return
    device = parts.accelerator.device
    # the main process validates alone; what it draws must not move its random state from the others'
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        path = objective.validate(parts.model, step, folder)
    if path is not None:  # None: no validation prompts, nothing written
        log(f"[{objective.name}] validation {getattr(objective, 'validation_kind', 'images')} {path}")


def _finish(objective: Objective, model: torch.nn.Module, out_dir: Path, ckpt_dir: Path, losses: list[dict]) -> Path:
    """The loss curve and ``objective.finish``; a result that cannot be written (a full disk) is one
    error that says the trained weights wait in the last checkpoint, and running again saves them
    without training again."""
    try:
        plot_losses(losses, out_dir / "loss.png", title=f"{objective.name} loss")
        return objective.finish(model, out_dir)
    except (OSError, OutputError) as err:
        reason = f"cannot save the result in {out_dir}: {err.strerror}" if isinstance(err, OSError) else str(err)
        raise OutputError(f"{reason}. Training itself finished and its weights are kept in "
                          f"{last_checkpoint(ckpt_dir)}: fix that and run the same command again to save them "
                          "(it does not train again)") from err


def _diverged(name: str, value: float, step: int, cfg: LoopConfig) -> str:
    kept = last_checkpoint(Path(cfg.out_dir) / "checkpoints")
    where = f"its last checkpoint {kept} is kept" if kept else "it has no checkpoint yet"
    return (f"the {name} loss became {value} at step {step}, so the run stopped before that step changed the "
            f"weights; {where}. Train again in a new --out folder with a lower learning rate (--lr, now {cfg.lr:g}) "
            "or more --warmup-steps; resuming this run would reach the same step the same way")


def read_losses(path: Path) -> list[dict]:
    """The rows of a ``loss.jsonl`` as the run stands: one per step, in step order.

    The file is only ever appended to. A run that resumes (or starts again) where rows exist appends
    ``{"resumed_from": N}``, which drops the rows after step N written before it; a step written twice
    counts as written last; a line cut short by a kill is skipped. The web UI reads the file this way.

    >>> read_losses(Path("runs/x/loss.jsonl"))[-1]  # doctest: +SKIP
    {'step': 120, 'loss': 0.1123, 'lr': 9.5e-05}
    """
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return []
    rows: dict[int, dict] = {}
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if not isinstance(row, dict):
            continue
        if isinstance(row.get("resumed_from"), int):
            rows = {s: r for s, r in rows.items() if s <= row["resumed_from"]}
        elif isinstance(row.get("step"), int):
            rows[row["step"]] = row
    return [rows[s] for s in sorted(rows)]


class _LossLog:
    """``loss.jsonl``: one line per optimizer step, appended; see :func:`read_losses`."""

    def __init__(self, path: Path, start: int, enabled: bool = True):
        self.path, self.enabled = path, enabled
        if enabled and path.is_file() and path.stat().st_size:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                cut = f.read(1) != b"\n"  # a kill in the middle of a line: end it, so the next one stands alone
            self._append(("\n" if cut else "") + json.dumps({"resumed_from": start}) + "\n")

    def read(self) -> list[dict]:
        return read_losses(self.path)

    def add(self, step: int, loss: float, lr: float) -> None:
        if self.enabled:
            self._append(json.dumps({"step": step, "loss": round(loss, 6), "lr": lr}) + "\n")

    def _append(self, text: str) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)


def _progress(total: int, start: int, name: str, enabled: bool = True):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=name, unit="step", disable=None if enabled else True, dynamic_ncols=True)


def plot_losses(rows: list[dict], path: Path, title: str = "loss", size: tuple[int, int] = (640, 360)) -> Path | None:
    """A loss curve (raw steps in grey, a moving average in blue) as a PNG, drawn with PIL."""
    from PIL import Image, ImageDraw

    import io

    from gouache.metadata.png import atomic_write_bytes

    if len(rows) < 2:
        return None
    steps = [r["step"] for r in rows]
    vals = [r["loss"] for r in rows]
    k = max(len(vals) // 50, 1)
    smooth = [sum(vals[max(i - k + 1, 0) : i + 1]) / len(vals[max(i - k + 1, 0) : i + 1]) for i in range(len(vals))]
    w, h = size
    left, right, top, bottom = 60, 15, 28, 30
    lo, hi = min(vals), max(vals)
    hi = hi if hi > lo else lo + 1e-6
    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)

    def xy(s, v):
        x = left + (s - steps[0]) / max(steps[-1] - steps[0], 1) * (w - left - right)
        return x, top + (hi - v) / (hi - lo) * (h - top - bottom)

    d.rectangle([left, top, w - right, h - bottom], outline=(160, 160, 160))
    d.line([xy(s, v) for s, v in zip(steps, vals)], fill=(190, 190, 190), width=1)
    d.line([xy(s, v) for s, v in zip(steps, smooth)], fill=(35, 70, 220), width=2)
    d.text((left, 8), f"{title}: steps {steps[0]}-{steps[-1]}, last {smooth[-1]:.4f}", fill="black")
    d.text((4, top), f"{hi:.4f}", fill="black")
    d.text((4, h - bottom - 10), f"{lo:.4f}", fill="black")
    d.text((left, h - bottom + 8), str(steps[0]), fill="black")
    d.text((w - right - 40, h - bottom + 8), str(steps[-1]), fill="black")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue(), overwrite=True)
