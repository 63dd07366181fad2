"""The built-in model (gouache.models.builtin): shipped small, materialised once as a plain
diffusers folder, and what it generates."""

import json

import numpy as np
import pytest
import torch

from gouache.models.builtin import materialize, shipped_files
from gouache.tiny.judge import read_image


def test_shipped_weights_are_small_and_described():
    weights, meta = shipped_files()
    assert weights.stat().st_size < 30 * 2**20
    info = json.loads(meta.read_text())
    assert info["name"] == "gouache-tiny" and info["scaling_factor"] > 0


def test_materialised_once(gouache_home):
    first = materialize(gouache_home / "builtin")
    stamp = (first / "unet" / "config.json").stat().st_mtime_ns
    assert materialize(gouache_home / "builtin") == first
    assert (first / "unet" / "config.json").stat().st_mtime_ns == stamp
    for part in ("model_index.json", "tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json",
                 "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        assert (first / part).is_file(), part


PROMPTS = ["a red circle on a blue background", "a white square on a black background",
           "a orange triangle on a green background", "a blue circle on a yellow background"]


@pytest.mark.parametrize("settings", [
    {},  # diffusers' own defaults: the folder's scheduler, 50 steps, CFG 7.5
    {"num_inference_steps": 20},
    {"num_inference_steps": 20, "guidance_scale": 5.0, "scheduler": "DPMSolverMultistepScheduler"},
], ids=["diffusers-defaults", "20-steps", "dpm++-cfg5"])
def test_plain_diffusers_generates_what_the_prompt_says(gouache_home, settings):
    import diffusers
    from diffusers import StableDiffusionPipeline

    folder = materialize(gouache_home / "builtin")
    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    settings = dict(settings)
    if "scheduler" in settings:
        pipe.scheduler = getattr(diffusers, settings.pop("scheduler")).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(PROMPTS, generator=torch.Generator().manual_seed(0), **settings).images
    assert all(im.size == (64, 64) for im in images)
    correct = sum(read_image(im).as_tuple() == tuple(p.split()[i] for i in (1, 2, 5)) for im, p in zip(images, PROMPTS))
    assert correct == len(PROMPTS), [read_image(im) for im in images]
    assert np.asarray(images[0]).std() > 10  # not a blank image
