"""IP-Adapter's decoupled cross-attention in a UNet, switched on for one generation.

IP-Adapter (Ye et al., 2023) gives every cross-attention layer a second key/value projection
(``to_k_ip``, ``to_v_ip``) that reads image tokens, and adds ``scale · attention(q, k_ip, v_ip)`` to
the text's attention before the output projection. diffusers has the pieces: the image tokens come
from ``unet.encoder_hid_proj`` (a ``MultiIPAdapterImageProjection`` of each adapter's projection),
which turns ``added_cond_kwargs["image_embeds"]`` into ``encoder_hidden_states = (text, [tokens…])``,
and ``IPAdapterAttnProcessor2_0`` is the processor that reads that pair. :func:`installed` puts
both in place while inside and gives the UNet back exactly as it was after.

How it coexists with gouache's own processors (:mod:`gouache.speed.attention`): only the
cross-attention layers (``attn2``) get diffusers' IP processor, and only while an adapter is
active; the self-attention layers keep theirs (gouache's fast kernels, token merging, the shared
CFG prefix), and leaving puts every ``attn2`` processor back. Every cross-attention layer must take
the processor while inside, not only the layers an adapter acts on: the UNet hands all of them the
``(text, image tokens)`` pair, which only the IP processor reads (at scale 0 it skips the image
tokens, as diffusers does). An adapter at scale 0 everywhere is never installed at all (the engine
drops it), so its image is the image without an adapter, bit for bit.

Per-block scales follow diffusers' ``set_ip_adapter_scale``: a number, or a dict such as
``{"up": {"block_0": [0.0, 1.0, 0.0]}}`` whose unnamed blocks get 0 (InstantStyle's "style
blocks only", :func:`style_scales`).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch

from gouache.errors import InvalidArgument

# InstantStyle (Wang et al., 2024): on SDXL the style lives in up_blocks.0.attentions.1; its
# published scale dict for "style only" is this one (diffusers' IP-Adapter docs use it too)
SDXL_STYLE = {"up": {"block_0": [0.0, 1.0, 0.0]}}


def cross_attention_layers(unet) -> list[tuple[str, torch.nn.Module]]:
    """``(processor name, Attention module)`` of each cross-attention layer, in the order of
    ``unet.attn_processors`` (the order h94's files number them in: layer ``i`` is ``ip_adapter.{2i+1}``)."""
    out = []
    for name in unet.attn_processors:
        if name.endswith("attn1.processor") or name.startswith("encoder_hid_proj") or "motion_modules" in name:
            continue
        out.append((name, unet.get_submodule(name.removesuffix(".processor"))))
    return out


def is_sdxl_unet(unet) -> bool:
    """SDXL's UNet: its time embedding reads the pooled text and the size ids."""
    return getattr(unet.config, "addition_embed_type", None) == "text_time"


def style_scales(unet, scale: float) -> dict:
    """``scale`` on the style blocks only, as a ``set_ip_adapter_scale`` dict.

    SDXL: InstantStyle's ``up_blocks.0.attentions.1`` (:data:`SDXL_STYLE`). Other UNets (SD 1.x/2.x,
    gouache-tiny): every attention layer of the first up block with cross-attention, the lowest
    resolution of the decoder (SD 1.5: ``up_blocks.1``; gouache-tiny: ``up_blocks.1``, its 4×4
    level), InstantStyle's choice carried over to UNets without SDXL's deep 10-layer transformers.
    """
    first = next((i for i, block in enumerate(unet.up_blocks) if hasattr(block, "attentions")), None)
    if first is None:
        raise InvalidArgument("this UNet has no cross-attention up block, so it has no style blocks for --ip-style")
    if is_sdxl_unet(unet):  # SDXL_STYLE: the middle of the block's layers (a small test UNet may have fewer)
        n = len(unet.up_blocks[first].attentions)
        return {"up": {f"block_{first}": [scale if k == min(1, n - 1) else 0.0 for k in range(n)]}}
    return {"up": {f"block_{first}": scale}}


def layer_scales(unet, scale: float | dict) -> dict[str, float]:
    """The scale of each cross-attention layer (by processor name) for a ``set_ip_adapter_scale``
    value: a number for every layer, or a per-block dict (unnamed blocks 0; diffusers' expansion)."""
    names = [name for name, _ in cross_attention_layers(unet)]
    if not isinstance(scale, dict):
        return {name: float(scale) for name in names}
    from diffusers.loaders.unet_loader_utils import _maybe_expand_lora_scales

    try:
        expanded = _maybe_expand_lora_scales(unet, [scale], default_scale=0.0)[0]
    except ValueError as e:
        raise InvalidArgument(f"IP-Adapter block scales {scale}: {e}") from None
    out = {}
    for name in names:  # diffusers' rule: the last prefix that matches the name sets it
        value = 0.0
        for prefix, s in expanded.items():
            if name.startswith(prefix):
                value = float(s)
        out[name] = value
    return out


def projection_layers(adapters: Sequence) -> torch.nn.Module:
    """diffusers' ``MultiIPAdapterImageProjection`` over each adapter's image projection."""
    from diffusers.models.embeddings import MultiIPAdapterImageProjection

    return MultiIPAdapterImageProjection([a.image_proj for a in adapters])


def _processor(attn, index: int, adapters: Sequence, scales: list[float]):
    """diffusers' IP processor for one layer, holding each adapter's own ``to_k_ip``/``to_v_ip``
    modules (built on the meta device, so nothing is initialised only to be replaced)."""
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    with torch.device("meta"):
        proc = IPAdapterAttnProcessor2_0(attn.to_k.out_features, attn.to_k.in_features,
                                         num_tokens=[a.tokens for a in adapters], scale=list(scales))
    proc.to_k_ip = torch.nn.ModuleList([a.to_k[index] for a in adapters])
    proc.to_v_ip = torch.nn.ModuleList([a.to_v[index] for a in adapters])
    return proc


@contextlib.contextmanager
def installed(unet, adapters: Sequence, scales: Sequence[float | dict]) -> Iterator[None]:
    """While inside, ``unet`` runs ``adapters`` (each with its ``to_k``/``to_v`` per cross-attention
    layer, ``tokens`` and ``image_proj``; see :class:`~gouache.adapters.ip_adapter.LoadedIPAdapter`)
    at ``scales`` (one :func:`layer_scales` value per adapter); the UNet reads the images as
    ``added_cond_kwargs["image_embeds"]`` (:meth:`gouache.prompts.conditioning.Conditioning.added_kwargs`).
    Everything is put back on leaving, errors included."""
    if len(adapters) != len(scales):
        raise InvalidArgument(f"{len(adapters)} IP-Adapters but {len(scales)} scales; give one scale per adapter")
    if getattr(unet, "encoder_hid_proj", None) is not None:
        raise InvalidArgument("this UNet already projects its encoder states (encoder_hid_proj, e.g. Kolors or an "
                              "IP-Adapter still installed); gouache runs IP-Adapters on SD 1.x, 2.x and SDXL UNets")
    layers = cross_attention_layers(unet)
    per_adapter = [layer_scales(unet, s) for s in scales]
    saved = [(attn, attn.processor) for _, attn in layers]
    hid_type = unet.config.encoder_hid_dim_type
    try:
        for i, (name, attn) in enumerate(layers):
            attn.set_processor(_processor(attn, i, adapters, [s[name] for s in per_adapter]))
        unet.encoder_hid_proj = projection_layers(adapters)
        unet.config.encoder_hid_dim_type = "ip_image_proj"
        yield
    finally:
        unet.encoder_hid_proj = None
        unet.config.encoder_hid_dim_type = hid_type
        for attn, proc in saved:
            attn.set_processor(proc)
