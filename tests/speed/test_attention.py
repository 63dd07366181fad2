"""gouache's attention processor and its CPU kernel compute diffusers' attention."""

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from gouache.speed.attention import GouacheAttnProcessor, cpu_attention, use_cpu_kernel


@pytest.mark.parametrize("shape", [(2, 8, 1100, 40, 1100), (1, 1, 600, 64, 600), (2, 3, 300, 16, 77)])
def test_the_blocked_kernel_is_attention(shape):
    b, h, lq, d, lk = shape
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, h, n, d, generator=g) for n in (lq, lk, lk))
    ref = F.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(cpu_attention(q, k, v, block=256), ref, atol=1e-5)  # fp32: the same sums
    got = cpu_attention(*(t.bfloat16() for t in (q, k, v))).float()
    assert (got - ref).abs().max() < 0.02  # bf16's rounding (8 bits of mantissa)
    sdpa_bf16 = F.scaled_dot_product_attention(*(t.bfloat16() for t in (q, k, v))).float()
    assert (got - ref).abs().mean() < 4 * (sdpa_bf16 - ref).abs().mean() + 1e-3


def test_the_kernel_is_used_only_where_it_pays_off():
    q = torch.zeros(2, 8, 4096, 40, dtype=torch.bfloat16)
    with torch.no_grad():
        assert use_cpu_kernel(q, q, None)
        assert not use_cpu_kernel(q.float(), q.float(), None)  # fp32: PyTorch's SDPA is faster
        assert not use_cpu_kernel(q, q[:, :, :77], None)  # cross-attention with a prompt's 77 keys
        assert not use_cpu_kernel(q[:, :, :64], q[:, :, :64], None)  # short
        assert not use_cpu_kernel(q, q, torch.zeros(1))  # masks go to SDPA
    assert not use_cpu_kernel(q, q, None)  # gradients (training) go to SDPA


@pytest.mark.parametrize("kind", ["self", "cross", "vae"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_processor_matches_diffusers(kind, dtype):
    torch.manual_seed(0)
    if kind == "vae":  # 4-D input, group norm, residual connection, one head
        attn = Attention(64, heads=1, dim_head=64, norm_num_groups=8, residual_connection=True, bias=True,
                         upcast_softmax=True, _from_deprecated_attn_block=True)
        x, context = torch.randn(1, 64, 32, 36), None
    else:
        attn = Attention(64, cross_attention_dim=32 if kind == "cross" else None, heads=4, dim_head=16)
        x = torch.randn(2, 1200, 64)
        context = torch.randn(2, 77, 32) if kind == "cross" else None
    attn = attn.to(dtype).eval()
    x = x.to(dtype)
    context = context.to(dtype) if context is not None else None
    with torch.no_grad():
        attn.set_processor(AttnProcessor2_0())
        ref = attn(x, encoder_hidden_states=context).float()
        attn.set_processor(GouacheAttnProcessor())
        got = attn(x, encoder_hidden_states=context).float()
    tol = 1e-5 if dtype == torch.float32 else 0.05
    assert got.shape == ref.shape and (got - ref).abs().max() <= tol * max(1.0, ref.abs().max().item())


def test_a_motion_module_s_short_attention_is_sdpa():
    """Attention across a clip's frames (16 keys) runs as two batched matmuls on CPU inference:
    the same as SDPA up to rounding; long sequences, masks and gradients keep SDPA."""
    from gouache.speed.attention import short_attention, use_short_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(128, 8, 16, 16, generator=g) for _ in range(3))
    assert torch.allclose(short_attention(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=1e-5)
    with torch.no_grad():
        assert use_short_attention(q, k, None)
        assert not use_short_attention(q, torch.zeros(1, 8, 64, 16), None)  # 64 keys: a spatial attention
        assert not use_short_attention(q, k, torch.zeros(1))
    assert not use_short_attention(q, k, None)  # gradients on

    torch.manual_seed(0)
    attn = Attention(64, heads=8, dim_head=8).eval()
    x = torch.randn(32, 16, 64)
    with torch.no_grad():
        attn.set_processor(AttnProcessor2_0())
        want = attn(x)
        attn.set_processor(GouacheAttnProcessor(temporal=True))
        assert torch.allclose(attn(x), want, atol=1e-5)


def test_a_clip_s_text_is_cached_once_per_run_of_equal_rows():
    """In the key/value cache, a clip's text (a row per frame, equal within each CFG part) is kept
    once per run and repeated; the keys and values are the uncached ones. Rows not in equal runs,
    and the batched CUDA path (``runs`` off: no comparison on the host), keep every row."""
    from gouache.speed.attention import _run_length, cross_attention_cache

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = Attention(32, cross_attention_dim=24, heads=4, dim_head=8)

        @property
        def attn_processors(self):
            return {"attn": self.attn.processor}

    net = Net().eval()
    net.attn.set_processor(GouacheAttnProcessor())
    rows = torch.randn(2, 77, 24)
    text = rows.repeat_interleave(4, 0)  # two CFG parts of four frames
    x = torch.randn(8, 16, 32)
    with torch.no_grad():
        want = net.attn(x, encoder_hidden_states=text)
        with cross_attention_cache(net, runs=True):
            first, again = net.attn(x, encoder_hidden_states=text), net.attn(x, encoder_hidden_states=text)
            (_, _, key, _, run), = net.attn.processor.kv_cache.values()
        assert run == 4 and key.shape[0] == 2  # one row per run held
        assert torch.allclose(first, want, atol=1e-6) and torch.equal(first, again)
        with cross_attention_cache(net):
            net.attn(x, encoder_hidden_states=text)
            (_, _, key, _, run), = net.attn.processor.kv_cache.values()
        assert run == 1 and key.shape[0] == 8
    assert _run_length(torch.randn(8, 77, 24)) == 1 and _run_length(text) == 4
    assert _run_length(torch.cat([rows[:1].repeat(3, 1, 1), rows[1:].repeat(5, 1, 1)])) == 1  # unequal runs
