"""The VAE's latent scaling, in one place: raw latents (what ``vae.encode`` gives and
``vae.decode`` takes) to the scaled latents the UNet works in, and back.

``scaled = (raw - shift_factor) * scaling_factor`` (SD 1.x/2.x: 0.18215 and no shift; SDXL
0.13025; VAEs of the SD3 kind also have a ``shift_factor``).

>>> to_latents(vae, vae.encode(pixels).latent_dist.sample())  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["from_latents", "to_latents"]


def _shift(vae) -> float | None:
    return getattr(vae.config, "shift_factor", None) or None  # absent, None or 0: no shift


def to_latents(vae, raw: torch.Tensor) -> torch.Tensor:
    """Raw VAE latents scaled for the UNet."""
    shift = _shift(vae)
    if shift is not None:
        raw = raw - shift
    return raw * vae.config.scaling_factor


def from_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """The UNet's scaled latents as the raw latents ``vae.decode`` takes."""
    raw = latents / vae.config.scaling_factor
    shift = _shift(vae)
    return raw if shift is None else raw + shift
