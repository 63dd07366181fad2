"""The one denoising loop. Every mode is an input to it or a wrapper around the model call.

``denoiser(x, t, step) -> noise prediction`` (``step``: the 0-based sampling step) is the model
with everything model-specific folded in (classifier-free guidance, 9-channel inpainting
conditioning, later: ControlNet residuals); the scheduler is any diffusers scheduler (see
:mod:`gouache.sampling.samplers`). img2img passes ``init_latents`` and a ``strength`` to start
part-way down the schedule; inpainting with a 4-channel model also passes ``blend`` to re-impose
the known region after every step (:mod:`gouache.sampling.start`).
"""

from __future__ import annotations

import inspect
from typing import Callable, Protocol

import torch


class Denoiser(Protocol):
    def __call__(self, x: torch.Tensor, t: torch.Tensor, step: int) -> torch.Tensor: ...


# blend(latents, i) -> latents, after the step at index ``i`` of ``scheduler.timesteps``
Blend = Callable[[torch.Tensor, int], torch.Tensor]


def initial_noise(seeds: list[int], shape: tuple[int, ...], dtype=torch.float32,
                  subseeds: list[int] | None = None, subseed_strength: float = 0.0) -> torch.Tensor:
    """One latent of Gaussian noise per seed, each from its own CPU generator.

    As AUTOMATIC1111 does (with its CPU RNG source): image ``i`` of a batch is seeded with ``seed + i``
    and its noise does not depend on the rest of the batch, so it can be made again on its own.
    With ``subseeds`` (A1111's "Variation seed"), each image's noise is :func:`slerp`-ed that far
    towards its subseed's noise: 0 is the seed's noise, 1 the subseed's.

    >>> a, b = initial_noise([1], (4, 8, 8)), initial_noise([2], (4, 8, 8))
    >>> torch.equal(initial_noise([1], (4, 8, 8), subseeds=[2], subseed_strength=1.0), b)
    True
    """

    def randn(seed: int) -> torch.Tensor:
        return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)

    noises = [randn(s) for s in seeds]
    if subseeds is not None and subseed_strength > 0:
        noises = [slerp(subseed_strength, n, randn(sub)) for n, sub in zip(noises, subseeds)]
    return torch.stack(noises).to(dtype)


def slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from ``low`` (``val`` 0) to ``high`` (1), exactly as AUTOMATIC1111's
    ``slerp`` for variation seeds: on a ``(C, H, W)`` latent it normalises along dim 1 (rows), and
    nearly parallel inputs fall back to its (reversed) linear mix."""
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (torch.sin(val * omega) / so).unsqueeze(1) * high


def step_generators(seeds: list[int]) -> list[torch.Generator]:
    """Per-image generators for the noise that stochastic samplers draw at every step."""
    return [torch.Generator("cpu").manual_seed(s + 0x5EED) for s in seeds]


def first_step(scheduler, steps: int, strength: float) -> int:
    """Index into ``scheduler.timesteps`` (after ``set_timesteps(steps)``) where img2img starts.

    diffusers' img2img semantics: the last ``int(steps · strength)`` steps of the ``steps``-step
    schedule run (AUTOMATIC1111 runs one step more), so strength 1 is the whole schedule and a
    strength below ``1 / steps`` runs none. Second-order samplers (Heun, DPM2) take two entries a step.

    >>> from gouache.sampling.samplers import make_scheduler
    >>> s = make_scheduler("Euler", None, {}); s.set_timesteps(20); first_step(s, 20, 0.75)
    5
    """
    run = min(int(steps * strength), steps)
    return (steps - run) * scheduler.order


def noised(scheduler, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``latents`` noised to timestep ``t`` the way ``scheduler`` holds its samples.

    Each scheduler's own ``add_noise``: k-diffusion-style ones (Euler, Heun, LMS, DPM2) keep
    ``x + σ·ε``, the others (DDIM, DPM++, UniPC, LCM) ``√ᾱ·x + √(1-ᾱ)·ε``. Those that track a step
    index read the level from it (hence ``set_begin_index`` in :func:`denoise`).
    """
    return scheduler.add_noise(latents, noise, t.reshape(1).expand(latents.shape[0]))


def denoise(
    denoiser: Denoiser,
    scheduler,
    noise: torch.Tensor,
    steps: int,
    generators: list[torch.Generator] | None = None,
    progress: Callable[[int, int], None] | None = None,
    blend: Blend | None = None,
    init_latents: torch.Tensor | None = None,
    strength: float = 1.0,
    watch: Callable[[int, int, torch.Tensor], None] | None = None,
    end: int | None = None,
    init_noised: bool = False,
) -> torch.Tensor:
    """Run ``scheduler``'s ``steps``-step schedule on ``denoiser``; returns the final latents.

    Without ``init_latents`` (txt2img) every step runs from pure noise. With them (img2img,
    inpainting) only the last ``int(steps · strength)`` steps run, from ``init_latents`` noised to
    the first of them; strength 1 starts from pure noise (the image is ignored, as in diffusers'
    inpainting) and a strength that runs no step returns ``init_latents`` as they are.
    ``watch(i, n, latents)``, if given, sees the latents after each step (previews).
    ``end`` stops before that index of ``scheduler.timesteps`` and returns the still-noisy latents;
    ``init_noised`` says ``init_latents`` are already at the first step's noise level (a previous
    ``end``'s output: an SDXL base handing over to its refiner, diffusers' ``denoising_end`` /
    ``denoising_start``), so no noise is added.

    >>> latents = denoise(denoiser, scheduler, noise, 20, init_latents=init, strength=0.5)  # doctest: +SKIP
    """
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    first = 0
    if init_latents is not None:
        first = first_step(scheduler, steps, strength)
        if first >= len(timesteps):
            return init_latents
        if hasattr(scheduler, "set_begin_index"):  # schedulers that count steps start counting here
            scheduler.set_begin_index(first)
    if init_noised and init_latents is not None:
        latents = init_latents
    elif first == 0:
        latents = noise * scheduler.init_noise_sigma
    else:
        latents = noised(scheduler, init_latents, noise, timesteps[first])
    # stochastic samplers take per-image generators; DPM++ SDE seeds its own Brownian trees instead
    step_kwargs = {"generator": generators} if "generator" in inspect.signature(scheduler.step).parameters else {}
    last = len(timesteps) if end is None else min(end, len(timesteps))
    n = last - first
    for i, t in enumerate(timesteps[first:last], start=first):
        model_in = scheduler.scale_model_input(latents, t)
        # the sampling step this model call belongs to (Heun and DPM2 call the model twice a step)
        eps = denoiser(model_in, t, min(i * steps // len(timesteps), steps - 1))
        latents = scheduler.step(eps, t, latents, return_dict=False, **step_kwargs)[0]
        if blend is not None:
            latents = blend(latents, i)
        if progress is not None:
            progress(i - first + 1, n)
        if watch is not None:
            watch(i - first + 1, n, latents)
    return latents
