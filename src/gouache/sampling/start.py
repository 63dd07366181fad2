"""Where the one loop starts: pure noise, or an image (img2img's init latents, inpainting's mask).

A start gives :func:`~gouache.sampling.loop.denoise` its first latents and the slice of the
schedule to run (:meth:`ImageStart.begin`), and may wrap the denoiser (:meth:`ImageStart.wrap`).

* **txt2img** — pure noise; :class:`NoiseStart` also says where to stop early (an SDXL base that
  hands its still-noisy latents to the refiner, diffusers' ``denoising_end``).
* **img2img** — the loop starts part-way down the schedule from the init image's latents
  (``ImageStart(latents, strength)``).
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

from gouache.sampling.loop import Blend, Denoiser, Span, first_step, noised


class InpaintingDenoiser:
    """A 9-channel UNet's denoiser: ``[x, mask, masked-image latents]`` go in, noise comes out.

    ``conditioning`` is ``(1 or B, 1 + C, h, w)``: the latent-size mask (1 = repaint) and the
    latents of the image with the repainted area grey, in diffusers' and A1111's channel order.
    It wraps the guided denoiser, so the unconditional and conditional passes both see it.

    >>> denoiser = InpaintingDenoiser(CFGDenoiser(unet_call(unet), at, 7.0), conditioning)   # doctest: +SKIP
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
    end_step: int | None = None  # stop before this sampling step (None: run to the end)

    def __post_init__(self):
        assert self.latent_fill in (None, "noise", "nothing"), self.latent_fill

    def begin(self, scheduler, noise: torch.Tensor, steps: int) -> Span:
        """The batch's first latents (``noise``: one per image) and where in ``scheduler``'s
        timesteps (set for ``steps``) the loop starts: the last ``int(steps · strength)`` steps run,
        from the init latents noised to the first of them (pure noise at strength 1)."""
        init = self.latents.to(noise).expand(noise.shape[0], -1, -1, -1)
        if self.repaint is not None and self.latent_fill is not None:
            repaint = self.repaint.to(noise)
            fill = noise if self.latent_fill == "noise" else torch.zeros_like(noise)
            init = repaint * fill + (1 - repaint) * init
        timesteps = scheduler.timesteps
        first = first_step(scheduler, steps, self.strength)
        if first >= len(timesteps):
            return Span(init, first)
        if hasattr(scheduler, "set_begin_index"):  # schedulers that count steps start counting here
            scheduler.set_begin_index(first)
        if self.noised:
            latents = init
        elif first == 0:
            latents = noise * scheduler.init_noise_sigma
        else:
            latents = noised(scheduler, init, noise, timesteps[first])
        blend = None
        if self.conditioning is None and self.repaint is not None:
            blend = keep_known(scheduler, init, noise, self.repaint.to(noise))
        last = None if self.end_step is None else self.end_step * scheduler.order
        return Span(latents, first, last, blend)

    def wrap(self, denoiser: Denoiser) -> Denoiser:
        """A 9-channel UNet reads the mask and the masked image: the denoiser with them."""
        return denoiser if self.conditioning is None else InpaintingDenoiser(denoiser, self.conditioning)


@dataclass
class NoiseStart:
    """Pure noise, as txt2img starts, stopping before sampling step ``end_step`` (None: the last)."""

    end_step: int | None = None

    def begin(self, scheduler, noise: torch.Tensor, steps: int) -> Span:
        last = None if self.end_step is None else self.end_step * scheduler.order
        return Span(noise * scheduler.init_noise_sigma, 0, last)

    def wrap(self, denoiser: Denoiser) -> Denoiser:
        return denoiser
