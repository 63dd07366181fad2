"""Test helper: write diffusers-format SD 1.x components in the original single-file (LDM) key layout.

Single-file checkpoints use the CompVis latent-diffusion module names. The mapping, block by block:

UNet (``model.diffusion_model.``), with ``L = layers_per_block``:
  ``conv_in`` ↔ ``input_blocks.0.0``; ``time_embedding.linear_1/2`` ↔ ``time_embed.0/2``;
  down block ``i``, layer ``j`` ↔ ``input_blocks.{1 + i(L+1) + j}`` (``.0`` resnet, ``.1`` attention);
  its downsampler ↔ ``input_blocks.{(i+1)(L+1)}.0.op``;
  mid resnet 0 / attention / resnet 1 ↔ ``middle_block.0/1/2``;
  up block ``i``, layer ``j`` (``L+1`` layers) ↔ ``output_blocks.{i(L+1) + j}`` (``.0`` resnet,
  ``.1`` attention), its upsampler after the last layer's resnet and attention (``.1`` or ``.2``);
  ``conv_norm_out`` / ``conv_out`` ↔ ``out.0`` / ``out.2``.
  Resnets: ``norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut`` ↔
  ``in_layers.0, in_layers.2, emb_layers.1, out_layers.0, out_layers.3, skip_connection``.
  Transformer blocks keep their names.
VAE (``first_stage_model.``): ``down_blocks.i.resnets.j`` ↔ ``down.i.block.j``, downsamplers ↔
  ``down.i.downsample``; the decoder's up blocks are numbered in reverse (``up_blocks.i`` ↔
  ``up.{n-1-i}``); ``mid_block.resnets.0/1`` ↔ ``mid.block_1/2``, ``mid_block.attentions.0`` ↔
  ``mid.attn_1`` with ``group_norm, to_q, to_k, to_v, to_out.0`` ↔ ``norm, q, k, v, proj_out``
  stored as 1×1 convolutions; ``conv_shortcut`` ↔ ``nin_shortcut``; ``conv_norm_out`` ↔ ``norm_out``.
  SDXL's ``add_embedding.linear_1/2`` ↔ ``label_emb.0.0/2``.
Text encoder (``cond_stage_model.transformer.``): transformers' ``CLIPTextModel`` keys under ``text_model.``.
OpenCLIP text towers (SD 2.x ``cond_stage_model.model.``, SDXL ``conditioner.embedders.1.model.``):
  ``token_embedding.weight``, ``positional_embedding`` (a bare tensor), ``ln_final``,
  ``transformer.resblocks.N.{ln_1, attn.in_proj_weight/bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}``
  where ``in_proj`` is q, k, v stacked along the output dimension, and ``text_projection`` applied as
  ``x @ P`` (the transpose of transformers' ``text_projection.weight``).
"""

from __future__ import annotations

import torch

RESNET = {
    "norm1.": "in_layers.0.",
    "conv1.": "in_layers.2.",
    "time_emb_proj.": "emb_layers.1.",
    "norm2.": "out_layers.0.",
    "conv2.": "out_layers.3.",
    "conv_shortcut.": "skip_connection.",
}
VAE_RESNET = {"conv_shortcut.": "nin_shortcut."}
VAE_ATTENTION = {"group_norm.": "norm.", "to_q.": "q.", "to_k.": "k.", "to_v.": "v.", "to_out.0.": "proj_out."}


def _unet_prefixes(config) -> dict[str, tuple[str, dict]]:
    """diffusers prefix → (LDM prefix, renames inside that module)."""
    per = config["layers_per_block"] + 1
    n = len(config["block_out_channels"])
    table = {
        "conv_in.": ("input_blocks.0.0.", {}),
        "time_embedding.linear_1.": ("time_embed.0.", {}),
        "time_embedding.linear_2.": ("time_embed.2.", {}),
        "mid_block.resnets.0.": ("middle_block.0.", RESNET),
        "mid_block.attentions.0.": ("middle_block.1.", {}),
        "mid_block.resnets.1.": ("middle_block.2.", RESNET),
        "conv_norm_out.": ("out.0.", {}),
        "conv_out.": ("out.2.", {}),
        "add_embedding.linear_1.": ("label_emb.0.0.", {}),
        "add_embedding.linear_2.": ("label_emb.0.2.", {}),
    }
    for i in range(n):
        for j in range(per - 1):
            table[f"down_blocks.{i}.resnets.{j}."] = (f"input_blocks.{1 + i * per + j}.0.", RESNET)
            table[f"down_blocks.{i}.attentions.{j}."] = (f"input_blocks.{1 + i * per + j}.1.", {})
        table[f"down_blocks.{i}.downsamplers.0.conv."] = (f"input_blocks.{(i + 1) * per}.0.op.", {})
        has_attention = config["up_block_types"][i].startswith("CrossAttn")
        for j in range(per):
            table[f"up_blocks.{i}.resnets.{j}."] = (f"output_blocks.{i * per + j}.0.", RESNET)
            table[f"up_blocks.{i}.attentions.{j}."] = (f"output_blocks.{i * per + j}.1.", {})
        upsampler = 2 if has_attention else 1
        table[f"up_blocks.{i}.upsamplers.0.conv."] = (f"output_blocks.{i * per + per - 1}.{upsampler}.conv.", {})
    return table


