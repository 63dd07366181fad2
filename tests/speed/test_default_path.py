"""The exact default path: its images match the fp32 reference within the stated tolerance.

Stated tolerance (README, "Speed"): against plain fp32 with diffusers' attention, the default
path's images differ by at most 1 level in fp32 (channels-last and gouache's attention only
reorder sums) and, in bf16, by a mean of at most 2 levels of 255 with the judge reading the
same colour, shape and background.
"""

import numpy as np
import pytest
import torch

from gouache.errors import InvalidArgument
from gouache.pipelines.model import load_model
from gouache.pipelines.request import GenerationRequest
from gouache.pipelines.txt2img import txt2img
from gouache.speed import SpeedSettings
from gouache.tiny.judge import read_image

PROMPTS = ["a red circle on a blue background", "a yellow square on a green background"]


@pytest.fixture(scope="module")
def reference():
    return load_model(None, speed=SpeedSettings.reference())


def _images(model, size=None, steps=8):
    return [np.asarray(txt2img(model, GenerationRequest(p, steps=steps, seed=10 + i, width=size, height=size))[0].image,
                       dtype=np.int16) for i, p in enumerate(PROMPTS)]


def test_fp32_default_path_is_the_reference(tiny_model, reference):
    assert tiny_model.dtype == torch.float32 and tiny_model.speed["channels_last"]
    for a, b in zip(_images(tiny_model), _images(reference)):
        assert np.abs(a - b).max() <= 1


@pytest.mark.parametrize("size", [None, 256])  # 256²: 1,024 tokens, where the blocked CPU kernel runs
def test_bf16_default_path_matches_fp32(reference, size):
    bf16 = load_model(None, dtype="bf16")
    assert bf16.dtype == torch.bfloat16
    for a, b in zip(_images(bf16, size), _images(reference, size)):
        assert np.abs(a - b).mean() <= 2.0
        if size is None:  # the judge reads 64² images
            from PIL import Image

            assert read_image(Image.fromarray(a.astype(np.uint8))).as_tuple() == \
                read_image(Image.fromarray(b.astype(np.uint8))).as_tuple()


def test_sliced_attention_and_vae_tiling_run(reference):
    sliced = load_model(None, speed=SpeedSettings(dtype="fp32", attention="sliced", vae_tiling=True))
    for a, b in zip(_images(sliced), _images(reference)):
        assert np.abs(a - b).max() <= 1


def test_offload_needs_cuda():
    with pytest.raises(InvalidArgument, match="CUDA"):
        load_model(None, speed=SpeedSettings(offload="model"))


def test_bad_settings_fail_before_loading():
    with pytest.raises(InvalidArgument, match="attention"):
        load_model(None, speed=SpeedSettings(attention="flash"))
    with pytest.raises(InvalidArgument, match="dtype"):
        load_model(None, dtype="fp8")
