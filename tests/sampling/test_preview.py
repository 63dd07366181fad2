"""Cheap previews during sampling: how often the callback runs, and that it shows the image's colours."""

import numpy as np
import pytest

from gouache.errors import InvalidArgument
from gouache.pipelines.request import GenerationRequest
from gouache.pipelines.txt2img import txt2img
from gouache.tiny.judge import evaluation_prompts

PROMPT = "a yellow square on a blue background"


def collect(model, every, **kw):
    calls = []
    out = txt2img(model, GenerationRequest(PROMPT, **{"steps": 8, "seed": 2, **kw}),
                  preview=lambda step, total, image: calls.append((step, total, image)), preview_every=every)
    return out, calls


@pytest.mark.parametrize("every, steps", [(3, [3, 6, 8]), (4, [4, 8]), (1, list(range(1, 9)))])
def test_called_every_k_steps_and_after_the_last(tiny_model, every, steps):
    _, calls = collect(tiny_model, every)
    assert [(s, t) for s, t, _ in calls] == [(s, 8) for s in steps]
    assert calls[0][2].size == (8, 8)  # at the latents' resolution, as A1111's "Approx cheap"


def test_a_batch_previews_as_one_grid(tiny_model):
    _, calls = collect(tiny_model, 8, batch_size=2, steps=2)
    assert calls[-1][2].size == (16, 8)


def test_last_preview_roughly_has_the_images_colours(tiny_model):
    """A linear map of 4 channels cannot draw gouache-tiny's VAE output exactly (RMS 55 levels of 255
    on the fitting set, see scripts/fit_preview.py), so "roughly" is: each preview's mean colour is
    on average much nearer its own image's than the other images' (these 8: 27.4 vs 71.9 levels),
    and it goes up and down with the image's mean red, green and blue across prompts (correlations
    here 0.96, 0.79, 0.98; 0.3 is the floor, as green is the channel the map gets least right)."""
    previews, images = [], []
    for i, prompt in enumerate(evaluation_prompts(held_out=False, n=8)):
        calls = []
        out = txt2img(tiny_model, GenerationRequest(prompt, steps=12, seed=i),
                      preview=lambda *a: calls.append(a), preview_every=12)
        previews.append(np.asarray(calls[-1][2], dtype=np.float64).reshape(-1, 3).mean(0))
        images.append(np.asarray(out[0].image, dtype=np.float64).reshape(-1, 3).mean(0))
    dist = np.abs(np.array(previews)[:, None] - np.array(images)[None]).mean(axis=2)
    own, others = np.diag(dist).mean(), dist[~np.eye(8, dtype=bool)].mean()
    assert own < 45 and own < 0.8 * others, (own, others)
    for c in range(3):
        assert np.corrcoef(np.array(previews)[:, c], np.array(images)[:, c])[0, 1] > 0.3


def test_preview_every_must_be_positive(tiny_model):
    with pytest.raises(InvalidArgument, match="`preview_every` must be a whole number of steps, 1 or more, got 0"):
        txt2img(tiny_model, GenerationRequest(PROMPT, steps=1, seed=1), preview=lambda *a: None, preview_every=0)


def test_img2img_previews_the_steps_it_runs(tiny_model):
    from PIL import Image

    from gouache.pipelines.img2img import img2img
    from gouache.pipelines.request import Img2ImgRequest

    calls = []
    img2img(tiny_model, Img2ImgRequest(PROMPT, init_image=Image.new("RGB", (64, 64), "blue"), steps=8, seed=1,
                                       denoising_strength=0.5),
            preview=lambda step, total, image: calls.append((step, total)), preview_every=2)
    assert calls == [(2, 4), (4, 4)]


def test_the_coefficients_are_a_fact_of_the_model_not_of_its_name(tiny_model):
    """gouache-tiny's fitted map ships in its files (``latent_preview``); a model that declares none
    gets its architecture's, whatever it is called."""
    from dataclasses import replace

    import torch

    from gouache.models.facts import NO_FACTS
    from gouache.sampling.preview import SD_LATENT_RGB, latent_rgb

    matrix, bias = latent_rgb(tiny_model)
    assert torch.equal(matrix, torch.tensor(tiny_model.facts.preview.matrix)) and bias.abs().sum() > 0
    assert torch.equal(latent_rgb(replace(tiny_model, name="renamed"))[0], matrix)
    plain, offset = latent_rgb(replace(tiny_model, facts=NO_FACTS))  # still called gouache-tiny
    assert torch.equal(plain, torch.tensor(SD_LATENT_RGB)) and not offset.any()
