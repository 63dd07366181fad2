"""FreeInit's pieces: the low-pass filters, the frequency mix, the next pass's start."""

import pytest
import torch

from gouache.errors import InvalidArgument
from gouache.sampling.freeinit import FILTERS, FreeInit, RenoisedStart, low_pass, mix, next_start

SHAPE = (16, 4, 8, 8)  # frames, channels, height, width
SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_every_filter_keeps_the_zero_frequency_and_drops_the_highest(name):
    mask = low_pass(SHAPE, FreeInit(filter=name))
    assert mask.shape == (16, 1, 8, 8) and mask.min() >= 0 and mask.max() <= 1
    assert mask[8, 0, 4, 4] == 1  # the zero frequency, in the middle once shifted
    assert mask[0, 0, 0, 0] < 0.01  # the highest, in every axis at once


def test_a_higher_stop_frequency_keeps_more():
    assert low_pass(SHAPE, FreeInit(spatial=0.5, temporal=0.5)).sum() > low_pass(SHAPE, FreeInit()).sum()


def test_mix_takes_the_low_frequencies_of_one_and_the_high_of_the_other():
    g = torch.Generator().manual_seed(0)
    low, high = torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)
    assert torch.allclose(mix(low, low, low_pass(SHAPE, FreeInit())), low, atol=1e-5)
    assert torch.allclose(mix(low, high, torch.ones(16, 1, 8, 8)), low, atol=1e-5)
    assert torch.allclose(mix(low, high, torch.zeros(16, 1, 8, 8)), high, atol=1e-5)
    # a clip that is the same in every frame and smooth in space is all low frequency: it survives the mix
    wave = 3 * torch.cos(torch.arange(8) * 2 * torch.pi / 8)  # the lowest frequency but one, down the height
    smooth = wave[None, None, :, None].expand(*SHAPE).contiguous()
    kept = mix(smooth, high, low_pass(SHAPE, FreeInit(spatial=0.5, temporal=0.5)))
    assert torch.corrcoef(torch.stack([kept.flatten(), smooth.flatten()]))[0, 1] > 0.8
    assert torch.corrcoef(torch.stack([(kept - smooth).flatten(), smooth.flatten()]))[0, 1].abs() < 0.1


def test_the_next_start_is_noise_that_remembers_the_clip():
    g = torch.Generator().manual_seed(1)
    clip = torch.linspace(-2, 2, 8)[None, None, :, None].expand(*SHAPE).contiguous()  # a smooth clip
    noise = torch.randn(SHAPE, generator=g)
    start = next_start(clip, noise, SCHEDULE, FreeInit(), torch.Generator().manual_seed(2))
    assert start.shape == SHAPE and 0.8 < float(start.std()) < 1.2  # unit variance, as white noise
    again = next_start(clip, noise, SCHEDULE, FreeInit(), torch.Generator().manual_seed(2))
    assert torch.equal(start, again)  # the same seed, the same start
    other = next_start(-clip, noise, SCHEDULE, FreeInit(), torch.Generator().manual_seed(2))
    assert not torch.equal(start, other)  # what the clip was shows through


def test_the_start_is_scaled_to_the_scheduler():
    class Scheduler:
        init_noise_sigma = 14.6

    span = RenoisedStart(torch.ones(2, 4, 8, 8)).begin(Scheduler(), torch.zeros(2, 4, 8, 8), 20)
    assert span.first == 0 and float(span.latents.max()) == pytest.approx(14.6)


@pytest.mark.parametrize("spec,message", [
    (FreeInit(iterations=6), "`free_init` must be between 0 and 5"),
    (FreeInit(filter="sinc"), "`free_init_filter` must be one of butterworth, gaussian, ideal, box"),
    (FreeInit(filter=["box"]), "`free_init_filter` must be one of"),
    (FreeInit(spatial=0), "`free_init_ds` must be a number from 0.01 to 1"),
    (FreeInit(temporal=2.0), "`free_init_dt` must be a number from 0.01 to 1"),
])
def test_bad_settings_are_one_line(spec, message):
    with pytest.raises(InvalidArgument) as e:
        spec.validate()
    assert message in str(e.value) and "\n" not in str(e.value)
