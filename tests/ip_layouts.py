"""IP-Adapter files in h94's exact key layouts, with tiny random weights, for any UNet.

h94/IP-Adapter's files hold ``image_proj.*`` (the plain adapter's ``proj``/``norm``; the "plus"
adapters' Resampler: ``latents``, ``proj_in``, ``proj_out``, ``norm_out`` and four
``layers.{i}.0`` attention / ``layers.{i}.1`` feed-forward blocks, heads of width 64) and
``ip_adapter.{2i+1}.to_k_ip.weight`` / ``to_v_ip.weight`` for cross-attention layer ``i``. The
``.safetensors`` is flat, the ``.bin`` the nested ``{"image_proj": ..., "ip_adapter": ...}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

QUERIES = 16  # the plus adapters' image tokens
DEPTH = 4  # the Resampler's layers (h94's, and what diffusers builds)


def cross_layers(unet) -> list:
    names = [n for n in unet.attn_processors if not n.endswith("attn1.processor")]
    return [unet.get_submodule(n.removesuffix(".processor")) for n in names]


def h94_state(unet, kind: str, width: int, seed: int = 0, dim: int = 64) -> dict[str, torch.Tensor]:
    """An adapter for ``unet`` whose projection reads ``width`` wide embeddings (``basic``) or hidden
    states (``plus``; a Resampler ``dim`` wide)."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=g) * 0.2  # noqa: E731
    cross = unet.config.cross_attention_dim
    if kind == "basic":
        proj = {"proj.weight": rand(4 * cross, width), "proj.bias": rand(4 * cross),
                "norm.weight": 1 + rand(cross), "norm.bias": rand(cross)}
    else:
        inner = 64  # one head of 64
        proj = {"latents": rand(1, QUERIES, dim), "proj_in.weight": rand(dim, width), "proj_in.bias": rand(dim),
                "proj_out.weight": rand(cross, dim), "proj_out.bias": rand(cross),
                "norm_out.weight": 1 + rand(cross), "norm_out.bias": rand(cross)}
        for i in range(DEPTH):
            proj |= {f"layers.{i}.0.norm1.weight": 1 + rand(dim), f"layers.{i}.0.norm1.bias": rand(dim),
                     f"layers.{i}.0.norm2.weight": 1 + rand(dim), f"layers.{i}.0.norm2.bias": rand(dim),
                     f"layers.{i}.0.to_q.weight": rand(inner, dim), f"layers.{i}.0.to_kv.weight": rand(2 * inner, dim),
                     f"layers.{i}.0.to_out.weight": rand(dim, inner),
                     f"layers.{i}.1.0.weight": 1 + rand(dim), f"layers.{i}.1.0.bias": rand(dim),
                     f"layers.{i}.1.1.weight": rand(4 * dim, dim), f"layers.{i}.1.3.weight": rand(dim, 4 * dim)}
    state = {f"image_proj.{k}": v for k, v in proj.items()}
    for i, attn in enumerate(cross_layers(unet)):
        for name in ("to_k_ip", "to_v_ip"):
            state[f"ip_adapter.{2 * i + 1}.{name}.weight"] = rand(attn.to_k.out_features, cross)
    return state


def write(path: Path, state: dict[str, torch.Tensor], encoder: str | None = None) -> Path:
    """``state`` at ``path`` (``.safetensors`` flat, ``.bin`` nested); ``encoder``: a ``NAME.json``
    beside it naming the image encoder."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".bin":
        nested = {part: {k.removeprefix(part + "."): v for k, v in state.items() if k.startswith(part + ".")}
                  for part in ("image_proj", "ip_adapter")}
        torch.save(nested, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    if encoder is not None:
        path.with_suffix(".json").write_text(json.dumps({"image_encoder": encoder}))
    return path


def vision_encoder(folder: Path, projection_dim: int = 24, hidden: int = 32, seed: int = 0) -> Path:
    """A tiny ``CLIPVisionModelWithProjection`` folder (32×32 images, patches of 8), as h94's
    ``image_encoder/`` is laid out: ``config.json`` and the weights, no processor config."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    config = CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=hidden, intermediate_size=2 * hidden,
                              num_hidden_layers=2, num_attention_heads=2, projection_dim=projection_dim)
    CLIPVisionModelWithProjection(config).eval().save_pretrained(folder)
    return folder


def tiny_gouache_adapter(folder: Path, unet, name: str = "tiny-ip", seed: int = 0) -> Path:
    """A plain adapter for gouache-tiny that reads gouache-tiny-clip's 64-wide image embeddings
    (named in its ``NAME.json``, as the built-in adapter does)."""
    return write(folder / f"{name}.safetensors", h94_state(unet, "basic", 64, seed), encoder="gouache-tiny-clip")
