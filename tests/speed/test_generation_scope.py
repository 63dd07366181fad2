"""One speed scope per generation: weights packed once for every batch, pass and tile of a request,
and none of gouache's patches on the reference settings."""

import contextlib

import pytest
import torch
from PIL import Image

from gouache.pipelines.request import GenerationRequest, UpscaleRequest
from gouache.pipelines.txt2img import txt2img
from gouache.pipelines.upscale import upscale
from gouache.speed import SpeedSettings, packing

PROMPT = "a red circle on a blue background"


@pytest.fixture
def counted(monkeypatch):
    """How many packing scopes were entered, and how many weights oneDNN reordered."""
    counts = {"scopes": 0, "reorders": 0}
    plain_scope, plain_reorder = packing.packed_weights, torch.ops.mkldnn._reorder_convolution_weight

    @contextlib.contextmanager
    def scope(*models):
        counts["scopes"] += 1
        with plain_scope(*models) as n:
            yield n

    def reorder(*args):
        counts["reorders"] += 1
        return plain_reorder(*args)

    monkeypatch.setattr(packing, "packed_weights", scope)
    monkeypatch.setattr(torch.ops.mkldnn, "_reorder_convolution_weight", reorder)
    return counts


def _convolutions(model) -> int:
    return sum(isinstance(m, torch.nn.Conv2d) for m in model.unet.modules())


@pytest.mark.skipif(not packing.available(), reason="this PyTorch has no oneDNN packed-weight operators")
def test_three_iterations_pack_the_weights_once(tiny_model, counted):
    txt2img(tiny_model, GenerationRequest(PROMPT, steps=3, seed=1))
    once = counts_of(counted)
    assert once[0] == 1 and 0 < once[1] <= _convolutions(tiny_model)  # each convolution that runs, once
    counted.update(scopes=0, reorders=0)
    txt2img(tiny_model, GenerationRequest(PROMPT, steps=3, seed=1, n_iter=3, batch_size=2))
    assert counts_of(counted) == once


@pytest.mark.skipif(not packing.available(), reason="this PyTorch has no oneDNN packed-weight operators")
def test_a_tiled_upscale_packs_the_weights_once(tiny_model, counted):
    source = Image.new("RGB", (64, 64), (200, 40, 40))
    # 4x: a 256² result in 64² tiles, 25 tiles in four chunks of up to 8
    images = upscale(tiny_model, UpscaleRequest(PROMPT, init_image=source, scale=4, steps=2, seed=1, tile=64,
                                                denoising_strength=0.5))
    assert images[0].image.size == (256, 256)
    scopes, reorders = counts_of(counted)
    assert scopes == 1 and 0 < reorders <= _convolutions(tiny_model)


def counts_of(counted) -> tuple[int, int]:
    return counted["scopes"], counted["reorders"]


def test_the_reference_settings_install_no_gouache_patch(gouache_home):
    from gouache.pipelines.model import load_model
    from gouache.speed.attention import GouacheAttnProcessor

    model = load_model(speed=SpeedSettings.reference())
    seen = []

    def look(module, args, kwargs):  # what the UNet runs with, at its first call
        patched = [name for name, m in module.named_modules() if any(k.startswith("_gouache") for k in m.__dict__)]
        seen.append((patched, [type(p).__name__ for p in module.attn_processors.values()]))

    hook = model.unet.register_forward_pre_hook(look, with_kwargs=True)
    try:
        txt2img(model, GenerationRequest(PROMPT, steps=2, seed=1))
    finally:
        hook.remove()
    patched, processors = seen[0]
    assert patched == [] and not any(p == GouacheAttnProcessor.__name__ for p in processors)
    assert {model.speed[k] for k in ("pack_weights", "cache_text", "share_cfg")} == {False}
