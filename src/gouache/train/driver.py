"""The one trainer driver: every ``gouache train`` command but ``base`` is :func:`run` with a :class:`Trainer`.

:func:`run` checks the config, refuses to replace a result that exists (unless ``overwrite``),
loads the base model as the reference (fp32, no speed-ups: what trains must not be a cast copy;
a trainer of a model of its own, ``needs_base = False``, loads none), reads the data, refuses a resume with other settings before writing anything, writes the run's
config into its folder and hands the trainer to the one loop (:func:`gouache.train.loop.train`),
which checkpoints, resumes and finally calls the trainer's ``finish`` to save the result.

A trainer supplies only what differs: its objective (``loss``), what trains (``trainable``), how
the result is saved (``finish``), the data it reads (``load_data``), the files it writes
(``outputs``) and the settings a resumed run must keep (``resume_settings``).

>>> run(LoraTrainConfig(dataset="data/x", out_dir="runs/x"), LoraObjective)  # doctest: +SKIP
PosixPath('runs/x/lora.safetensors')
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, ClassVar

import torch

from gouache.errors import InvalidArgument, OutputError
from gouache.train.checkpoints import check_settings
from gouache.train.config import TrainConfig
from gouache.train.loop import LoopConfig, ObjectiveBase, train, write_config
from gouache.train.processes import process_state

__all__ = ["Trainer", "image_folder", "loop_config", "run"]


class Trainer(ObjectiveBase, ABC):
    """A trainer: an :class:`~gouache.train.loop.Objective` built from its config, the loaded base
    model and the data; the class methods say what :func:`run` needs before it is built."""

    name: ClassVar[str]  # `gouache train NAME`; the log lines' prefix
    makes: ClassVar[str]  # what it trains, plural, for messages: "LoRA", "embeddings"
    sdxl_hint: ClassVar[str] = ""  # said after "... trains SD 1.x and 2.x <makes> so far"
    config_file: ClassVar[str]  # the run's config in its folder, e.g. "lora_config.json"
    needs_base: ClassVar[bool] = True  # False: it trains a model of its own (the built-in CLIP); no base is loaded

    def __init__(self, cfg: TrainConfig, model, dataset):
        self.cfg, self.model, self.dataset = cfg, model, dataset

    @staticmethod
    def frozen_base(model) -> tuple:
        """``(unet, vae, text_encoder, tokenizer)`` of the base ``model``, the three models frozen and in
        eval mode: what an adapter (ControlNet, IP-Adapter, motion module) trains against."""
        pipe = model.pipeline
        for m in (pipe.unet, pipe.vae, pipe.text_encoder):
            m.requires_grad_(False)
            m.eval()
        return pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer

    @abstractmethod
    def trainable(self):
        """The module whose parameters train (those with ``requires_grad``)."""

    @abstractmethod
    def loss(self, model, index: int):
        """The loss of micro-batch ``index`` (batches derive from their index, so a resumed run sees the same)."""

    @abstractmethod
    def finish(self, model, out_dir: Path) -> Path:
        """Save the result; returns its path."""

    @classmethod
    @abstractmethod
    def outputs(cls, cfg: TrainConfig) -> list[Path]:
        """The files (or folders) the run writes at the end."""

    @classmethod
    @abstractmethod
    def load_data(cls, cfg: TrainConfig, model):
        """The training data, checked before anything is written."""

    @classmethod
    def resume_settings(cls, cfg: TrainConfig) -> dict[str, str]:
        """What a resumed run must share with the checkpoints besides the base model, keyed by flag."""
        return {}


def image_folder(cfg: TrainConfig, model):
    """The prepared image folder ``cfg.dataset`` at ``cfg.resolution`` (the model's size if None),
    cropped and flipped as ``cfg`` says: what the LoRA and embedding trainers read."""
    from gouache.data.folder import ImageFolderDataset

    return ImageFolderDataset(Path(cfg.dataset), cfg.resolution or model.native_size, crop=cfg.crop, flip=cfg.flip,
                              seed=cfg.seed)


def loop_config(cfg: TrainConfig, settings: dict[str, str] | None = None) -> LoopConfig:
    """The loop's settings for ``cfg``; ``settings``: what a resumed run must keep."""
    return LoopConfig(Path(cfg.out_dir), cfg.steps, cfg.lr, warmup_steps=cfg.warmup_steps, grad_accum=cfg.grad_accum,
                      mixed_precision=cfg.mixed_precision, checkpoint_minutes=cfg.checkpoint_minutes,
                      log_every=max(min(cfg.steps // 20, 100), 1), seed=cfg.seed,
                      keep_checkpoints=cfg.keep_checkpoints, checkpoint_every=cfg.checkpoint_every,
                      validate_every=cfg.validation_every, optimizer=cfg.optimizer, resume=cfg.resume,
                      settings=dict(settings or {}))


def run(cfg: TrainConfig, trainer: type[Trainer], log: Callable[[str], None] = print) -> Path:
    """Train (or resume) ``trainer`` on ``cfg``; returns what its ``finish`` saved."""
    from gouache.pipelines.model import load_model
    from gouache.speed import SpeedSettings

    cfg.validate()
    out = Path(cfg.out_dir)
    _refuse_existing(trainer.outputs(cfg), cfg)
    model, base = None, {}
    if trainer.needs_base:
        # trainers keep fp32 weights, on this process's device (the frozen VAE and text encoder too:
        # accelerate moves only what trains)
        model = load_model(cfg.base, device=str(process_state().device), speed=SpeedSettings.reference())
        if model.is_sdxl:
            raise InvalidArgument(f"{model.name} is an SDXL model; `gouache train {trainer.name}` trains SD 1.x and "
                                  f"2.x {trainer.makes} so far{trainer.sdxl_hint}")
        base = {"--base": model.name, "base model hash": model.hash}
    dataset = trainer.load_data(cfg, model)
    loop = loop_config(cfg, {**base, **trainer.resume_settings(cfg)})
    check_settings(out / "checkpoints", loop.settings, out)  # before the run's config is written
    main = process_state().is_main_process  # under `accelerate launch`, one process writes the files
    if main:
        write_config(out / trainer.config_file, cfg)
    # what a trainer draws as it is built (peft's LoRA matrices, a ControlNet's control-image encoder):
    # the same --seed, the same start
    torch.manual_seed(cfg.seed)
    result = train(trainer(cfg, model, dataset), loop, log)
    return result if main else trainer.outputs(cfg)[0]  # what the main process wrote


def _refuse_existing(paths: list[Path], cfg: TrainConfig) -> None:
    if cfg.overwrite:
        return
    named = "name" in {f.name for f in dataclasses.fields(cfg)}
    for path in paths:
        if path.exists():
            raise OutputError(f"{path} exists; choose another {'--name or ' if named else ''}--out, "
                              "or pass --overwrite")
