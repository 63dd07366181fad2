"""Depth-to-image on a tiny random-weight 5-channel UNet with gouache-tiny's other components."""

import numpy as np
import pytest
import torch
from PIL import Image

from gouache.errors import InvalidArgument
from gouache.pipelines.depth import depth2img, depth_conditioning
from gouache.pipelines.request import Depth2ImgRequest


@pytest.fixture(scope="module")
def tiny_depth(tiny_model):
    """gouache-tiny's VAE and text encoder with a random UNet of the recipe's sizes reading 5 channels."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    from gouache.pipelines.model import LoadedModel
    from gouache.models.tiny_architecture import TinyConfig, build_unet

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config({**build_unet(TinyConfig()).config, "in_channels": 5}).eval()
    p = tiny_model.pipeline
    pipe = StableDiffusionPipeline(vae=p.vae, text_encoder=p.text_encoder, tokenizer=p.tokenizer, unet=unet,
                                   scheduler=p.scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    return LoadedModel(pipe, "tiny-depth", "tiny-depth", "2222222222")


@pytest.fixture(scope="module")
def depth():
    """Near at the top (white), far at the bottom: a ramp."""
    return Image.fromarray(np.repeat(np.linspace(255, 0, 64, dtype=np.uint8)[:, None], 64, axis=1))


def test_depth_map_reaches_the_unet_at_latent_size(tiny_depth, depth, monkeypatch):
    seen = []
    forward = tiny_depth.unet.forward
    monkeypatch.setattr(tiny_depth.unet, "forward", lambda x, *a, **kw: seen.append(x.clone()) or forward(x, *a, **kw))
    init = Image.new("RGB", (96, 64), "red")
    out = depth2img(tiny_depth, Depth2ImgRequest("a red circle", init_image=init, depth_map=depth, steps=4, seed=1,
                                                 denoising_strength=0.5))
    assert out[0].image.size == (96, 64)
    assert len(seen) == 2 and seen[0].shape[1:] == (5, 8, 12)  # int(4 · 0.5) steps, latents + depth
    channel = seen[0][0, 4]
    assert torch.allclose(channel, depth_conditioning(depth.resize((96, 64)), (8, 12))[0, 0])
    assert channel[0].mean() > 0.9 and channel[-1].mean() < -0.9  # near on top, far below, in [-1, 1]


def test_depth_changes_the_image(tiny_depth, depth):
    def run(d):
        return np.asarray(depth2img(tiny_depth, Depth2ImgRequest("x", init_image=Image.new("RGB", (64, 64), "red"),
                                                                 depth_map=d, steps=3, seed=2))[0].image)

    assert not np.array_equal(run(depth), run(depth.transpose(Image.Transpose.FLIP_TOP_BOTTOM)))


def test_missing_depth_map_says_to_pass_one(tiny_depth):
    with pytest.raises(InvalidArgument, match="pass a depth image with --depth"):
        depth2img(tiny_depth, Depth2ImgRequest("x", init_image=Image.new("RGB", (64, 64)), steps=2))


def test_a_model_without_a_depth_channel_is_refused(tiny_model, depth):
    with pytest.raises(InvalidArgument, match="not a depth model"):
        depth2img(tiny_model, Depth2ImgRequest("x", init_image=Image.new("RGB", (64, 64)), depth_map=depth, steps=2))


def test_cli_depth2img(run, tiny_depth, depth, tmp_path, monkeypatch):
    import gouache.pipelines.model

    monkeypatch.setattr(gouache.pipelines.model, "load_model", lambda *a, **kw: tiny_depth)
    Image.new("RGB", (64, 64), "red").save(tmp_path / "init.png")
    depth.save(tmp_path / "depth.png")
    code, out, _ = run("depth2img", tmp_path / "init.png", "a red circle", "--depth", tmp_path / "depth.png",
                           "--strength", "0.5", "--steps", "2", "--out", tmp_path / "out")
    assert code == 0 and Image.open(out.strip()).size == (64, 64)
    code, _, err = run("depth2img", tmp_path / "init.png", "a red circle", "--out", tmp_path / "out")
    assert code == 1 and "pass a depth image with --depth" in err


