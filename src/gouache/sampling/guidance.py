"""Classifier-free guidance and composable diffusion, as a wrapper around the model call.

``eps = uncond + scale · Σᵢ wᵢ · (condᵢ − uncond)``: classifier-free guidance (Ho & Salimans, 2022)
with one ``cond`` per ``AND`` part of the prompt (composable diffusion, Liu et al., 2022, as
AUTOMATIC1111 combines it). Wrapping the model rather than the loop (k-diffusion's CFGDenoiser
idea) means every sampler gets guidance for free; the conditioning is asked for at every step, so
prompt schedules and alternation take effect where they should.
"""

from __future__ import annotations

from typing import Callable

import torch

from gouache.prompts.conditioning import Conditioning, ConditioningAt

__all__ = ["CFGDenoiser", "Conditioning", "ConditioningAt", "ModelCall", "PerImage", "unet_call"]


# residuals(x, t, step, conditioning) -> extra UNet keyword arguments (ControlNet's, see
# gouache.control.guidance): inputs to the model call, computed for the batch the UNet sees
Residuals = Callable[[torch.Tensor, torch.Tensor, int, Conditioning], dict]


# model_call(x, t, conditioning, step, slot) -> the UNet's prediction for batch x; ``slot`` names the
# image being made (per-image state such as DeepCache's features is kept per slot)
ModelCall = Callable[[torch.Tensor, torch.Tensor, Conditioning, int, int], torch.Tensor]


def unet_call(unet, residuals: Residuals | None = None) -> ModelCall:
    """The plain model call: ``unet`` on the batch, with ``residuals``' extra inputs (ControlNet's)."""

    def call(x: torch.Tensor, t: torch.Tensor, c: Conditioning, step: int = 0, slot: int = 0) -> torch.Tensor:
        extra = residuals(x, t, step, c) if residuals is not None else {}
        return unet(x, t, encoder_hidden_states=c.hidden, added_cond_kwargs=c.added_kwargs(), return_dict=False,
                    **extra)[0]

    return call


class CFGDenoiser:
    """The guided model call ``denoiser(x, t, step)`` for the one loop.

    ``model_call`` is :func:`unet_call` or a wrapper of it (:meth:`gouache.speed.deepcache.DeepCache.model_call`).
    ``uncond_until``: CFG truncation (guidance only before this sampling step: gouache-tiny's default
    at half the steps, elsewhere an approximation for speed); from this step on, the unconditional
    pass is skipped and the first prompt's prediction stands in for it (AUTOMATIC1111's rule when it
    skips the uncond, its "NGMS"): one prompt gives its own prediction, guidance off.
    """

    def __init__(self, model_call: ModelCall, conditioning_at: ConditioningAt, scale: float,
                 uncond_until: int | None = None):
        self.model_call, self.conditioning_at, self.scale = model_call, conditioning_at, scale
        self.uncond_until = uncond_until
        self._batches: dict = {}

    def batch_of(self, parts: list[Conditioning], n: int) -> Conditioning:
        """``parts`` each repeated ``n`` times, concatenated: built once per distinct set of tensors,
        so the model sees the same conditioning tensor at every step (the cross-attention cache then
        knows it by identity, with no comparison of values that would wait for a GPU)."""
        key = (n, tuple(tuple(map(id, (c.hidden, c.pooled, c.time_ids, *(c.image_embeds or ())))) for c in parts))
        hit = self._batches.get(key)
        if hit is None:  # the parts held: their tensors' ids stay their own
            hit = self._batches[key] = (parts, Conditioning.cat([c.repeat(n) for c in parts]))
        return hit[1]

    def __call__(self, x: torch.Tensor, t: torch.Tensor, step: int, slot: int = 0) -> torch.Tensor:
        conds, uncond = self.conditioning_at(step)
        n = x.shape[0]
        if self.scale == 1.0 and len(conds) == 1 and conds[0][1] == 1.0:
            return self.model_call(x, t, self.batch_of([conds[0][0]], n), step, slot)  # guidance off: one model call, as A1111
        truncated = self.uncond_until is not None and step >= self.uncond_until
        parts = [c for c, _ in conds] if truncated else [uncond] + [c for c, _ in conds]
        batch = self.batch_of(parts, n)
        eps = self.model_call(torch.cat([x] * len(parts)), t, batch, step, slot).chunk(len(parts))
        if truncated:  # the first prompt's prediction stands in for the skipped uncond
            eps = (eps[0],) + eps
        out = eps[0]
        for (_, weight), eps_cond in zip(conds, eps[1:]):
            out = out + self.scale * weight * (eps_cond - eps[0])
        return out


class PerImage:
    """A denoiser that takes the images of a batch one at a time (``slot`` = the image's index).

    A CPU matmul's rounding depends on the batch size, and image ``i`` of a batch must come out
    exactly as when it is made alone from its seed (``--from``): a reproducibility rule, so the
    engine wraps every guided denoiser in it.
    """

    def __init__(self, denoiser):
        self.denoiser = denoiser

    def __call__(self, x: torch.Tensor, t: torch.Tensor, step: int) -> torch.Tensor:
        if x.shape[0] == 1:
            return self.denoiser(x, t, step)
        return torch.cat([self.denoiser(x[i : i + 1], t, step, slot=i) for i in range(x.shape[0])])
