"""The one denoising loop. Every mode is an input to it or a wrapper around the model call.

``denoiser(x, t, step) -> noise prediction`` (``step``: the 0-based sampling step) is the model with everything model-specific folded in
(classifier-free guidance, later: prompt schedules, ControlNet residuals); the scheduler is any
diffusers scheduler (see :mod:`gouache.sampling.samplers`). img2img starts from noised latents at a
later step (``start_step``); inpainting passes ``blend`` to re-impose the known region each step.
"""

from __future__ import annotations

import inspect
from typing import Callable, Protocol

import torch


class Denoiser(Protocol):
    def __call__(self, x: torch.Tensor, t: torch.Tensor, step: int) -> torch.Tensor: ...


def initial_noise(seeds: list[int], shape: tuple[int, ...], dtype=torch.float32) -> torch.Tensor:
    """One latent of Gaussian noise per seed, each from its own CPU generator.

    As AUTOMATIC1111 does (with its CPU RNG source): image ``i`` of a batch is seeded with ``seed + i``
    and its noise does not depend on the rest of the batch, so it can be made again on its own.
    """
    return torch.stack([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s), dtype=torch.float32)
                        for s in seeds]).to(dtype)


def step_generators(seeds: list[int]) -> list[torch.Generator]:
    """Per-image generators for the noise that stochastic samplers draw at every step."""
    return [torch.Generator("cpu").manual_seed(s + 0x5EED) for s in seeds]


def denoise(
    denoiser: Denoiser,
    scheduler,
    noise: torch.Tensor,
    steps: int,
    generators: list[torch.Generator] | None = None,
    progress: Callable[[int, int], None] | None = None,
    blend: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run ``scheduler`` for ``steps`` steps from pure noise; returns the final latents."""
    scheduler.set_timesteps(steps)
    latents = noise * scheduler.init_noise_sigma
    timesteps = scheduler.timesteps
    # stochastic samplers take per-image generators; DPM++ SDE seeds its own Brownian trees instead
    step_kwargs = {"generator": generators} if "generator" in inspect.signature(scheduler.step).parameters else {}
    for i, t in enumerate(timesteps):
        model_in = scheduler.scale_model_input(latents, t)
        # the sampling step this model call belongs to (Heun and DPM2 call the model twice a step)
        eps = denoiser(model_in, t, min(i * steps // len(timesteps), steps - 1))
        latents = scheduler.step(eps, t, latents, return_dict=False, **step_kwargs)[0]
        if blend is not None:
            latents = blend(latents, i)
        if progress is not None:
            progress(i + 1, len(timesteps))
    return latents
