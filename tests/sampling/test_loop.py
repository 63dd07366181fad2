"""The one loop's starts: pure noise, an image part-way down the schedule, a known region re-imposed."""

import numpy as np
import pytest
import torch

from gouache.sampling.loop import denoise, first_step, initial_noise, step_generators
from gouache.sampling.samplers import make_scheduler
from gouache.sampling.start import ImageStart, InpaintingDenoiser, keep_known
from gouache.tiny.recipe import SCHEDULER_CONFIG

FAMILIES = ["Euler", "Euler a", "DPM++ 2M", "DDIM", "Heun", "LMS", "UniPC", "DPM2", "DPM++ 2M Karras"]
ALPHAS = torch.cumprod(1 - torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2, 0)
SIGMAS = ((1 - ALPHAS) / ALPHAS) ** 0.5


class Recorder:
    """A stand-in model: predicts a little noise and remembers every input and timestep."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, step):
        self.calls.append((x.clone(), float(t), step))
        return 0.1 * x


def vp(x0, noise, t):
    """x0 noised to timestep t as the model sees it: √ᾱ·x0 + √(1-ᾱ)·ε (σ interpolated like diffusers)."""
    sigma = float(np.interp(t, np.arange(1000), SIGMAS.numpy()))
    alpha = 1 / (1 + sigma ** 2)
    return alpha ** 0.5 * x0 + (1 - alpha) ** 0.5 * noise


def scheduler(name):
    return make_scheduler(name, None, SCHEDULER_CONFIG, seeds=[1])


def latents(seed):
    return initial_noise([seed], (4, 8, 8))


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("strength", [0.25, 0.5, 0.75])
def test_img2img_runs_the_last_steps_from_the_noised_image(name, strength):
    steps, x0, noise = 4, latents(1), latents(2)
    s, model = scheduler(name), Recorder()
    denoise(model, s, noise, steps, step_generators([1]), init_latents=x0, strength=strength)
    run = int(steps * strength)
    assert len(model.calls) == len(s.timesteps) - (steps - run) * s.order  # Heun, DPM2: 2 calls a step
    x, t, step = model.calls[0]
    assert t == float(s.timesteps[(steps - run) * s.order])
    assert torch.allclose(x, vp(x0, noise, t).float(), atol=2e-3), name
    assert step == steps - run and model.calls[-1][2] == steps - 1


@pytest.mark.parametrize("name", FAMILIES)
def test_strength_one_is_txt2img(name):
    """The image is ignored: the same model calls and result as from pure noise."""
    noise, runs = latents(2), []
    for init in (None, latents(1)):
        model = Recorder()
        out = denoise(model, scheduler(name), noise, 4, step_generators([1]), init_latents=init, strength=1.0)
        runs.append((out, model.calls))
    (a, calls_a), (b, calls_b) = runs
    assert torch.equal(a, b) and len(calls_a) == len(calls_b)
    assert all(torch.equal(x, y) and t == u for (x, t, _), (y, u, _) in zip(calls_a, calls_b))


@pytest.mark.parametrize("name", FAMILIES)
def test_the_known_region_follows_the_schedule(name):
    """4-channel inpainting: at each step the kept half is the image noised to that step's level
    (at its first model call: Heun and DPM2 are left alone half-way through a step)."""
    steps, x0, noise = 4, latents(1), latents(2)
    repaint = torch.zeros(1, 1, 8, 8)
    repaint[..., 4:] = 1
    s, model = scheduler(name), Recorder()
    out = denoise(model, s, noise, steps, step_generators([1]), blend=keep_known(s, x0, noise, repaint),
                  init_latents=x0, strength=0.75)
    for x, t, _ in model.calls[::s.order]:
        assert torch.allclose(x[..., :4], vp(x0, noise, t)[..., :4].float(), atol=2e-3), (name, t)
    assert torch.equal(out[..., :4], x0[..., :4])  # clean after the last step
    assert not torch.allclose(out[..., 4:], x0[..., 4:])


def test_txt2img_is_unchanged_by_the_new_arguments():
    noise = latents(3)
    a = denoise(Recorder(), scheduler("Euler a"), noise, 4, step_generators([3]))
    b = denoise(Recorder(), scheduler("Euler a"), noise, 4, step_generators([3]), init_latents=None, strength=0.3)
    assert torch.equal(a, b)


@pytest.mark.parametrize("strength", [0.0, 0.2])
def test_a_strength_that_runs_no_step_returns_the_image(strength):
    x0, model = latents(1), Recorder()
    out = denoise(model, scheduler("DPM++ 2M"), latents(2), 4, init_latents=x0, strength=strength)
    assert torch.equal(out, x0) and model.calls == []


def test_first_step_counts_second_order_steps_twice():
    s = scheduler("Heun")
    s.set_timesteps(10)
    assert first_step(s, 10, 0.7) == 6
    assert first_step(scheduler("Euler"), 10, 1.0) == 0


def test_nine_channel_denoiser_sees_mask_and_masked_image():
    seen = []

    def model(x, t, step):
        seen.append(x)
        return x[:, :4]

    conditioning = torch.arange(5 * 64, dtype=torch.float32).reshape(1, 5, 8, 8)
    out = InpaintingDenoiser(model, conditioning)(torch.ones(2, 4, 8, 8), torch.tensor(10), 0)
    assert seen[0].shape == (2, 9, 8, 8) and out.shape == (2, 4, 8, 8)
    assert torch.equal(seen[0][:, 4:], conditioning.expand(2, -1, -1, -1))


def test_latent_noise_fill_starts_the_masked_area_from_the_seed_noise():
    x0, noise = latents(1), latents(2)
    repaint = torch.zeros(1, 1, 8, 8)
    repaint[..., :2, :] = 1
    model = Recorder()
    ImageStart(x0, 0.5, repaint, latent_fill="noise").denoise(model, scheduler("DDIM"), noise, 4)
    x, t, _ = model.calls[0]
    assert torch.allclose(x[..., :2, :], vp(noise, noise, t)[..., :2, :].float(), atol=2e-3)
    assert torch.allclose(x[..., 2:, :], vp(x0, noise, t)[..., 2:, :].float(), atol=2e-3)