def _vae_prefixes(config) -> dict[str, tuple[str, dict]]:
    n = len(config["block_out_channels"])
    table = {}
    for part in ("encoder", "decoder"):
        table.update(
            {
                f"{part}.conv_in.": (f"{part}.conv_in.", {}),
                f"{part}.conv_out.": (f"{part}.conv_out.", {}),
                f"{part}.conv_norm_out.": (f"{part}.norm_out.", {}),
                f"{part}.mid_block.resnets.0.": (f"{part}.mid.block_1.", VAE_RESNET),
                f"{part}.mid_block.resnets.1.": (f"{part}.mid.block_2.", VAE_RESNET),
                f"{part}.mid_block.attentions.0.": (f"{part}.mid.attn_1.", VAE_ATTENTION),
            }
        )
    for i in range(n):
        for j in range(config["layers_per_block"] + 1):
            table[f"encoder.down_blocks.{i}.resnets.{j}."] = (f"encoder.down.{i}.block.{j}.", VAE_RESNET)
            table[f"decoder.up_blocks.{i}.resnets.{j}."] = (f"decoder.up.{n - 1 - i}.block.{j}.", VAE_RESNET)
        table[f"encoder.down_blocks.{i}.downsamplers.0.conv."] = (f"encoder.down.{i}.downsample.conv.", {})
        table[f"decoder.up_blocks.{i}.upsamplers.0.conv."] = (f"decoder.up.{n - 1 - i}.upsample.conv.", {})
    table["quant_conv."] = ("quant_conv.", {})
    table["post_quant_conv."] = ("post_quant_conv.", {})
    return table


def _rename(state: dict, table: dict[str, tuple[str, dict]], out_prefix: str) -> dict:
    out = {}
    for key, value in state.items():
        prefix = max((p for p in table if key.startswith(p)), key=len, default=None)
        assert prefix is not None, f"no LDM name for {key}"
        ldm_prefix, inner = table[prefix]
        rest = key[len(prefix) :]
        for old, new in inner.items():
            if rest.startswith(old):
                rest = new + rest[len(old) :]
                break
        out[out_prefix + ldm_prefix + rest] = value
    return out


def unet_to_ldm(unet) -> dict:
    return _rename(unet.state_dict(), _unet_prefixes(unet.config), "model.diffusion_model.")


def vae_to_ldm(vae) -> dict:
    out = _rename(vae.state_dict(), _vae_prefixes(vae.config), "first_stage_model.")
    for key, value in out.items():  # LDM's VAE attention projections are 1×1 convolutions
        if ".mid.attn_1." in key and key.endswith(".weight") and value.ndim == 2:
            out[key] = value[:, :, None, None]
    return out


def text_encoder_to_ldm(text_encoder, prefix: str = "cond_stage_model.transformer.") -> dict:
    out = {}
    for key, value in text_encoder.state_dict().items():
        key = key if key.startswith("text_model.") else "text_model." + key
        out[prefix + key] = value
    return out


OPEN_CLIP_LAYER = {
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "self_attn.out_proj.": "attn.out_proj.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
}


def open_clip_to_ldm(text_encoder, prefix: str) -> dict:
    """A transformers CLIP text model in OpenCLIP's key layout, under ``prefix``."""
    state = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    out = {
        "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
        "positional_embedding": state.pop("embeddings.position_embedding.weight"),
        "ln_final.weight": state.pop("final_layer_norm.weight"),
        "ln_final.bias": state.pop("final_layer_norm.bias"),
    }
    if "text_projection.weight" in state:
        out["text_projection"] = state.pop("text_projection.weight").T.contiguous()
    for i in range(text_encoder.config.num_hidden_layers):
        layer, block = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            qkv = [state.pop(f"{layer}self_attn.{p}_proj.{kind}") for p in "qkv"]
            out[f"{block}attn.in_proj_{kind}"] = torch.cat(qkv, 0)
        for key in [k for k in state if k.startswith(layer)]:
            rest = key[len(layer) :]
            old = next(o for o in OPEN_CLIP_LAYER if rest.startswith(o))
            out[block + OPEN_CLIP_LAYER[old] + rest[len(old) :]] = state.pop(key)
    assert not state, f"no OpenCLIP name for {sorted(state)}"
    return {prefix + k: v for k, v in out.items()}


def schedule_buffers() -> dict:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return {"betas": betas.float(), "alphas_cumprod": torch.cumprod(1 - betas, 0).float()}


def to_ldm_checkpoint(vae, text_encoder, unet) -> dict[str, torch.Tensor]:
    """A whole SD 1.x-layout single-file state dict, with the schedule buffers real files carry."""
    state = {**unet_to_ldm(unet), **vae_to_ldm(vae), **text_encoder_to_ldm(text_encoder), **schedule_buffers()}
    return {k: v.detach().contiguous() for k, v in state.items()}
