"""ControlNet residuals, as a hook of the guided model call (never a copy of the denoising loop).

At each model call, every ControlNet that is active at that step reads the noisy latents, the
timestep, the text conditioning and its control image, and returns residuals for the UNet's
down blocks and mid block, already multiplied by its scale; several nets' residuals are summed
(diffusers' ``MultiControlNetModel``). :class:`~gouache.sampling.guidance.CFGDenoiser` passes them
to the UNet as ``down_block_additional_residuals`` / ``mid_block_additional_residual``, for the
unconditional and the conditional pass alike (A1111's "Balanced" control mode and diffusers'
default; guess mode is not implemented). As CFGDenoiser calls the model one image at a time, an
image's residuals never depend on its batch.

A net is active at sampling step ``i`` of ``n`` when ``i / n >= start`` and ``(i + 1) / n <= end``
(diffusers' ``control_guidance_start`` / ``control_guidance_end``): start 0, end 0.5 of 10 steps is
steps 0-4.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ActiveControl:
    """One ControlNet as the loop runs it: ``image`` is ``(1, 3, H, W)`` in [0, 1] at the image's size."""

    net: torch.nn.Module
    image: torch.Tensor
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0

    def active(self, step: int, steps: int) -> bool:
        return self.scale != 0 and step / steps >= self.start and (step + 1) / steps <= self.end


class ControlResiduals:
    """``residuals(x, t, step, conditioning) -> UNet keyword arguments`` (empty when no net is active).

    >>> denoiser = CFGDenoiser(unet_call(unet, ControlResiduals([ActiveControl(net, hint)], 20)), at, 7.0)  # doctest: +SKIP
    """

    def __init__(self, controls: list[ActiveControl], steps: int):
        self.controls, self.steps = controls, steps

    def __call__(self, x: torch.Tensor, t: torch.Tensor, step: int, c) -> dict:
        down, mid = None, None
        for control in self.controls:
            if not control.active(step, self.steps):
                continue
            hint = control.image.to(x.device, x.dtype).expand(x.shape[0], -1, -1, -1)
            # a 9-channel inpainting (or 5-channel depth) UNet reads extra channels; a ControlNet made
            # for the plain model reads the latents only (diffusers' ControlNet inpainting pipeline)
            sample = x[:, : control.net.config.in_channels]
            d, m = control.net(sample, t, encoder_hidden_states=c.hidden, controlnet_cond=hint,  # the text only:
                               conditioning_scale=float(control.scale),  # no IP-Adapter image prompts
                               added_cond_kwargs=c.added_kwargs(images=False), return_dict=False)
            if down is None:
                down, mid = list(d), m
            else:
                down, mid = [a + b for a, b in zip(down, d)], mid + m
        if down is None:
            return {}
        return {"down_block_additional_residuals": tuple(down), "mid_block_additional_residual": mid}


def control_tensor(image) -> torch.Tensor:
    """An RGB control map (PIL) as ``(1, 3, H, W)`` in [0, 1] (diffusers' control image processor)."""
    import numpy as np

    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous()
