"""Weights packed for oneDNN once per generation, and GEGLU's gelu fused into its projection.

PyTorch's CPU convolutions and bf16 linear layers hand oneDNN their weights in PyTorch's plain
layout, and oneDNN reorders them into its own blocked layout at every call. A UNet step calls each
layer once or twice, so for Stable Diffusion's deep layers the reorder costs as much as the
product: a 3x3 convolution from 2,560 to 1,280 channels at 8x8 takes 50 ms from the plain weight
and 18 ms from a packed one. Inside :func:`packed_weights`, each ``Conv2d`` and ``Linear`` packs
its weight at its first call and calls oneDNN's own operators (the ones ``torch.compile`` uses
after freezing) on the packed copy after that. The kernels are the same, so the results are
bit-identical; leaving drops the copies, since weights may change between generations (LoRAs are
fused into them).

GEGLU, the feed-forward of every SD transformer block, projects to twice its width and returns
``h * gelu(g)`` of the two halves. Packed, the halves are two projections, the gate's with the
exact (erf) gelu applied by oneDNN to the fp32 accumulator before rounding, then one in-place
multiply. That is one bf16 rounding fewer than PyTorch's chain (measured closer to the fp32
result), and at 64x64 latents the layer runs in half the time: the 2,560-wide bf16 product is
oneDNN's slowest shape, and the gelu and multiply passes over it are gone.

In the same scope, the transformer blocks hand their output to ``proj_out`` as the channels-last
view their tokens already are, instead of diffusers' ``.contiguous()`` copy to NCHW (which the
convolution then copies back).

Everything falls back to the layers' own ``forward`` where this does not apply: gradients on,
another device or dtype, inputs not in channels-last (convolutions), or a PyTorch built without
oneDNN. ``benchmarks/sd15.py`` measures the whole; ``tests/speed/test_packing.py`` checks it.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

# where oneDNN runs the layers from packed weights: bf16 (AVX512-BF16/AMX CPUs) and fp32
DTYPES = (torch.bfloat16, torch.float32)


def available() -> bool:
    """Whether this PyTorch has oneDNN's packed-weight operators."""
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))


def _bf16_products() -> bool:
    """Whether bf16 linears gain from oneDNN here: CPUs with AVX512-BF16, where it was measured
    (PyTorch's own convolutions use oneDNN everywhere, so packing them is the same kernel)."""
    return torch.cpu._is_avx512_bf16_supported()


def _applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == weight.dtype
            and x.dtype in DTYPES)


def _conv_forward(mod: nn.Conv2d):
    packed: dict[tuple[int, int], torch.Tensor] = {}

    def forward(input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (nn.Conv2d.forward's name: callers pass input=)
        x = input
        if x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last) or not _applies(x, mod.weight):
            return nn.Conv2d.forward(mod, x)
        size = tuple(x.shape[-2:])
        if size not in packed:  # oneDNN's layout for the first input of each size (a hires pass has two)
            packed[size] = torch.ops.mkldnn._reorder_convolution_weight(
                mod.weight, list(mod.padding), list(mod.stride), list(mod.dilation), mod.groups, list(x.shape))
        return torch.ops.mkldnn._convolution_pointwise(
            x, packed[size], mod.bias, list(mod.padding), list(mod.stride), list(mod.dilation), mod.groups,
            "none", [], "")

    return forward


def _pack_linear(weight: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), rows)


