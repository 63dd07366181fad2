"""Installing IP-Adapter's cross-attention for one generation, and InstantStyle's style blocks."""

import pytest
import torch

from gouache.adapters.ip_attention import cross_attention_layers, installed, layer_scales, style_scales
from gouache.errors import InvalidArgument


def test_style_blocks_are_instantstyles_on_sdxl_and_the_first_up_block_elsewhere(tiny_model, tiny_sdxl):
    tiny = layer_scales(tiny_model.unet, style_scales(tiny_model.unet, 0.8))
    assert {n for n, s in tiny.items() if s} == {n for n, _ in cross_attention_layers(tiny_model.unet)
                                                 if n.startswith("up_blocks.1.")}
    assert set(tiny.values()) == {0.0, 0.8} and len([s for s in tiny.values() if s]) == 2
    xl = layer_scales(tiny_sdxl.unet, style_scales(tiny_sdxl.unet, 1.0))
    assert [n for n, s in xl.items() if s] == ["up_blocks.0.attentions.1.transformer_blocks.0.attn2.processor"]
    assert set(layer_scales(tiny_model.unet, 0.5).values()) == {0.5}  # a number: every layer


def test_leaving_gives_every_processor_back_even_after_an_error(tiny_model):
    unet = tiny_model.unet
    before = {name: proc for name, proc in unet.attn_processors.items()}

    class Fake:
        tokens, image_proj = 4, torch.nn.Identity()
        to_k = torch.nn.ModuleList([torch.nn.Linear(64, a.to_k.out_features, bias=False)
                                    for _, a in cross_attention_layers(unet)])
        to_v = to_k

    with pytest.raises(RuntimeError, match="boom"):
        with installed(unet, [Fake()], [{"up": {"block_1": 1.0}}]):
            inside = unet.attn_processors
            assert type(inside["up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor"]).__name__ == \
                "IPAdapterAttnProcessor2_0"
            assert inside["down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor"] is \
                before["down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor"]  # self-attention keeps gouache's
            raise RuntimeError("boom")
    assert unet.attn_processors == before and unet.encoder_hid_proj is None
    assert unet.config.encoder_hid_dim_type is None


def test_one_scale_per_adapter(tiny_model):
    with pytest.raises(InvalidArgument, match="2 IP-Adapters but 1 scales"):
        with installed(tiny_model.unet, [object(), object()], [1.0]):
            pass
