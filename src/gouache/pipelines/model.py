"""A loaded model: the diffusers components plus what gouache needs to know about them.

The pipeline object is diffusers' own (so its components are the field's classes); gouache drives
the components itself through the one denoising loop in :mod:`gouache.sampling.loop`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from gouache.sampling.guidance import Conditioning

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    pipeline: object  # a diffusers StableDiffusion(XL)Pipeline
    name: str  # as written to infotext's "Model:" (file name without extension)
    path: str
    hash: str  # AUTOMATIC1111's short model hash (10 hex digits)
    dtype: torch.dtype = torch.float32
    device: str = "cpu"

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
        """The resolution the model was trained at (64 for gouache-tiny, 512 for SD 1.5, 1024 for SDXL)."""
        return self.unet.config.sample_size * self.vae_scale_factor

    @property
    def scheduler_config(self) -> dict:
        return dict(self.pipeline.scheduler.config)

    # -- text ------------------------------------------------------------------------------------
    def _tokens(self, tokenizer, prompts: list[str]) -> torch.Tensor:
        """Token ids padded to the encoder's window; longer prompts are cut there (with a warning)."""
        limit = tokenizer.model_max_length
        rows = []
        for ids in tokenizer(prompts, truncation=False).input_ids:
            if len(ids) > limit:
                log.warning("prompt is longer than %d tokens; the rest is cut off", limit)
                ids = ids[: limit - 1] + ids[-1:]
            rows.append(ids + [tokenizer.pad_token_id] * (limit - len(ids)))
        return torch.tensor(rows, device=self.device)

    @torch.no_grad()
    def encode(self, prompts: list[str], width: int, height: int) -> Conditioning:
        """Plain CLIP conditioning for each prompt (SD 1.x/2.x: last layer; SDXL: both encoders' penultimate)."""
        p = self.pipeline
        if not self.is_sdxl:
            hidden = p.text_encoder(self._tokens(p.tokenizer, prompts))[0]
            return Conditioning(hidden.to(self.dtype))
        states, pooled = [], None
        for tok, enc in ((p.tokenizer, p.text_encoder), (p.tokenizer_2, p.text_encoder_2)):
            out = enc(self._tokens(tok, prompts), output_hidden_states=True)
            states.append(out.hidden_states[-2])
            pooled = out[0]  # text_encoder_2's projected pooled output
        time_ids = torch.tensor([[height, width, 0, 0, height, width]] * len(prompts), dtype=self.dtype)
        return Conditioning(torch.cat(states, dim=-1).to(self.dtype), pooled.to(self.dtype), time_ids.to(self.device))

    # -- images ----------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> list[Image.Image]:
        scaled = latents / self.vae.config.scaling_factor
        if getattr(self.vae.config, "shift_factor", None):
            scaled = scaled + self.vae.config.shift_factor
        pixels = self.vae.decode(scaled.to(self.vae.dtype), return_dict=False)[0]
        arr = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return [Image.fromarray(a) for a in arr.permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)]


def load_model(name_or_path: str | None = None, dtype: torch.dtype = torch.float32, device: str = "cpu") -> LoadedModel:
    """Load a model by name (``$GOUACHE_HOME/checkpoints``), path, or ``None`` for built-in gouache-tiny.

    >>> model = load_model()                     # doctest: +SKIP
    >>> model.name, model.native_size            # doctest: +SKIP
    ('gouache-tiny', 64)
    """
    from pathlib import Path

    from gouache.models.hashing import model_hash
    from gouache.models.registry import load_pipeline

    pipeline, entry = load_pipeline(name_or_path, dtype=dtype)
    pipeline.to(device)
    for module in (pipeline.unet, pipeline.vae, pipeline.text_encoder, getattr(pipeline, "text_encoder_2", None)):
        if module is not None:
            module.eval()
    return LoadedModel(pipeline, entry.name, str(entry.path), model_hash(Path(entry.path))[:10], dtype, device)
