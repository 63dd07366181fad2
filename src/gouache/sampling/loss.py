"""Guidance by a loss on the image: a wrapper around the model call, so every sampler gets it.

The technique of fast.ai's "Stable Diffusion deep dive" (Jonathan Whitaker, part 2 of the
course; diffusers' ``community/clip_guided_stable_diffusion`` does the same with a CLIP loss):
every ``every`` steps, predict the clean latents ``x0`` from the current latents and the (guided)
noise prediction, decode them with the VAE *with* gradients, take ``loss(image)`` and push by
``-scale · σ² · ∇loss``. The notebook moves the latents by that much before the step; here the
noise prediction is changed so that the step's ``x0`` prediction moves by it (as classifier
guidance does), which is the same push for every scheduler — DPM++ and DDIM step from ``x0``
itself — and leaves the loop untouched. The UNet is not differentiated (as in the notebook):
only the VAE decode is, so a guided step costs one VAE forward and backward more.

>>> request = GenerationRequest("a circle", loss_guidance=LossGuidance(colour_loss((0, 0, 1)), scale=300))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from gouache.errors import InvalidArgument, check_int, check_number
from gouache.models.latents import from_latents
from gouache.sampling.loop import Denoiser
from gouache.sampling.prediction import predicted_x0, shifted_output

# loss(image) -> scalar, ``image`` (B, 3, H, W) in [-1, 1]
Loss = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ColourLoss:
    """Mean squared distance of every pixel to one colour, ``rgb`` each in [0, 1].

    >>> loss = colour_loss((0, 0, 1))
    >>> float(loss(torch.tensor([-1.0, -1.0, 1.0]).reshape(1, 3, 1, 1)))
    0.0
    """

    rgb: tuple[float, float, float]

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        target = torch.tensor(self.rgb, dtype=image.dtype, device=image.device).reshape(1, 3, 1, 1) * 2 - 1
        return ((image - target) ** 2).mean()

    def infotext(self) -> str:
        """As 0-255 values, the way ``--guide-colour`` takes them: ``0,0,255``."""
        return ",".join(str(round(c * 255)) for c in self.rgb)


def colour_loss(rgb) -> ColourLoss:
    """A loss that pulls the image towards the colour ``rgb`` (three numbers in [0, 1]).

    >>> colour_loss((0, 0, 1)).infotext()
    '0,0,255'
    """
    values = tuple(rgb) if isinstance(rgb, (tuple, list)) else None
    if (values is None or len(values) != 3
            or any(isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 <= c <= 1 for c in values)):
        raise InvalidArgument(f"`rgb` must be three numbers from 0 to 1, e.g. (0, 0, 1) for blue, got {rgb!r}")
    return ColourLoss(tuple(float(c) for c in values))


def parse_colour(text: str) -> ColourLoss:
    """``"R,G,B"`` with 0-255 values (the CLI's ``--guide-colour`` and the infotext) as a :class:`ColourLoss`."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise InvalidArgument(f"`--guide-colour` must be R,G,B with each 0-255, e.g. 0,0,255 for blue, got {text!r}")
    return ColourLoss(tuple(v / 255 for v in values))


@dataclass
class LossGuidance:
    """``loss`` on the predicted image, pushed against with ``scale``, every ``every`` sampling steps."""

    loss: Loss
    scale: float = 300.0  # on gouache-tiny, 300 moves a 8-step image clearly (tests/sampling/test_loss.py)
    every: int = 1

    def validate(self) -> None:
        """Raise :class:`InvalidArgument` naming the field. Its infotext keys (``Guidance colour``,
        ``Guidance scale``, ...) are written by :mod:`gouache.pipelines.fields`."""
        if not callable(self.loss):
            raise InvalidArgument(f"`loss_guidance.loss` must be a function of the image, got {self.loss!r}")
        check_number("loss_guidance.scale", self.scale, 0, 1e6)
        check_int("loss_guidance.every", self.every, 1, 1000)


class LossGuidedDenoiser:
    """Wraps a denoiser (usually the CFG one): every ``guidance.every`` steps its prediction is
    changed so that the predicted clean latents move by ``-scale · σ² · ∇ loss(decode(x0))``.

    ``scheduler`` gives ``alphas_cumprod`` (for σ at any, even fractional, timestep) and the
    prediction type (epsilon, v or sample). Extra input channels (a 9-channel inpainting UNet's) are passed
    through; the first ``vae.config.latent_channels`` are the latents.
    """

    def __init__(self, denoiser: Denoiser, guidance: LossGuidance, vae, scheduler):
        self.denoiser, self.guidance, self.vae = denoiser, guidance, vae
        alphas = torch.as_tensor(scheduler.alphas_cumprod, dtype=torch.float64)
        self.log_sigmas = ((1 - alphas) / alphas).sqrt().log().numpy()
        self.prediction = scheduler.config.get("prediction_type", "epsilon")

    def _alpha(self, t: torch.Tensor) -> float:
        """ᾱ at timestep ``t``, interpolating log σ between whole timesteps (k-diffusion's ``t_to_sigma``)."""
        sigma = float(np.exp(np.interp(float(t), np.arange(len(self.log_sigmas)), self.log_sigmas)))
        return 1 / (1 + sigma**2)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, step: int) -> torch.Tensor:
        out = self.denoiser(x, t, step)
        if step % self.guidance.every or self.guidance.scale == 0:
            return out
        alpha = self._alpha(t)
        a, b = math.sqrt(alpha), math.sqrt(1 - alpha)  # x = a·x0 + b·ε (x: the scaled model input)
        latents = x[:, : self.vae.config.latent_channels]
        x0 = predicted_x0(out, latents, alpha, self.prediction)
        # one image at a time, so an image's push does not depend on its batch
        grad = torch.cat([self._grad(x0[i : i + 1]) for i in range(x0.shape[0])])
        shift = -self.guidance.scale * (b / a) ** 2 * grad  # σ² = (1 - ᾱ) / ᾱ
        return shifted_output(out, shift, alpha, self.prediction)  # the output whose x0 is x0 + shift

    def _grad(self, x0: torch.Tensor) -> torch.Tensor:
        dtype = x0.dtype
        with torch.enable_grad():
            x0 = x0.detach().float().requires_grad_()
            scaled = from_latents(self.vae, x0)
            image = self.vae.decode(scaled.to(self.vae.dtype), return_dict=False)[0].float()
            loss = self.guidance.loss(image)
            (grad,) = torch.autograd.grad(loss, x0)
        return grad.to(dtype)
