"""The denoising loss every diffusion trainer uses: what its options do to the noisy inputs and targets."""

import torch
from diffusers import DDPMScheduler

from gouache.train.diffusion import DenoisingLoss


def sd_schedule():
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)


def correlation(a, b):
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_prior_start_items_start_from_nothing_of_their_latents_and_target_the_noise_that_implies():
    """prior_start: that fraction of items is moved to the last tenth of the timesteps with a noisy
    input drawn afresh; the target is the noise which, added to the latents, gives exactly that input.
    An ordinary input there still carries the latents (what a clip's path is read from)."""
    schedule = sd_schedule()
    torch.manual_seed(0)
    latents = torch.randn(1, 4, 16, 8, 8).repeat(1024, 1, 1, 1, 1)  # one clip: its trace adds up over the batch

    noisy, t, target = DenoisingLoss(schedule, prior_start=1.0).noised(latents)
    assert int(t.min()) >= 900 and int((t >= 990).sum()) > 0
    assert torch.allclose(schedule.add_noise(latents, target, t), noisy, atol=1e-5)
    assert abs(correlation(noisy.mean(0), latents[0])) < 0.1  # nothing of the clip left in the mean
    ordinary, t_ordinary, _ = DenoisingLoss(schedule, timestep_bias=8).noised(latents)  # mostly the last tenth
    assert correlation(ordinary[t_ordinary >= 900].mean(0), latents[0]) > 0.35  # the clip shows through

    _, t, _ = DenoisingLoss(schedule, prior_start=0.25).noised(latents)
    assert 0.2 < float((t >= 900).float().mean()) < 0.4  # a quarter, and the ordinary items drawn there

    torch.manual_seed(1)
    a = DenoisingLoss(schedule).noised(latents)
    torch.manual_seed(1)
    b = DenoisingLoss(schedule, prior_start=0.0).noised(latents)
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # off: the same draws as before the option
