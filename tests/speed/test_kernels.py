"""gouache's fused C attention kernel computes PyTorch's bf16 attention, and gouache falls back
to its PyTorch kernel wherever the C kernel cannot be built or used."""

import pytest
import torch
import torch.nn.functional as F

from gouache.speed import attention, kernels
from gouache.speed.threads import torch_threads

needs_kernel = pytest.mark.skipif(
    not torch.cpu._is_avx512_bf16_supported() or kernels._compiler() is None,
    reason="the fused kernel needs a CPU with AVX512-BF16 and a C compiler",
)


@pytest.fixture
def lib():
    kernels.reset()
    found = kernels.attention_library()
    assert found is not None, kernels.status()
    return found


def _qkv(b, h, lq, s, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, h, n, d, generator=g) for n in (lq, s, s))


# SD 1.5's widths (40, 80, 160), SD 2 / SDXL's 64, the VAE's 512, widths that need a half vector
# (8, 24, 88) or chunks of five (88, 160, 512); key counts off the 16- and 64-key tiles; query
# counts off the 32-query block
@pytest.mark.parametrize("b,h,lq,s,d", [
    (2, 8, 1024, 1024, 40), (2, 8, 256, 77, 80), (1, 2, 33, 100, 160), (1, 1, 300, 300, 512),
    (2, 3, 64, 64, 64), (1, 2, 45, 17, 8), (1, 2, 70, 129, 24), (1, 1, 40, 64, 88), (1, 1, 1, 1, 40),
])
@needs_kernel
def test_fused_kernel_is_attention(lib, b, h, lq, s, d):
    q, k, v = _qkv(b, h, lq, s, d)
    ref = F.scaled_dot_product_attention(q, k, v)  # fp32
    sdpa_bf16 = F.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16()).float()
    with torch.no_grad():
        got = attention.fused_attention(lib, q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert got.shape == (b, h, lq, d) and got.dtype == torch.bfloat16
    err, sdpa_err = (got.float() - ref).abs(), (sdpa_bf16 - ref).abs()
    assert err.max() <= max(1.5 * sdpa_err.max().item(), 0.02)  # bf16 products and weights, fp32 sums
    assert err.mean() <= 1.2 * sdpa_err.mean() + 1e-4


@needs_kernel
def test_one_head_is_split_between_threads(lib):
    """The VAE's attention has one head: its queries are shared out, and the rows still line up."""
    q, k, v = (t.bfloat16() for t in _qkv(1, 1, 301, 301, 64, seed=1))
    with torch.no_grad(), torch_threads(2):
        split = attention.fused_attention(lib, q, k, v)
    with torch.no_grad(), torch_threads(1):
        whole = attention.fused_attention(lib, q, k, v)
    assert torch.equal(split, whole)


@needs_kernel
def test_all_heads_in_one_call_match_one_head_at_a_time(lib):
    """The OpenMP call over (batch, head) reads each head through its strides, views included."""
    q, k, v = (t.bfloat16() for t in _qkv(2, 3, 70, 90, 40, seed=2))
    k = k.transpose(1, 2).contiguous().transpose(1, 2)  # (B, L, H, D) underneath, as from a projection
    out = torch.empty(2, 70, 3, 40, dtype=torch.bfloat16).transpose(1, 2)
    with torch_threads(2):
        kernels.attention_heads_call(lib, q, k, v, out, 40**-0.5, 2)
    for i in range(2):
        for j in range(3):
            one = torch.empty(70, 40, dtype=torch.bfloat16)
            kernels.attention_call(lib, q[i, j], k[i, j], v[i, j], one, 0, 70, 40**-0.5)
            assert torch.equal(out[i, j], one)


@needs_kernel
def test_the_heads_call_refuses_what_does_not_fit(lib):
    q, k, v = (t.bfloat16() for t in _qkv(1, 2, 8, 8, 40))
    with pytest.raises(ValueError, match="shapes do not fit"):
        kernels.attention_heads_call(lib, q, k[:, :1], v, torch.empty_like(q), 1.0, 2)
    with pytest.raises(ValueError, match="4-D bf16"):
        kernels.attention_heads_call(lib, q.float(), k, v, torch.empty_like(q), 1.0, 2)


@needs_kernel
def test_bf16_inference_goes_to_the_fused_kernel_where_it_pays_off(lib, monkeypatch):
    calls = []
    real = attention.fused_attention
    monkeypatch.setattr(attention, "fused_attention", lambda *a: calls.append(a[1].shape) or real(*a))
    with torch_threads(2):
        q = torch.randn(1, 2, 2048, 40).bfloat16()
        with torch.no_grad():
            attention.attention(q, q, q)
            attention.attention(q, q[:, :, :77], q[:, :, :77])  # cross-attention with a prompt's 77 keys
            attention.attention(q[:, :, :64], q[:, :, :64], q[:, :, :64])  # tiny: SDPA
            attention.attention(q[:, :1], q[:, :1], q[:, :1])  # one head, two threads: the PyTorch kernel
            attention.attention(q.float(), q.float(), q.float())  # fp32: SDPA
            attention.attention(q, q, q, torch.zeros(1, 1, 2048, 2048, dtype=torch.bfloat16))  # masks: SDPA
        attention.attention(q, q, q)  # gradients (training): SDPA
    assert calls == [(1, 2, 2048, 40), (1, 2, 2048, 40)]


def test_turned_off_falls_back_to_pytorch(monkeypatch):
    monkeypatch.setenv("GOUACHE_KERNELS", "0")
    kernels.reset()
    try:
        assert kernels.attention_library() is None
        assert "GOUACHE_KERNELS=0" in kernels.status()
        q, k, v = _qkv(1, 2, 1024, 1024, 40)
        ref = F.scaled_dot_product_attention(q, k, v)
        with torch.no_grad():
            got = attention.attention(q.bfloat16(), k.bfloat16(), v.bfloat16()).float()  # the blocked PyTorch kernel
        assert (got - ref).abs().max() < 0.02
    finally:
        monkeypatch.delenv("GOUACHE_KERNELS")
        kernels.reset()


def test_a_missing_compiler_is_one_reason_not_a_crash(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("GOUACHE_KERNEL_CACHE", str(tmp_path / "cache"))
    kernels.reset()
    try:
        assert kernels.attention_library() is None
        why = kernels.status()
        assert "\n" not in why and ("no-such-cc" in why or "AVX512-BF16" in why)
    finally:
        kernels.reset()


@needs_kernel
def test_build_is_cached_and_atomic(tmp_path):
    first = kernels.build(out_dir=tmp_path)
    stamp = first.stat().st_mtime_ns
    assert kernels.build(out_dir=tmp_path) == first and first.stat().st_mtime_ns == stamp  # built once
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary files left behind


@needs_kernel
def test_a_failed_build_says_why_in_one_line(tmp_path):
    bad = tmp_path / "broken.c"
    bad.write_text("int f( {\n")
    with pytest.raises(RuntimeError, match="failed") as info:
        kernels.build(bad, out_dir=tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not [p for p in (tmp_path / "out").iterdir()]  # nothing half-written
