"""Weights packed for oneDNN per generation, GEGLU's fused gelu, and the cross-attention cache:
the same results as the layers' own forwards, in the scope of one generation only."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.models.activations import GEGLU

from gouache.speed.attention import cross_attention_cache
from gouache.speed.packing import _bf16_products, available, packed_weights

pytestmark = pytest.mark.skipif(not available(), reason="this PyTorch has no oneDNN")


def _inputs(dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 16, 16, generator=g).to(dtype).to(memory_format=torch.channels_last)
    return x, torch.tensor(500), torch.randn(2, 77, 24, generator=g).to(dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_packed_convolutions_and_linears_are_bit_identical(dtype):
    torch.manual_seed(0)
    conv = nn.Conv2d(48, 32, 3, padding=1).to(dtype).to(memory_format=torch.channels_last)
    down = nn.Conv2d(32, 32, 3, stride=2, padding=1).to(dtype).to(memory_format=torch.channels_last)
    linear = nn.Linear(48, 40).to(dtype)
    x = torch.randn(2, 48, 12, 10).to(dtype).to(memory_format=torch.channels_last)
    tokens = torch.randn(2, 33, 48).to(dtype)
    with torch.no_grad():
        ref = conv(x), down(conv(x)), linear(tokens)
        with packed_weights(conv, down, linear) as n:
            assert n == 2 + _bf16_products() and "forward" in conv.__dict__  # linears: AVX512-BF16 CPUs
            got = conv(x), down(conv(x)), linear(tokens)
            other = conv(x[:1, :, :6])  # a shape other than the one packed for still computes right
        assert "forward" not in conv.__dict__ and "forward" not in linear.__dict__  # restored on leaving
    for a, b in zip(got, ref):
        assert a.shape == b.shape and torch.equal(a, b)
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        plain_other = F.conv2d(x[:1, :, :6], conv.weight, conv.bias, padding=1)
    assert torch.allclose(other, plain_other, atol=1e-5 if dtype == torch.float32 else 0, rtol=0)


def test_geglu_is_fused_and_no_less_accurate():
    torch.manual_seed(0)
    geglu = GEGLU(64, 96)
    x = torch.randn(2, 300, 64)
    with torch.no_grad():
        exact = geglu(x)  # fp32
        geglu.to(torch.bfloat16)
        plain = geglu(x.bfloat16()).float()
        with packed_weights(geglu):
            fused = geglu(x.bfloat16()).float()
    assert fused.shape == exact.shape
    # one bf16 rounding fewer than PyTorch's proj -> gelu -> multiply chain
    assert (fused - exact).abs().mean() <= (plain - exact).abs().mean()
    assert (fused - exact).abs().max() <= 1.5 * (plain - exact).abs().max()


def test_the_unet_gives_the_same_prediction_packed(small_unet):
    unet = small_unet(torch.bfloat16)
    x, t, context = _inputs()
    with torch.no_grad():
        ref = unet(x, t, encoder_hidden_states=context).sample.float()
        with packed_weights(unet) as n:
            assert n > 20
            got = unet(x, t, encoder_hidden_states=context).sample.float()
            again = unet(x, t, encoder_hidden_states=context).sample.float()
        unet32 = small_unet(torch.float32)
        exact = unet32(x.float(), t, encoder_hidden_states=context.float()).sample
    assert torch.equal(got, again)
    # the convolutions and linears are bit-identical; only GEGLU's rounding differs, towards fp32
    assert (got - exact).abs().mean() <= 1.1 * (ref - exact).abs().mean()
    assert (got - ref).abs().max() < 0.1 * ref.abs().max()


def test_packing_stays_out_of_training_and_other_scopes():
    conv = nn.Conv2d(8, 8, 3, padding=1).bfloat16().to(memory_format=torch.channels_last)
    x = torch.randn(1, 8, 6, 6).bfloat16().to(memory_format=torch.channels_last)
    with packed_weights(conv):
        y = conv(x)  # gradients on: the layer's own forward, so autograd sees the weight
        assert y.requires_grad
        y.float().sum().backward()
        assert conv.weight.grad is not None
        with packed_weights(conv) as inner:  # the enclosing scope owns the layer
            assert inner == 0
        assert "forward" in conv.__dict__
        with torch.no_grad():  # not channels-last: PyTorch's path and memory format
            flat = conv(x.contiguous())
            plain = nn.Conv2d.forward(conv, x.contiguous())
        assert torch.equal(flat, plain) and flat.stride() == plain.stride()
    conv.compile()
    with packed_weights(conv) as n:  # inductor packs a compiled model's weights itself
        assert n == 0


def test_cross_attention_keys_and_values_are_computed_once_per_generation(small_unet):
    unet = small_unet(torch.bfloat16)
    x, t, context = _inputs()
    calls = []
    for name, mod in unet.named_modules():
        if name.endswith("attn2.to_k"):
            mod.register_forward_hook(lambda *a: calls.append(1))
    layers = sum(1 for name, _ in unet.named_modules() if name.endswith("attn2.to_k"))
    with torch.no_grad():
        ref = unet(x, t, encoder_hidden_states=context).sample
        calls.clear()
        with cross_attention_cache(unet):
            first = unet(x, t, encoder_hidden_states=context).sample
            # the same text comes as the same tensor at every step (the engine builds it once per text)
            second = unet(x, t, encoder_hidden_states=context).sample
            assert len(calls) == layers
            changed = unet(x, t, encoder_hidden_states=context.flip(1)).sample  # a prompt schedule's switch
            assert len(calls) == 2 * layers
            assert not torch.equal(changed, first)
        assert all(p.kv_cache is None for p in unet.attn_processors.values())
        unet(x, t, encoder_hidden_states=context)
        assert len(calls) == 3 * layers  # outside a generation: computed every call
    assert torch.equal(first, ref) and torch.equal(second, ref)


def test_transformer_blocks_skip_the_nchw_round_trip(small_unet):
    unet = small_unet(torch.float32)  # fp32: GEGLU unfused, so the block's output is bit-identical
    x, t, context = _inputs(torch.float32)
    outputs = []
    block = unet.down_blocks[0].attentions[0]
    block.register_forward_hook(lambda mod, args, out: outputs.append(out[0]))
    with torch.no_grad():
        ref = unet(x, t, encoder_hidden_states=context).sample
        with packed_weights(unet):
            got = unet(x, t, encoder_hidden_states=context).sample
        assert "_get_output_for_continuous_inputs" not in block.__dict__
    assert outputs[1].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(outputs[0], outputs[1])
    assert got.shape == ref.shape


@pytest.mark.parametrize("shape", [(32, 64, 8, 8), (32, 128, 4, 4), (16, 192, 8, 8)])
def test_the_few_channel_group_norm_is_group_norm(shape):
    """A clip's channels-last batch through GroupNorm with few channels per group: the statistics
    path gives GroupNorm's output (to fp32 rounding), channels-last; where it does not pay (small
    batches, many channels per group, contiguous inputs, gradients) it declines."""
    from gouache.speed.packing import few_channel_group_norm

    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(32, shape[1])
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = (torch.randn(*shape) * 3 + 2).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        got = few_channel_group_norm(x, norm)
        want = norm(x.contiguous())
        assert got is not None and got.is_contiguous(memory_format=torch.channels_last)
        assert (got - want).abs().max().item() < 1e-4
        assert few_channel_group_norm(x[:2], norm) is None
        assert few_channel_group_norm(x.contiguous(), norm) is None
        assert few_channel_group_norm(torch.zeros(32, 320, 8, 8).to(memory_format=torch.channels_last),
                                      torch.nn.GroupNorm(32, 320)) is None
    assert few_channel_group_norm(x, norm) is None
