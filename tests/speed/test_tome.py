"""Token merging: tokens merged and put back, deterministic, and a request option."""

import torch

from gouache.pipelines.request import GenerationRequest, request_from_infotext
from gouache.pipelines.txt2img import txt2img
from gouache.speed import token_merging
from gouache.speed.attention import GouacheAttnProcessor
from gouache.speed.tome import TokenMerging, bipartite_merge


def test_merge_and_unmerge():
    x = torch.randn(2, 64, 8)
    merge, unmerge = bipartite_merge(x, 8, 8, 2, 2, 32, torch.Generator().manual_seed(0))
    merged = merge(x)
    assert merged.shape == (2, 32, 8)
    back = unmerge(merged)
    assert back.shape == x.shape
    # 16 destinations (one per 2x2 cell) and 48 sources, 32 of which were merged: the 16 kept
    # sources come back exactly, and every token comes back as one of the merged tokens
    assert ((back == x).all(-1).sum(-1) >= 16).all()
    for i in range(2):
        assert (back[i][:, None, :] == merged[i][None]).all(-1).any(-1).all()


def test_the_plan_is_deterministic_and_only_at_full_resolution():
    tome = TokenMerging(ratio=0.5, latent_hw=(16, 16))
    x = torch.randn(2, 256, 8)
    a, b = tome.plan(x), tome.plan(x)
    assert torch.equal(a[0](x), b[0](x))
    assert tome.plan(torch.randn(2, 64, 8)) is None  # a downsampled block is left alone (max_downsample 1)
    assert TokenMerging(ratio=0.0, latent_hw=(16, 16)).plan(x) is None


def test_token_merging_is_set_and_restored(tiny_model):
    unet = tiny_model.unet
    with token_merging(unet, 0.5) as tome:
        assert tome is not None
        assert any(getattr(p, "tome", None) is tome for p in unet.attn_processors.values())
    assert all(getattr(p, "tome", None) is None for p in unet.attn_processors.values()
               if isinstance(p, GouacheAttnProcessor))


def test_a_request_with_tome_runs_repeats_and_records_itself(tiny_model):
    req = GenerationRequest("a red circle on a blue background", steps=6, seed=3, tome_ratio=0.5)
    a, b = txt2img(tiny_model, req)[0], txt2img(tiny_model, req)[0]
    plain = txt2img(tiny_model, GenerationRequest("a red circle on a blue background", steps=6, seed=3))[0]
    assert a.image.tobytes() == b.image.tobytes()
    assert a.image.tobytes() != plain.image.tobytes()
    assert "Token merging ratio: 0.5" in a.infotext
    assert request_from_infotext(a.infotext).tome_ratio == 0.5
