"""gouache-tiny's architecture: Stable Diffusion's component classes at a size a CPU can train.

The components are exactly SD 1.x's — ``AutoencoderKL``, ``CLIPTextModel`` + ``CLIPTokenizer``,
``UNet2DConditionModel`` and a DDIM/DDPM scheduler config with SD's scaled-linear betas — so any
code that runs Stable Diffusion runs gouache-tiny, only smaller: 64×64 images, 8×8×4 latents.

This is what loading needs to rebuild the built-in model from its packed file (whose ``.json``
carries the :class:`TinyConfig` it was trained with); the training recipe is :mod:`gouache.tiny.recipe`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class TinyConfig:
    """Sizes of gouache-tiny's components (the defaults are the shipped model's)."""

    resolution: int = 64
    vae_channels: tuple[int, ...] = (16, 32, 64, 64)  # 4 blocks: 3 downsamplings, latents at 1/8
    latent_channels: int = 4
    unet_channels: tuple[int, ...] = (64, 128, 128)
    unet_layers_per_block: int = 1
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TinyConfig":
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**d)


# Stable Diffusion 1.x's noise schedule, unchanged. The folder's scheduler is what plain diffusers
# samples with at its defaults (50 steps, CFG 7.5): DDIM, a one-step method. SD 1.5 ships PNDM, a
# 4th-order multistep method, which guidance makes unstable on gouache-tiny's flat-colour world
# (scripts/quality/guidance_stiffness.py; docs/gouache-tiny.md). The spacing is written out:
# diffusers' from_config does not carry a default to a class whose default differs.
SCHEDULER_CONFIG: dict = {
    "_class_name": "DDIMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "clip_sample": False,
    "timestep_spacing": "leading",
    "trained_betas": None,
}


def build_vae(cfg: TinyConfig):
    from diffusers import AutoencoderKL

    n = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.vae_channels,
        layers_per_block=1,
        latent_channels=cfg.latent_channels,
        norm_num_groups=8,
        sample_size=cfg.resolution,
    )


def build_text_encoder(cfg: TinyConfig):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,  # CLIP's BPE vocabulary, see gouache.models.clip_tokenizer
            hidden_size=cfg.text_hidden,
            intermediate_size=cfg.text_hidden * 4,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=cfg.text_heads,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )


def build_unet(cfg: TinyConfig):
    from diffusers import UNet2DConditionModel

    n = len(cfg.unet_channels)
    return UNet2DConditionModel(
        sample_size=cfg.resolution // 8,
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        layers_per_block=cfg.unet_layers_per_block,
        block_out_channels=cfg.unet_channels,
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
        cross_attention_dim=cfg.text_hidden,
        attention_head_dim=8,
        norm_num_groups=32,
    )
