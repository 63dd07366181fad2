"""The hires fix's middle step: a first pass's latents made bigger, ready for the second pass.

AUTOMATIC1111's "Hires. fix" generates at the base size, upscales, and runs img2img at the larger
size with ``denoising_strength`` (the second pass is the img2img input of the one loop; see
:func:`hires_batch`). Its upscalers come in two kinds, both here:

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


def hires_batch(gen, seeds: list[int], progress=None) -> list[Image.Image]:
    """A1111's "Hires. fix" for one batch of a :class:`~gouache.pipelines.engine.Generation`: the
    batch at the request's size, upscaled ``hr_scale`` times (:func:`upscale_latents`), then img2img
    at that size with ``denoising_strength`` for the last part of a ``hires_steps()``-step schedule,
    from each seed's noise at the new size. Each pass fills half of the progress bar. ControlNets
    guide both passes (their maps resized)."""
    from dataclasses import replace

    from gouache.prompts.conditioning import with_time_ids
    from gouache.sampling.start import ImageStart

    model, req = gen.model, gen.req
    bar = [1]  # the first pass's step count: each pass is reported as that many steps

    def first(i: int, n: int) -> None:
        bar[0] = n
        if progress is not None:
            progress(i, 2 * n)

    def second(i: int, n: int) -> None:
        if progress is not None:
            progress(bar[0] + i * bar[0] // n, 2 * bar[0])

    latents = gen.sample(seeds, first)
    size = req.hires_size(req.width, req.height)
    start = ImageStart(upscale_latents(model, latents, size, req.hr_upscaler), req.denoising_strength)
    steps = req.hires_steps()
    hires = replace(req, width=size[0], height=size[1], steps=steps)
    # prompt editing stays on the first pass's timeline; SDXL sees the new size
    time_ids = model.sdxl_time_ids(*size) if model.is_sdxl else None
    at = with_time_ids(gen.at, time_ids, step_map=lambda step: step * req.steps // steps)
    images = gen.images(seeds, second, start, req=hires, at=at)
    if progress is not None and int(steps * start.strength) == 0:
        progress(2 * bar[0], 2 * bar[0])  # a second pass of no steps still ends the bar
    return images
