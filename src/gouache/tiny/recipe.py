"""gouache-tiny's training recipe: the run that produced the shipped weights, and what the models
it writes declare about themselves.

The architecture the recipe trains is :mod:`gouache.models.tiny_architecture` (what loading the
built-in model needs lives there, below this package); the data is :mod:`gouache.tiny.shapes`; the
trainer is :mod:`gouache.train.base`. Every model the recipe writes, packed or as a diffusers folder,
carries :func:`recipe_facts` (:mod:`gouache.models.facts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gouache.models import builtin
from gouache.models.facts import GenerationDefaults, ModelFacts
from gouache.models.tiny_architecture import SCHEDULER_CONFIG, TinyConfig


def build_noise_scheduler():
    from diffusers import DDPMScheduler

    cfg = {k: v for k, v in SCHEDULER_CONFIG.items() if not k.startswith("_")}
    return DDPMScheduler.from_config(cfg)


# What models of this recipe are measured best at (docs/gouache-tiny.md): written with every model
# the recipe writes (the packed .json, the diffusers folder's gouache.json), read by gouache.models.facts
GENERATION_DEFAULTS = GenerationDefaults(cfg_scale=5.0, cfg_truncation=0.5)


def recipe_facts(vae) -> ModelFacts:
    """What a model of this recipe declares when it is written: its generation defaults and the
    side it was trained at. Figures and preview coefficients are measured on the weights afterwards
    (``gouache evaluate``, ``scripts/fit_preview.py``) and added to the packed ``.json``."""
    return ModelFacts(GENERATION_DEFAULTS, native_size=int(vae.config.sample_size))


def pack(vae, text_encoder, unet, cfg: TinyConfig, out: Path, extra: dict | None = None) -> Path:
    """:func:`gouache.models.builtin.pack` with the recipe's facts (``extra``'s keys win)."""
    return builtin.pack(vae, text_encoder, unet, cfg, out, recipe_facts(vae), extra)


def write_pipeline_folder(vae, text_encoder, unet, folder: Path) -> Path:
    """:func:`gouache.models.builtin.write_pipeline_folder` with the recipe's facts."""
    return builtin.write_pipeline_folder(vae, text_encoder, unet, folder, recipe_facts(vae))


@dataclass
class RecipeDefaults:
    """The training run that produced the shipped weights (see README, "gouache-tiny")."""

    vae_steps: int = 1600
    vae_batch_size: int = 32
    vae_outline_fraction: float = 0.5  # of each VAE batch: outlines, so a LoRA can teach that style
    vae_lr: float = 1e-3
    diffusion_steps: int = 4000
    diffusion_batch_size: int = 64
    diffusion_lr: float = 8e-4
    caption_dropout: float = 0.1
    ema_decay: float = 0.999
    min_snr_gamma: float = 5.0
    vae_styles_steps: int = 0  # stage 3 (--extend-vae's patch for older models): off
    vae_styles_lr: float = 5e-4
    text_parts_steps: int = 1500  # stage 4: the text encoder learns the parts of a caption ("on a blue background")
    text_parts_lr: float = 1e-3
    text_parts_keep: float = 1.0  # weight of stage 4's keeping loss (whole captions' and the empty prompt's encodings)
    extra: dict = field(default_factory=dict)
