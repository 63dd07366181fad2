"""Starting from an image: img2img's init latents and inpainting's mask, as inputs to the one loop.

* **img2img** — the loop starts part-way down the schedule from the init image's latents
  (``denoise(..., init_latents=, strength=)``).
* **Inpainting with a 4-channel model** — the same, plus a ``blend`` that resets the known region
  after every step to the init latents noised to the level the latents are now at (diffusers'
  ``StableDiffusionInpaintPipeline``; RePaint-style "replacement").
* **Inpainting with a 9-channel inpainting UNet** (SD 1.5/2 inpainting) — the model reads the mask
  and the masked image's latents as 5 extra input channels: a wrapper around the denoiser
  (:class:`InpaintingDenoiser`), as k-diffusion wraps every model-specific feature, not the loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gouache.sampling.loop import Blend, Denoiser, denoise, noised


class InpaintingDenoiser:
    """A 9-channel UNet's denoiser: ``[x, mask, masked-image latents]`` go in, noise comes out.

    ``conditioning`` is ``(1 or B, 1 + C, h, w)``: the latent-size mask (1 = repaint) and the
    latents of the image with the repainted area grey, in diffusers' and A1111's channel order.
    It wraps the guided denoiser, so the unconditional and conditional passes both see it.

    >>> denoiser = InpaintingDenoiser(CFGDenoiser(unet, at, 7.0), conditioning)   # doctest: +SKIP
    """

    def __init__(self, denoiser: Denoiser, conditioning: torch.Tensor):
        self.denoiser, self.conditioning = denoiser, conditioning

    def __call__(self, x: torch.Tensor, t: torch.Tensor, step: int) -> torch.Tensor:
        c = self.conditioning.to(x).expand(x.shape[0], -1, -1, -1)
        return self.denoiser(torch.cat([x, c], dim=1), t, step)


def keep_known(scheduler, init_latents: torch.Tensor, noise: torch.Tensor, repaint: torch.Tensor) -> Blend:
    """A ``blend`` for :func:`~gouache.sampling.loop.denoise`: outside ``repaint`` (1 = repaint), the
    latents after step ``i`` become ``init_latents`` noised to the next timestep (clean after the last).

    Second-order samplers (Heun, DPM2) are left alone half-way through a step: DPM2's midpoint is
    at a noise level between two timesteps, which ``add_noise`` does not know.
    """

    def blend(latents: torch.Tensor, i: int) -> torch.Tensor:
        timesteps = scheduler.timesteps
        if i + 1 >= len(timesteps):
            known = init_latents
        elif not getattr(scheduler, "state_in_first_order", True):
            return latents
        else:
            known = noised(scheduler, init_latents, noise, timesteps[i + 1])
        return repaint * latents + (1 - repaint) * known

    return blend


@dataclass
class ImageStart:
    """What an image gives the loop; one per request, shared by every image of the batch.

    ``latents``: the init image's latents ``(1, C, h, w)``. ``strength``: 0 keeps them, 1 starts
    from pure noise. ``repaint``: the latent-size mask ``(1, 1, h, w)``, 1 = repaint (None for
    img2img). ``conditioning``: mask + masked-image latents for a 9-channel UNet (then the model,
    not a blend, keeps the known region). ``latent_fill``: what the repainted area starts from —
    ``"noise"`` (A1111's "latent noise": each image's own seed noise) or ``"nothing"`` (zeros);
    None keeps the init latents there.
    """

    latents: torch.Tensor
    strength: float
    repaint: torch.Tensor | None = None
    conditioning: torch.Tensor | None = None
    latent_fill: str | None = None
    noised: bool = False  # ``latents`` are already at the first step's noise level (an SDXL base's hand-over)

    def __post_init__(self):
        assert self.latent_fill in (None, "noise", "nothing"), self.latent_fill

    def denoise(self, denoiser: Denoiser, scheduler, noise: torch.Tensor, steps: int,
                generators: list[torch.Generator] | None = None, progress=None, watch=None) -> torch.Tensor:
        """:func:`~gouache.sampling.loop.denoise` from this start, for a batch of ``noise``."""
        init = self.latents.to(noise).expand(noise.shape[0], -1, -1, -1)
        if self.repaint is not None and self.latent_fill is not None:
            repaint = self.repaint.to(noise)
            fill = noise if self.latent_fill == "noise" else torch.zeros_like(noise)
            init = repaint * fill + (1 - repaint) * init
        blend = None
        if self.conditioning is not None:
            denoiser = InpaintingDenoiser(denoiser, self.conditioning)
        elif self.repaint is not None:
            blend = keep_known(scheduler, init, noise, self.repaint.to(noise))
        return denoise(denoiser, scheduler, noise, steps, generators, progress, blend,
                       init_latents=init, strength=self.strength, watch=watch, init_noised=self.noised)
