"""DeepCache: the shallow branch is the UNet's own computation; cached steps skip the deep part."""

import pytest
import torch

from gouache.errors import InvalidArgument
from gouache.pipelines.request import GenerationRequest, request_from_infotext
from gouache.pipelines.txt2img import txt2img
from gouache.speed.deepcache import DeepCache, shallow_forward


def _inputs(unet, batch=2, size=8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, unet.config.in_channels, size, size, generator=g)
    c = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=g)
    return x, torch.tensor(500), c


def test_the_shallow_branch_with_this_steps_deep_features_is_the_full_unet(tiny_model):
    unet = tiny_model.unet
    x, t, c = _inputs(unet)
    cache = DeepCache(3)
    with torch.no_grad():
        full = cache(unet, x, t, c, step=0)
        ref = unet(x, t, encoder_hidden_states=c, return_dict=False)[0]
        shallow = shallow_forward(unet, x, t, c, cache.deep[0])
    assert torch.equal(full, ref)
    assert torch.equal(shallow, ref)


def test_sdxl_shallow_branch(tiny_sdxl):
    unet = tiny_sdxl.unet
    x, t, c = _inputs(unet, batch=1)
    added = {"text_embeds": torch.randn(1, tiny_sdxl.pipeline.text_encoder_2.config.projection_dim),
             "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}
    cache = DeepCache(2)
    with torch.no_grad():
        full = cache(unet, x, t, c, step=0, added_cond_kwargs=added)
        shallow = cache(unet, x, t, c, step=1, added_cond_kwargs=added)
    assert torch.allclose(full, shallow, atol=1e-5)  # same input: the cached features are this step's
    assert (cache.full_calls, cache.cached_calls) == (1, 1)


def test_steps_and_slots():
    cache = DeepCache(3)
    assert [cache.is_full(s, 0) for s in range(4)] == [True, True, True, True]  # nothing kept yet
    cache.deep[0] = torch.zeros(1)
    assert [cache.is_full(s, 0) for s in range(7)] == [True, False, False, True, False, False, True]
    assert cache.is_full(1, 1)  # another image of the batch has its own features
    with pytest.raises(InvalidArgument, match="interval"):
        DeepCache(0)


def test_a_request_with_deepcache(tiny_model):
    prompt = "a red circle on a blue background"
    base = txt2img(tiny_model, GenerationRequest(prompt, steps=9, seed=3, batch_size=2))
    one = txt2img(tiny_model, GenerationRequest(prompt, steps=9, seed=3, batch_size=2, deepcache_interval=1))
    assert [r.image.tobytes() for r in one] == [r.image.tobytes() for r in base]  # interval 1 is off
    calls = []
    hook = tiny_model.unet.register_forward_hook(lambda *a: calls.append(1))
    try:
        cached = txt2img(tiny_model, GenerationRequest(prompt, steps=9, seed=3, batch_size=2, deepcache_interval=3))
    finally:
        hook.remove()
    assert len(calls) == 2 * 3  # two images, full UNet at steps 0, 3, 6
    assert cached[0].image.tobytes() != base[0].image.tobytes()
    # image 2 of the batch is the image made alone from its seed
    alone = txt2img(tiny_model, GenerationRequest(prompt, steps=9, seed=4, deepcache_interval=3))[0]
    assert alone.image.tobytes() == cached[1].image.tobytes()
    assert request_from_infotext(cached[0].infotext).deepcache_interval == 3
