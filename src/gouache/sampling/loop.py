"""The one denoising loop. Every mode is an input to it or a wrapper around the model call.

``denoiser(x, t, step) -> noise prediction`` (``step``: the 0-based sampling step) is the model
with everything model-specific folded in (classifier-free guidance, ControlNet residuals,
9-channel inpainting conditioning); the scheduler is any diffusers scheduler (see
:mod:`gouache.sampling.samplers`). Where the loop starts is a *start*
(:mod:`gouache.sampling.start`): pure noise, an image part-way down the schedule (img2img),
with a ``blend`` that re-imposes the known region (inpainting), or a hand-over from another
model's still-noisy latents (an SDXL refiner); it also says where the loop stops.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Protocol

import torch


class Denoiser(Protocol):
    def __call__(self, x: torch.Tensor, t: torch.Tensor, step: int) -> torch.Tensor: ...


# blend(latents, i) -> latents, after the step at index ``i`` of ``scheduler.timesteps``
Blend = Callable[[torch.Tensor, int], torch.Tensor]
# callback(done, total, latents): after each step, the steps run so far of the ``total`` this loop runs
Callback = Callable[[int, int, torch.Tensor], None]


@dataclass
class Span:
    """Where a loop runs: from ``latents`` at index ``first`` of ``scheduler.timesteps`` up to
    ``last`` (exclusive; None: the end), with an optional ``blend`` after every step."""

    latents: torch.Tensor
    first: int = 0
    last: int | None = None
    blend: Blend | None = None


class Start(Protocol):
    """What the loop starts from (see :mod:`gouache.sampling.start`)."""

    def begin(self, scheduler, noise: torch.Tensor, steps: int) -> Span: ...

    def wrap(self, denoiser: Denoiser) -> Denoiser: ...


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


def to_device(t: torch.Tensor, device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``t`` (on the CPU) copied to ``device`` without making the CPU wait for the GPU: a plain copy
    to CUDA waits for the copy's stream to finish everything queued; one from pinned memory does not.

    >>> to_device(torch.ones(2), "cpu").tolist()
    [1.0, 1.0]
    """
    if torch.device(device).type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, dtype, non_blocking=True)
    return t.to(device, dtype)


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


def denoise(denoiser: Denoiser, scheduler, noise: torch.Tensor, steps: int, start: Start | None = None,
            generators: list[torch.Generator] | None = None, callback: Callback | None = None) -> torch.Tensor:
    """Run ``scheduler``'s ``steps``-step schedule on ``denoiser``; returns the final latents.

    Without a ``start`` (txt2img) every step runs from pure noise; a start
    (:class:`~gouache.sampling.start.ImageStart`, :class:`~gouache.sampling.start.NoiseStart`) gives
    the first latents and the slice of the schedule to run, and may wrap the denoiser (a 9-channel
    UNet's mask). A slice of no step returns the start's latents as they are. ``callback(i, n,
    latents)``, if given, sees the latents after each step (progress bars, previews).

    >>> latents = denoise(denoiser, scheduler, noise, 20, ImageStart(init, 0.5))  # doctest: +SKIP
    """
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    if start is None:
        span = Span(noise * scheduler.init_noise_sigma)
    else:
        span, denoiser = start.begin(scheduler, noise, steps), start.wrap(denoiser)
    last = len(timesteps) if span.last is None else min(span.last, len(timesteps))
    if span.first >= last:
        return span.latents
    # stochastic samplers take per-image generators; DPM++ SDE seeds its own Brownian trees instead
    step_kwargs = {"generator": generators} if "generator" in inspect.signature(scheduler.step).parameters else {}
    latents, n = span.latents, last - span.first
    # the model's copy of the timesteps, moved to the latents' device once: a copy per step would
    # make the CPU wait for the GPU at every step (the scheduler keeps its own on the CPU)
    on_device = to_device(timesteps, latents.device)
    for i, t in enumerate(timesteps[span.first:last], start=span.first):
        model_in = scheduler.scale_model_input(latents, t)
        # the sampling step this model call belongs to (Heun and DPM2 call the model twice a step)
        eps = denoiser(model_in, on_device[i], min(i * steps // len(timesteps), steps - 1))
        latents = scheduler.step(eps, t, latents, return_dict=False, **step_kwargs)[0]
        if span.blend is not None:
            latents = span.blend(latents, i)
        if callback is not None:
            callback(i - span.first + 1, n, latents)
    return latents
