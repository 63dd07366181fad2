"""Variation seeds (A1111's "Variation seed" / "Variation seed strength") with gouache-tiny."""

import numpy as np
import pytest
import torch

from gouache.errors import InvalidArgument
from gouache.pipelines.request import GenerationRequest, request_from_infotext
from gouache.pipelines.txt2img import txt2img
from gouache.sampling.loop import initial_noise, slerp

PROMPT = "a green triangle on a white background"


def image(model, **kw):
    return txt2img(model, GenerationRequest(PROMPT, **{"steps": 8, "seed": 21, **kw}))[0]


def arr(out):
    return np.asarray(out.image, dtype=np.float64)


def test_strength_zero_is_the_plain_image_and_one_is_the_variation_seeds(tiny_model):
    plain, other = image(tiny_model), image(tiny_model, seed=77)
    zero = image(tiny_model, subseed=77, subseed_strength=0.0)
    one = image(tiny_model, subseed=77, subseed_strength=1.0)
    half = image(tiny_model, subseed=77, subseed_strength=0.5)
    assert np.array_equal(arr(zero), arr(plain))
    assert np.array_equal(arr(one), arr(other))
    # half way: nearer to the two ends than an image from unrelated noise is
    unrelated = image(tiny_model, seed=4321)
    to_ends = (np.abs(arr(half) - arr(plain)).mean() + np.abs(arr(half) - arr(other)).mean()) / 2
    assert to_ends < (np.abs(arr(unrelated) - arr(plain)).mean() + np.abs(arr(unrelated) - arr(other)).mean()) / 2
    assert not np.array_equal(arr(half), arr(plain)) and not np.array_equal(arr(half), arr(other))


def test_half_way_noise_keeps_the_noise_scale():
    a, b = initial_noise([1], (4, 8, 8))[0], initial_noise([2], (4, 8, 8))[0]
    mid = slerp(0.5, a, b)
    assert abs(mid.std().item() - 1) < 0.2  # a linear mix would shrink it to about 0.71
    assert torch.equal(initial_noise([1], (4, 8, 8), subseeds=[2], subseed_strength=0.5)[0], mid)


def test_infotext_records_the_variation_and_reads_back(tiny_model):
    outs = txt2img(tiny_model, GenerationRequest(PROMPT, steps=4, seed=5, subseed=40, subseed_strength=0.3, batch_size=2))
    assert "Variation seed: 41, Variation seed strength: 0.3" in outs[1].infotext  # image i: subseed + i
    again = txt2img(tiny_model, request_from_infotext(outs[1].infotext))[0]
    assert np.array_equal(arr(again), arr(outs[1]))
    assert "Variation" not in image(tiny_model, steps=2).infotext


@pytest.mark.parametrize("field, value, message", [
    ("subseed", -2, "`subseed` must be between -1 and 4294967295, got -2"),
    ("subseed_strength", 1.5, "`subseed_strength` must be a number from 0"),
])
def test_bad_variation_fields_are_named(field, value, message):
    with pytest.raises(InvalidArgument, match=message):
        GenerationRequest(PROMPT, **{field: value}).validate()
