"""A loaded model: the diffusers components plus what gouache needs to know about them.

The pipeline object is diffusers' own (so its components are the field's classes); gouache drives
the components itself through the one denoising loop in :mod:`gouache.sampling.loop`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from gouache.models.facts import NO_FACTS, GenerationDefaults, ModelFacts
from gouache.models.latents import from_latents, to_latents


@dataclass
class LoadedModel:
    pipeline: object  # a diffusers StableDiffusion(XL)Pipeline
    name: str  # as written to infotext's "Model:" (file name without extension)
    path: str
    hash: str  # AUTOMATIC1111's short model hash (10 hex digits)
    dtype: torch.dtype = torch.float32
    device: str = "cpu"
    embeddings: object = None  # an EmbeddingLibrary to use instead of scanning $GOUACHE_HOME/embeddings
    speed: dict | None = None  # what gouache.speed.apply_speed did (attention, channels-last, compile, ...)
    facts: ModelFacts = NO_FACTS  # what the model declares about itself (gouache.models.facts)

    @property
    def defaults(self) -> GenerationDefaults:
        """The model's generation defaults; AUTOMATIC1111's when it declares none."""
        return self.facts.defaults

    @property
    def unet(self):
        return self.pipeline.unet

    @property
    def vae(self):
        return self.pipeline.vae

    @property
    def is_sdxl(self) -> bool:
        return getattr(self.pipeline, "text_encoder_2", None) is not None

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def native_size(self) -> int:
        """The resolution the model was trained at (64 for gouache-tiny, 512 for SD 1.5, 1024 for SDXL):
        the one it declares, else the UNet's sample size in pixels."""
        return self.facts.native_size or self.unet.config.sample_size * self.vae_scale_factor

    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels

    @property
    def is_inpainting(self) -> bool:
        """A 9-channel inpainting UNet: latents + mask + masked-image latents go in."""
        return self.unet.config.in_channels == 2 * self.latent_channels + 1

    @property
    def default_cfg_scale(self) -> float:
        """The model's own (:mod:`gouache.models.facts`): 7, AUTOMATIC1111's, unless it declares
        another; gouache-tiny is at its best at 5 (see docs/gouache-tiny.md)."""
        return self.defaults.cfg_scale

    @property
    def default_cfg_truncation(self) -> float:
        """The fraction of the steps guided when a request does not say: 1 unless the model declares
        another; 0.5 for gouache-tiny (see docs/gouache-tiny.md, "The guidance interval")."""
        return self.defaults.cfg_truncation

    @property
    def scheduler_config(self) -> dict:
        return dict(self.pipeline.scheduler.config)

    @property
    def is_refiner(self) -> bool:
        """An SDXL refiner: its UNet reads an aesthetic score where the base reads the target size."""
        return bool(getattr(self.pipeline, "config", {}).get("requires_aesthetics_score", False))

    def refiner_time_ids(self, width: int, height: int, aesthetic_score: float) -> torch.Tensor:
        """The refiner's conditioning: original size, crop top-left, aesthetic score (diffusers'
        ``StableDiffusionXLImg2ImgPipeline._get_add_time_ids``: 6.0 for the prompt, 2.5 for the negative)."""
        return torch.tensor([[height, width, 0, 0, aesthetic_score]], dtype=self.dtype, device=self.device)

    def sdxl_time_ids(self, width: int, height: int) -> torch.Tensor:
        """SDXL's size/crop conditioning: original size, crop top-left, target size (no crop)."""
        return torch.tensor([[height, width, 0, 0, height, width]], dtype=self.dtype, device=self.device)

    # -- images ----------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Latents of ``pixels`` ``(B, 3, H, W)`` in [-1, 1] (see :func:`pixels_of`).

        The mean of the VAE's latent distribution rather than a sample from it, so that the same
        image always gives the same latents and an img2img image depends on its seed alone.
        """
        if pixels.shape[0] > 1:  # one at a time, as decode
            return torch.cat([self.encode(pixels[i : i + 1]) for i in range(pixels.shape[0])])
        dist = self.vae.encode(pixels.to(self.device, self.vae.dtype), return_dict=False)[0]
        return to_latents(self.vae, dist.mode().float()).to(self.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, together: bool = False) -> list[Image.Image]:
        """Images from latents, one at a time (so an image never depends on its batch); ``together``:
        in one batch (a video's frames, which depend on each other anyway: faster)."""
        if latents.shape[0] > 1 and not together:
            return [im for i in range(latents.shape[0]) for im in self.decode(latents[i : i + 1])]
        pixels = self.vae.decode(from_latents(self.vae, latents).to(self.vae.dtype), return_dict=False)[0]
        arr = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return [Image.fromarray(a) for a in arr.permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)]


def pixels_of(image: Image.Image) -> torch.Tensor:
    """An RGB image as a ``(1, 3, H, W)`` tensor in [-1, 1], what :meth:`LoadedModel.encode` takes."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1)[None] / 127.5 - 1


def load_model(name_or_path: str | None = None, dtype: str | torch.dtype | None = None, device: str = "cpu",
               speed=None) -> LoadedModel:
    """Load a model by name (``$GOUACHE_HOME/checkpoints``), path, or ``None`` for built-in gouache-tiny.

    It runs on gouache's default path (:mod:`gouache.speed`): ``dtype`` (a torch dtype or a name;
    default ``speed.dtype``, which defaults to the hardware's best), channels-last, gouache's
    attention processor. ``speed`` is a :class:`gouache.speed.SpeedSettings`;
    ``SpeedSettings.reference()`` gives plain fp32, as stock diffusers runs.

    >>> model = load_model()                     # doctest: +SKIP
    >>> model.name, model.native_size            # doctest: +SKIP
    ('gouache-tiny', 64)
    """
    from pathlib import Path

    from gouache.models.facts import read_facts
    from gouache.models.hashing import model_hash
    from gouache.models.registry import load_pipeline
    from gouache.speed import SpeedSettings, apply_speed
    from gouache.speed.hardware import resolve_dtype

    speed = speed or SpeedSettings()
    speed.validate()
    if torch.device(device).type == "cpu" and speed.attention == "auto":  # the default path, not the reference
        from gouache.speed.hardware import tune_allocator

        tune_allocator()
    wanted = dtype if dtype is not None else speed.dtype
    resolve_dtype(wanted, device)  # a bad name fails before anything loads
    pipeline, entry = load_pipeline(name_or_path, dtype=lambda params: resolve_dtype(wanted, device, params))
    dtype = pipeline.unet.dtype
    pipeline.to(device)
    for module in (pipeline.unet, pipeline.vae, pipeline.text_encoder, getattr(pipeline, "text_encoder_2", None)):
        if module is not None:
            module.eval()
    model = LoadedModel(pipeline, entry.name, str(entry.path), model_hash(Path(entry.path))[:10], dtype, device,
                        facts=read_facts(entry.path))
    model.speed = apply_speed(model, speed)
    return model


def default_cfg_scale(model_name: str | None) -> float:
    """The CFG scale a request without one gets with this model (the CLI, Python, the API and the
    UI's slider alike), read from the model's own defaults without loading it."""
    from gouache.models.facts import read_facts
    from gouache.models.registry import resolve_model

    return read_facts(resolve_model(model_name).path).defaults.cfg_scale
