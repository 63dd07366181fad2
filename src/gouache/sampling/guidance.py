"""Classifier-free guidance and composable diffusion, as a wrapper around the model call.

``eps = uncond + scale · Σᵢ wᵢ · (condᵢ − uncond)``: classifier-free guidance (Ho & Salimans, 2022)
with one ``cond`` per ``AND`` part of the prompt (composable diffusion, Liu et al., 2022, as
AUTOMATIC1111 combines it). Wrapping the model rather than the loop (k-diffusion's CFGDenoiser
idea) means every sampler gets guidance for free; the conditioning is asked for at every step, so
prompt schedules and alternation take effect where they should.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class Conditioning:
    """Text conditioning: hidden states (B, 77·k, D) and, for SDXL, pooled output + size/crop ids."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    def added_kwargs(self) -> dict | None:
        if self.pooled is None:
            return None
        return {"text_embeds": self.pooled, "time_ids": self.time_ids}

    def repeat(self, n: int) -> "Conditioning":
        """The same conditioning for ``n`` images."""
        rep = lambda t: None if t is None else t.expand(n, *t.shape[1:])  # noqa: E731
        return Conditioning(rep(self.hidden), rep(self.pooled), rep(self.time_ids))

    @staticmethod
    def cat(items: list["Conditioning"]) -> "Conditioning":
        """Join along the batch axis (all must have the same number of tokens)."""
        cat = lambda ts: None if ts[0] is None else torch.cat(ts)  # noqa: E731
        return Conditioning(cat([c.hidden for c in items]), cat([c.pooled for c in items]),
                            cat([c.time_ids for c in items]))


# step -> ([(cond, weight) for each AND part], uncond), all of batch size 1 and equal length
ConditioningAt = Callable[[int], tuple[list[tuple[Conditioning, float]], Conditioning]]


# residuals(x, t, step, conditioning) -> extra UNet keyword arguments (ControlNet's, see
# gouache.control.guidance): inputs to the model call, computed for the batch the UNet sees
Residuals = Callable[[torch.Tensor, torch.Tensor, int, Conditioning], dict]


class CFGDenoiser:
    """The guided model call ``denoiser(x, t, step)`` for the one loop.

    ``uncond_until``: CFG truncation (guidance only before this sampling step: gouache-tiny's default
    at half the steps, elsewhere an approximation for speed); from this step on, the unconditional
    pass is skipped and the first prompt's prediction stands in for it (AUTOMATIC1111's rule when it
    skips the uncond, its "NGMS"): one prompt gives its own prediction, guidance off.
    ``deepcache``: a :class:`gouache.speed.deepcache.DeepCache` that runs most steps on the UNet's
    shallow branch (an approximation too).
    """

    def __init__(self, unet, conditioning_at: ConditioningAt, scale: float, residuals: Residuals | None = None,
                 uncond_until: int | None = None, deepcache=None):
        self.unet, self.conditioning_at, self.scale = unet, conditioning_at, scale
        self.residuals, self.uncond_until, self.deepcache = residuals, uncond_until, deepcache

    def __call__(self, x: torch.Tensor, t: torch.Tensor, step: int, slot: int = 0) -> torch.Tensor:
        # One image at a time: a CPU matmul's rounding depends on the batch size, and image i of a
        # batch must come out exactly as when it is made alone from its seed (`--from`).
        if x.shape[0] > 1:
            return torch.cat([self(x[i : i + 1], t, step, slot=i) for i in range(x.shape[0])])
        conds, uncond = self.conditioning_at(step)
        n = x.shape[0]
        if self.scale == 1.0 and len(conds) == 1 and conds[0][1] == 1.0:
            return self._eps(x, t, conds[0][0].repeat(n), step, slot)  # guidance off: one model call, as A1111
        truncated = self.uncond_until is not None and step >= self.uncond_until
        parts = [c for c, _ in conds] if truncated else [uncond] + [c for c, _ in conds]
        batch = Conditioning.cat([c.repeat(n) for c in parts])
        eps = self._eps(torch.cat([x] * len(parts)), t, batch, step, slot).chunk(len(parts))
        if truncated:  # the first prompt's prediction stands in for the skipped uncond
            eps = (eps[0],) + eps
        out = eps[0]
        for (_, weight), eps_cond in zip(conds, eps[1:]):
            out = out + self.scale * weight * (eps_cond - eps[0])
        return out

    def _eps(self, x: torch.Tensor, t: torch.Tensor, c: Conditioning, step: int = 0, slot: int = 0) -> torch.Tensor:
        extra = self.residuals(x, t, step, c) if self.residuals is not None else {}
        if self.deepcache is not None:
            return self.deepcache(self.unet, x, t, c.hidden, step, slot, added_cond_kwargs=c.added_kwargs(), **extra)
        return self.unet(x, t, encoder_hidden_states=c.hidden, added_cond_kwargs=c.added_kwargs(),
                         return_dict=False, **extra)[0]
