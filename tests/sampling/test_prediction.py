"""What a model's output predicts, read back: the three prediction types, and the loss guidance's push
for each of them."""

import pytest
import torch

from gouache.errors import InvalidArgument
from gouache.sampling.prediction import PREDICTION_TYPES, predicted_noise, predicted_x0, shifted_output


def _noised(alpha_bar):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    a, b = alpha_bar**0.5, (1 - alpha_bar) ** 0.5
    x = a * x0 + b * eps
    outputs = {"epsilon": eps, "v_prediction": a * eps - b * x0, "sample": x0}
    return x0, eps, x, outputs


@pytest.mark.parametrize("kind", PREDICTION_TYPES)
@pytest.mark.parametrize("alpha_bar", [0.3, torch.tensor([0.3, 0.8]).view(-1, 1, 1, 1)])
def test_each_prediction_type_gives_back_x0_and_the_noise(kind, alpha_bar):
    x0, eps, x, outputs = _noised(alpha_bar)
    torch.testing.assert_close(predicted_x0(outputs[kind], x, alpha_bar, kind), x0)
    torch.testing.assert_close(predicted_noise(outputs[kind], x, alpha_bar, kind), eps)


@pytest.mark.parametrize("kind", PREDICTION_TYPES)
def test_shifted_output_moves_the_predicted_x0_by_the_shift(kind):
    x0, _, x, outputs = _noised(0.6)
    shift = torch.full_like(x0, 0.25)
    moved = shifted_output(outputs[kind], shift, 0.6, kind)
    torch.testing.assert_close(predicted_x0(moved, x, 0.6, kind), x0 + shift)


def test_an_unknown_prediction_type_is_one_clear_error():
    with pytest.raises(InvalidArgument, match="prediction type 'flow' is not supported; a model predicts one of "
                                              "epsilon, v_prediction, sample"):
        predicted_x0(torch.zeros(1), torch.zeros(1), 0.5, "flow")


class _Identity(torch.nn.Module):
    """A 'VAE' whose decode is the identity on 3-channel latents, so the gradient is known."""

    config = type("C", (), {"scaling_factor": 1.0, "latent_channels": 3})()
    dtype = torch.float32

    def decode(self, z, return_dict=False):
        return (z,)


def test_loss_guidance_reads_a_sample_prediction_model_as_x0():
    """A model that predicts x0 itself: the guided output is that x0 moved by -scale·σ²·∇loss
    (it was read as a v-prediction before)."""
    from diffusers import EulerDiscreteScheduler

    from gouache.sampling.loss import LossGuidance, LossGuidedDenoiser

    scheduler = EulerDiscreteScheduler(prediction_type="sample")
    x0 = torch.full((1, 3, 2, 2), 0.5)
    guided = LossGuidedDenoiser(lambda x, t, step: x0, LossGuidance(lambda im: (im**2).sum() / 2, scale=0.1),
                                _Identity(), scheduler)
    alpha = float(scheduler.alphas_cumprod[500])
    out = guided(torch.ones(1, 3, 2, 2), torch.tensor(500), 0)
    # loss ½|x0|² has gradient x0: the push is -0.1·σ²·x0, σ² = (1 - ᾱ) / ᾱ
    torch.testing.assert_close(out - x0, -0.1 * (1 - alpha) / alpha * x0, rtol=1e-4, atol=1e-7)
