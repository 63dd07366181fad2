"""Classifier-free guidance as a wrapper around the model call (k-diffusion's CFGDenoiser idea).

``eps = uncond + scale · (cond − uncond)`` (Ho & Salimans, 2022). Wrapping the model rather than
the loop means every sampler gets guidance for free.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Conditioning:
    """Text conditioning for a batch: hidden states (B, 77·k, D) and, for SDXL, pooled + time ids."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    def added_kwargs(self) -> dict | None:
        if self.pooled is None:
            return None
        return {"text_embeds": self.pooled, "time_ids": self.time_ids}


def _cat(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    return None if a is None else torch.cat([a, b])


class CFGDenoiser:
    def __init__(self, unet, cond: Conditioning, uncond: Conditioning, scale: float):
        self.unet, self.cond, self.uncond, self.scale = unet, cond, uncond, scale

    def __call__(self, x: torch.Tensor, t: torch.Tensor, step: int) -> torch.Tensor:
        if self.scale == 1.0:  # guidance off: one model call, as A1111 skips the negative pass
            return self._eps(x, t, self.cond)
        both = Conditioning(
            torch.cat([self.uncond.hidden, self.cond.hidden]),
            _cat(self.uncond.pooled, self.cond.pooled),
            _cat(self.uncond.time_ids, self.cond.time_ids),
        )
        eps_uncond, eps_cond = self._eps(torch.cat([x, x]), t, both).chunk(2)
        return eps_uncond + self.scale * (eps_cond - eps_uncond)

    def _eps(self, x: torch.Tensor, t: torch.Tensor, c: Conditioning) -> torch.Tensor:
        return self.unet(x, t, encoder_hidden_states=c.hidden, added_cond_kwargs=c.added_kwargs(),
                         return_dict=False)[0]