def _linear_forward(mod: nn.Linear):
    packed = []

    def forward(input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (nn.Linear.forward's: diffusers' motion modules pass input=)
        x = input
        # fp32 linears stay with PyTorch (MKL's sgemm, not oneDNN: nothing is reordered per call)
        if x.dtype != torch.bfloat16 or not _applies(x, mod.weight):
            return nn.Linear.forward(mod, x)
        if not packed:
            packed.append(_pack_linear(mod.weight, x.numel() // x.shape[-1]))
        return torch.ops.mkldnn._linear_pointwise(x, packed[0], mod.bias, "none", [], "")

    return forward


def _geglu_forward(mod):
    packed = []
    plain = type(mod).forward

    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        proj = mod.proj
        if args or kwargs or x.dtype != torch.bfloat16 or not _applies(x, proj.weight):
            return plain(mod, x, *args, **kwargs)
        if not packed:
            half, rows = proj.out_features // 2, x.numel() // x.shape[-1]
            bias = proj.bias
            packed.extend([_pack_linear(proj.weight[:half], rows), _pack_linear(proj.weight[half:], rows),
                           None if bias is None else bias[:half].contiguous(),
                           None if bias is None else bias[half:].contiguous()])
        w_h, w_g, b_h, b_g = packed
        gate = torch.ops.mkldnn._linear_pointwise(x, w_g, b_g, "gelu", [], "none")  # exact (erf) gelu
        return torch.ops.mkldnn._linear_pointwise(x, w_h, b_h, "none", [], "").mul_(gate)

    return forward


def _transformer_output(mod):
    plain = type(mod)._get_output_for_continuous_inputs

    def output(hidden_states, residual, batch_size, height, width, inner_dim):
        # diffusers' own, less its ``.contiguous()``: the permuted tokens already are the
        # channels-last image the convolutions around want, so the copy to NCHW (and oneDNN's copy
        # back) was all it did
        if not residual.is_contiguous(memory_format=torch.channels_last):
            return plain(mod, hidden_states, residual, batch_size, height, width, inner_dim)
        if not mod.use_linear_projection:
            image = mod.proj_out(hidden_states.reshape(batch_size, height, width, inner_dim).permute(0, 3, 1, 2))
        else:
            image = mod.proj_out(hidden_states).reshape(batch_size, height, width, inner_dim).permute(0, 3, 1, 2)
        return image + residual

    return output


def _patches_for(mod) -> dict:
    """The methods to replace on ``mod`` while packed, by name."""
    from diffusers.models.activations import GEGLU
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    kind = type(mod)
    if kind is Transformer2DModel and getattr(mod, "is_input_continuous", False) and \
            hasattr(kind, "_get_output_for_continuous_inputs"):
        return {"_get_output_for_continuous_inputs": _transformer_output(mod)}
    if kind is nn.Conv2d and mod.padding_mode == "zeros" and not isinstance(mod.padding, str):
        return {"forward": _conv_forward(mod)}
    if not _bf16_products():
        return {}
    if kind is GEGLU and type(mod.proj) is nn.Linear:  # a LoRA-wrapped projection keeps its own path
        return {"forward": _geglu_forward(mod)}
    if kind is nn.Linear:
        return {"forward": _linear_forward(mod)}
    return {}


@contextlib.contextmanager
def instance_patches(marker: str, targets):
    """Replace methods of module instances (in their ``__dict__``, so the class and other instances
    keep theirs) while inside: ``targets`` yields ``(module, {name: function})``. A module that an
    enclosing scope with the same ``marker`` has patched is left to it. Yields how many were patched."""
    patched = []
    for mod, patches in targets:
        if patches and marker not in mod.__dict__:
            mod.__dict__.update(patches, **{marker: tuple(patches)})
            patched.append(mod)
    try:
        yield len(patched)
    finally:
        for mod in patched:
            for name in mod.__dict__.pop(marker):
                mod.__dict__.pop(name, None)


def uncompiled(models):
    """``models`` less ``None`` and compiled ones (inductor handles those itself)."""
    return [m for m in models if m is not None and getattr(m, "_compiled_call_impl", None) is None]


@contextlib.contextmanager
def packed_weights(*models):
    """Run ``models``' convolutions, linears and GEGLUs from oneDNN-packed weights, and their
    transformer blocks without the NCHW round trip, while inside
    (CPU inference; see the module's docstring). Weights must not change inside; layers already
    packed by an enclosing ``packed_weights`` are left to it."""
    # a module whose forward another scope has replaced (the motion modules' GEGLUs) is left to it
    targets = ((mod, _patches_for(mod)) for model in uncompiled(models) for mod in model.modules()
               if "_gouache_packed" not in mod.__dict__ and "forward" not in mod.__dict__) if available() else ()
    with instance_patches("_gouache_packed", targets) as n:
        yield n


def few_channel_group_norm(x: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor | None:
    """``norm(x)`` for a channels-last ``x`` whose groups have few channels, or None where it does
    not pay (then call ``norm`` itself).

    PyTorch's channels-last GroupNorm kernel on CPU is slow when a group holds only a few channels:
    gouache-tiny's 64 channels in 32 groups over a 16-frame clip at 8x8 take 0.53 ms, against
    0.07 ms for the same tensor in NCHW. Here each channel's sum and sum of squares are reduced over
    the pixels (a contiguous reduction in that layout), gathered per group, and the normalisation
    with the affine is one ``addcmul`` pass that writes channels-last again: 0.12 ms. Sums of squares
    lose precision where a group's mean is far above its spread; fp32 statistics keep that well
    below the rounding of what follows (checked against ``F.group_norm`` in ``tests/speed``)."""
    n, c, h, w = x.shape if x.dim() == 4 else (0, 0, 0, 0)
    g = norm.num_groups
    if (not n or n < 8 or c // g > 8 or torch.is_grad_enabled() or x.device.type != "cpu"
            or not x.is_contiguous(memory_format=torch.channels_last) or not norm.affine):
        return None
    tokens = x.permute(0, 2, 3, 1).reshape(n, h * w, c)
    stats = tokens.float()
    count = h * w * (c // g)
    mean = stats.sum(1).view(n, g, -1).sum(-1) / count
    var = ((stats * stats).sum(1).view(n, g, -1).sum(-1) / count - mean * mean).clamp_min_(0)
    scale = torch.rsqrt(var + norm.eps).repeat_interleave(c // g, 1) * norm.weight
    shift = norm.bias - mean.repeat_interleave(c // g, 1) * scale
    out = torch.addcmul(shift[:, None, :].to(x.dtype), tokens, scale[:, None, :].to(x.dtype))
    return out.view(n, h, w, c).permute(0, 3, 1, 2)
