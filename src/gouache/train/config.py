"""The settings every trainer shares: :class:`TrainConfig`, which each trainer's config subclasses.

The base holds the run (dataset, run folder, base model, seed, overwrite, resume), the loop
(steps, batch size, learning rate and warm-up, accumulation, mixed precision, optimizer,
checkpoint cadence), the data (resolution, crop, flip, cached latents, caption dropout), the
denoising loss (min-SNR-γ, noise offset) and validation. A subclass adds only what it trains
(a LoRA's rank, an embedding's token, a ControlNet's preprocessor) and names in ``UNUSED`` the
shared fields it does not take (a ControlNet has no crop): those must stay at their defaults, and
the CLI offers no flag for them. The registries the checks read are here too: ``OPTIMIZERS``
(name -> factory), ``SAVE_DTYPES``, ``MIXED_PRECISION``.

>>> cfg = LoraTrainConfig(dataset="data/x", out_dir="runs/x", cache_latents=True, crop="random")  # doctest: +SKIP
>>> cfg.validate()                                                                                # doctest: +SKIP
InvalidArgument: `cache_latents` needs `crop` center: random crops change at every step
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from gouache.data.folder import CROPS
from gouache.errors import InvalidArgument, check_int, check_number
from gouache.train.checkpoints import MIN_KEEP

SAVE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
MIXED_PRECISION = ("no", "bf16", "fp16")  # as accelerate takes them
MAX_STEPS = 10_000_000
MAX_BATCH = 65_536


def _adamw(params, lr, weight_decay):
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _adamw8bit(params, lr, weight_decay):
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise InvalidArgument("the adamw8bit optimizer needs bitsandbytes: pip install bitsandbytes") from None
    return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=weight_decay)


OPTIMIZERS = {"adamw": _adamw, "adamw8bit": _adamw8bit}  # name -> factory(params, lr, weight_decay)


def check_choice(name: str, value, choices) -> None:
    """One :class:`InvalidArgument` naming the field and its choices unless ``value`` is one of them."""
    if value not in choices:
        raise InvalidArgument(f"`{name}` must be one of {', '.join(choices)}, got {value!r}")


def check_loop_fields(cfg) -> None:
    """The training loop's settings, checked the same way wherever they are held (a trainer's
    :class:`TrainConfig`, the loop's own :class:`~gouache.train.loop.LoopConfig`)."""
    check_int("steps", cfg.steps, 1, MAX_STEPS)
    check_lr("lr", cfg.lr)
    check_int("warmup_steps", cfg.warmup_steps, 0, MAX_STEPS)
    check_int("grad_accum", cfg.grad_accum, 1, MAX_BATCH)
    check_choice("mixed_precision", cfg.mixed_precision, MIXED_PRECISION)
    check_choice("optimizer", cfg.optimizer, OPTIMIZERS)
    check_int("checkpoint_every", cfg.checkpoint_every, 0, MAX_STEPS)
    check_number("checkpoint_minutes", cfg.checkpoint_minutes, 0, 10_080, " (0: at every step)")
    check_int("keep_checkpoints", cfg.keep_checkpoints, MIN_KEEP, 1000)


def check_lr(name: str, value) -> None:
    """A learning rate: positive, at most 1."""
    check_number(name, value, 1e-12, 1, " (a positive learning rate)")


def check_name(name: str, value: str, kind: str) -> None:
    """A result's name must be a plain ``kind`` name ("file", "folder"): no path, nothing hidden."""
    if not isinstance(value, str) or not re.fullmatch(r"[\w.\-]+", value) or value.startswith("."):
        raise InvalidArgument(f"`{name}` must be a plain {kind} name (letters, digits, . _ -), got {value!r}")


@dataclass
class TrainConfig:
    """What every trainer takes; see the module docstring. Fields after ``out_dir`` are keyword-only."""

    dataset: Path | str  # a prepared imagefolder (some trainers also take a procedural dataset's name)
    out_dir: Path  # the run folder: checkpoints, loss.jsonl, validation grids, the result
    _: KW_ONLY
    base: str | None = None  # model name or path; the built-in gouache-tiny if None
    steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-4
    warmup_steps: int = 50
    grad_accum: int = 1
    mixed_precision: str = "no"
    optimizer: str = "adamw"  # or "adamw8bit" (needs bitsandbytes)
    resolution: int | None = None  # None: the model's native size
    crop: str = "center"  # or "random"
    flip: bool = False
    cache_latents: bool = False  # encode every image once (needs crop center)
    caption_dropout: float = 0.0
    min_snr_gamma: float = 0.0  # 0: off
    noise_offset: float = 0.0  # 0: off
    checkpoint_every: int = 0  # steps; 0: by time only
    checkpoint_minutes: float = 5.0
    keep_checkpoints: int = 2
    validation_prompts: list[str] = field(default_factory=list)
    validation_every: int = 0  # steps; 0: at the end only
    validation_seed: int = 0
    validation_steps: int = 20
    seed: int = 0
    overwrite: bool = False
    resume: bool = False  # runs continue from their last checkpoint anyway; True: fail if there is none

    UNUSED: ClassVar[tuple[str, ...]] = ()  # shared fields this trainer does not take
    TRAINS: ClassVar[str] = "this trainer"  # what it does, for messages: "LCM distillation"

    def validate(self) -> None:
        """One :class:`InvalidArgument` for the first setting out of range, before anything loads."""
        self._check_unused()
        self._check_loop()
        self._check_data()

    def _check_unused(self) -> None:
        for f in dataclasses.fields(self):
            if f.name in self.UNUSED and getattr(self, f.name) != _default(f):
                raise InvalidArgument(f"`{f.name}` does not apply to {self.TRAINS}; leave it at {_default(f)!r}")

    def _check_loop(self) -> None:
        check_loop_fields(self)
        check_int("batch_size", self.batch_size, 1, MAX_BATCH)
        check_int("validation_every", self.validation_every, 0, MAX_STEPS)
        check_int("validation_steps", self.validation_steps, 1, 150)

    def _check_data(self) -> None:
        if self.resolution is not None:
            check_int("resolution", self.resolution, 8, 8192)
        check_choice("crop", self.crop, CROPS)
        if self.cache_latents and self.crop != "center":
            raise InvalidArgument("`cache_latents` needs `crop` center: random crops change at every step")
        check_number("caption_dropout", self.caption_dropout, 0, 1, " (the fraction of captions dropped)")
        check_number("min_snr_gamma", self.min_snr_gamma, 0, 1000, " (0: off; 5 is usual)")
        check_number("noise_offset", self.noise_offset, 0, 1, " (0: off; 0.05-0.1 is usual)")


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
