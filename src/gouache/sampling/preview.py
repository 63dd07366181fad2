"""Cheap previews of the latents while the loop runs (AUTOMATIC1111's "Approx cheap").

A fixed linear map of the latent channels to RGB, at the latents' resolution: no VAE call, so a
preview costs almost nothing. The map depends on the VAE, so it is a fact about the model: one the
model declares (``latent_preview`` in its ``gouache.json`` or packed ``.json``,
:mod:`gouache.models.facts`; gouache-tiny's was fitted by ``scripts/fit_preview.py``), else its
architecture's: A1111's (``sd_vae_approx.cheap_approximation``) for SD 1.x/2.x's VAE and SDXL's.

>>> txt2img(model, request, preview=lambda step, total, image: image.save(f"step{step}.png"))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image

# (step, total, image) -> None; step counts the steps run so far of the pass's ``total``
Preview = Callable[[int, int, Image.Image], None]

# A1111's coefficients (no offset) for SD 1.x/2.x's VAE and for SDXL's
SD_LATENT_RGB = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))
SDXL_LATENT_RGB = ((0.3448, 0.4168, 0.4395), (-0.1953, -0.0290, 0.0250), (0.1074, 0.0886, -0.0163),
                   (-0.3730, -0.2499, -0.2088))


def latent_rgb(model) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(4, 3)`` matrix and ``(3,)`` offset for ``model``'s VAE: the model's own, else its architecture's."""
    declared = model.facts.preview
    if declared is not None:
        return torch.tensor(declared.matrix), torch.tensor(declared.bias)
    return torch.tensor(SDXL_LATENT_RGB if model.is_sdxl else SD_LATENT_RGB), torch.zeros(3)


def approx_cheap(latents: torch.Tensor, matrix: torch.Tensor, bias: torch.Tensor) -> list[Image.Image]:
    """One RGB image per latent of ``latents`` ``(B, 4, h, w)``, at ``h × w``."""
    rgb = torch.einsum("bchw,cr->bhwr", latents.float().cpu(), matrix) + bias
    arr = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in arr]


def previewer(model, preview: Preview | None, every: int) -> Callable[[int, int, torch.Tensor], None] | None:
    """What the loop calls with its latents after each step (see :func:`~gouache.sampling.loop.denoise`):
    every ``every`` steps and after the last, ``preview`` gets the cheap decode (a grid for a batch)."""
    if preview is None:
        return None
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        from gouache.errors import InvalidArgument

        raise InvalidArgument(f"`preview_every` must be a whole number of steps, 1 or more, got {every!r}")
    matrix, bias = latent_rgb(model)

    def watch(step: int, total: int, latents: torch.Tensor) -> None:
        if step % every == 0 or step == total:
            from gouache.images import image_grid

            images = approx_cheap(latents, matrix, bias)
            preview(step, total, images[0] if len(images) == 1 else image_grid(images))

    return watch
