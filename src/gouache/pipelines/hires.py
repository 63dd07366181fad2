"""The hires fix's middle step: a first pass's latents made bigger, ready for the second pass.

AUTOMATIC1111's "Hires. fix" generates at the base size, upscales, and runs img2img at the larger
size with ``denoising_strength`` (the second pass is the img2img input of the one loop; see
:func:`gouache.pipelines.txt2img.hires_batch`). Its upscalers come in two kinds, both here:

* **"Latent"** (bilinear) and **"Latent (nearest-exact)"** resize the latents themselves
  (A1111's ``latent_upscale_modes``, ``antialias=False``): cheap, but the second pass must repaint
  the blur, so A1111 advises a strength of 0.5 or more.
* **"Lanczos"** decodes, resizes the pixels with PIL's Lanczos filter and encodes again: sharper,
  so a lower strength keeps more of the first image.

>>> big = upscale_latents(model, latents, (128, 128), "Lanczos")   # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image

from gouache.pipelines.model import LoadedModel, pixels_of

LATENT_MODES = {"Latent": "bilinear", "Latent (nearest-exact)": "nearest-exact"}


def lanczos(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` resized to ``size`` (width, height) with PIL's Lanczos filter (A1111's "Lanczos")."""
    return image.convert("RGB").resize(size, Image.Resampling.LANCZOS)


@torch.no_grad()
def upscale_latents(model: LoadedModel, latents: torch.Tensor, size: tuple[int, int], upscaler: str) -> torch.Tensor:
    """``latents`` ``(B, C, h, w)`` brought to the latents of a ``size`` = (width, height) image."""
    width, height = size
    f = model.vae_scale_factor
    if upscaler in LATENT_MODES:
        return F.interpolate(latents.float(), size=(height // f, width // f), mode=LATENT_MODES[upscaler],
                             antialias=False).to(latents.dtype)
    assert upscaler == "Lanczos", upscaler  # requests are validated against HR_UPSCALERS
    images = [lanczos(im, size) for im in model.decode(latents)]
    return torch.cat([model.encode(pixels_of(im)) for im in images])
