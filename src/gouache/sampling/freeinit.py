"""FreeInit: sample a clip again from its own low frequencies, for frames that hold together.

A video model is trained on clips whose noise, at the last timestep, still carries the clip's
low spatio-temporal frequencies; at inference the start is white noise, with nothing shared
between frames. FreeInit (Wu et al., 2023, "FreeInit: Bridging Initialization Gap in Video Diffusion
Models"; diffusers' ``enable_free_init``, the A1111 AnimateDiff extension's ``freeinit_*``
arguments) samples the clip, diffuses the result back to the last training timestep with the clip's
own noise, keeps the low frequencies of that (over frames, height and width together), takes the high
ones from fresh noise, and samples again; ``iterations`` passes in all. Each pass is a whole
sampling run, so the clip costs ``iterations`` times as much.

The low-pass filter is one of :data:`FILTERS`, with stop frequencies ``spatial`` (``ds``) and
``temporal`` (``dt``) as fractions of the highest frequency (0.25: a quarter of the way out).

>>> spec = FreeInit(iterations=3)
>>> mask = low_pass((16, 1, 8, 8), spec)
>>> tuple(mask.shape), float(mask[8, 0, 4, 4])   # the zero frequency (the centre, once shifted) is kept whole
((16, 1, 8, 8), 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gouache.errors import InvalidArgument, check_int, check_number
from gouache.sampling.loop import Span

MAX_ITERATIONS = 5  # passes; each is a whole sampling run


def _distance2(t: torch.Tensor, y: torch.Tensor, x: torch.Tensor, spec: FreeInit) -> torch.Tensor:
    """Squared distance from the zero frequency, the time axis scaled so ``temporal`` lands on ``spatial``."""
    return (t * spec.spatial / spec.temporal) ** 2 + y**2 + x**2


def _butterworth(t, y, x, spec: FreeInit) -> torch.Tensor:
    return 1 / (1 + (_distance2(t, y, x, spec) / spec.spatial**2) ** spec.order)


def _gaussian(t, y, x, spec: FreeInit) -> torch.Tensor:
    return torch.exp(-_distance2(t, y, x, spec) / (2 * spec.spatial**2))


def _ideal(t, y, x, spec: FreeInit) -> torch.Tensor:
    return (_distance2(t, y, x, spec) <= spec.spatial**2).float()


def _box(t, y, x, spec: FreeInit) -> torch.Tensor:
    return ((t.abs() <= spec.temporal) & (y.abs() <= spec.spatial) & (x.abs() <= spec.spatial)).float()


FILTERS = {"butterworth": _butterworth, "gaussian": _gaussian, "ideal": _ideal, "box": _box}


@dataclass(frozen=True)
class FreeInit:
    """``iterations`` sampling passes (the first from white noise), low-pass ``filter`` with stop
    frequencies ``spatial`` and ``temporal``; ``order``: the Butterworth filter's steepness."""

    iterations: int = 3
    filter: str = "butterworth"
    spatial: float = 0.25
    temporal: float = 0.25
    order: int = 4

    def validate(self) -> None:
        check_int("free_init", self.iterations, 0, MAX_ITERATIONS)
        if not isinstance(self.filter, str) or self.filter not in FILTERS:
            raise InvalidArgument(f"`free_init_filter` must be one of {', '.join(FILTERS)} (the low-pass that keeps a "
                                  f"pass's low frequencies), got {self.filter!r}")
        check_number("free_init_ds", self.spatial, 0.01, 1, " (the spatial stop frequency, a fraction of the highest)")
        check_number("free_init_dt", self.temporal, 0.01, 1, " (the temporal stop frequency, a fraction of the highest)")
        check_int("free_init order", self.order, 1, 16)


def low_pass(shape: tuple[int, ...], spec: FreeInit) -> torch.Tensor:
    """The filter for latents of ``shape`` ``(frames, C, h, w)``, laid out as ``torch.fft.fftshift``
    leaves the spectrum (zero frequency in the middle): ``(frames, 1, h, w)``, 1 = kept."""
    frames, _, h, w = shape
    axis = lambda n: (torch.arange(n) - n // 2) / (n / 2)  # noqa: E731 (0 at the zero frequency, ±1 at the highest)
    t, y, x = axis(frames)[:, None, None], axis(h)[None, :, None], axis(w)[None, None, :]
    mask = FILTERS[spec.filter](t, y, x, spec)
    return mask[:, None]


_AXES = (0, 2, 3)  # frames, height, width: the channels are not a frequency axis


def mix(low: torch.Tensor, high: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``low``'s frequencies where ``mask`` is 1, ``high``'s where it is 0 (over frames, height, width)."""
    spectrum = lambda z: torch.fft.fftshift(torch.fft.fftn(z.float(), dim=_AXES), dim=_AXES)  # noqa: E731
    both = spectrum(low) * mask + spectrum(high) * (1 - mask)
    return torch.fft.ifftn(torch.fft.ifftshift(both, dim=_AXES), dim=_AXES).real.to(low.dtype)


def next_start(latents: torch.Tensor, noise: torch.Tensor, scheduler_config: dict, spec: FreeInit,
               generator: torch.Generator) -> torch.Tensor:
    """The next pass's start (at unit variance, as white noise is): ``latents`` (the clip a pass
    made) diffused to the last training timestep with ``noise`` (the clip's own first noise), its
    low frequencies kept and the high ones from fresh noise drawn from ``generator``."""
    from diffusers import DDPMScheduler

    schedule = DDPMScheduler.from_config(scheduler_config)
    last = torch.tensor([schedule.config.num_train_timesteps - 1])
    diffused = schedule.add_noise(latents.float(), noise.float(), last)
    fresh = torch.randn(latents.shape, generator=generator, dtype=torch.float32)
    start = mix(diffused, fresh, low_pass(tuple(latents.shape), spec).to(diffused))
    return start.to(latents.dtype)


@dataclass
class RenoisedStart:
    """A loop start (:class:`~gouache.sampling.start.NoiseStart`'s kind) from given latents at unit
    variance instead of the seeds' noise: every step runs."""

    latents: torch.Tensor

    def begin(self, scheduler, noise: torch.Tensor, steps: int) -> Span:
        return Span(self.latents.to(noise) * scheduler.init_noise_sigma, 0)

    def wrap(self, denoiser):
        return denoiser


def pass_seed(seed: int, iteration: int) -> int:
    """The fresh noise's seed for pass ``iteration`` (from 1) of the clip of ``seed``."""
    return (seed * 1_000_003 + iteration * 7919) % 2**63
