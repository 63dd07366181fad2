"""Motion adapters in the layouts people have, with tiny random weights, sized for gouache-tiny's UNet.

gouache-tiny's UNet has blocks of (64, 128, 128) channels and one layer per block; an adapter for
it has one motion module per down block and two per up block, as diffusers' ``MotionAdapter`` builds
them. The same weights are written as a diffusers folder, an original AnimateDiff ``.safetensors``
and a ``.ckpt`` (``mm_sd_v15_v2``'s key names, ``temporal_transformer`` and ``pos_encoder.pe``
included), and a motion LoRA in the original naming (``processor.to_q_lora.down``).
"""

from __future__ import annotations

from pathlib import Path

import torch

TINY_BLOCKS = (64, 128, 128)


def tiny_adapter(seed: int = 0, blocks=TINY_BLOCKS, layers: int = 1, scale: float = 0.05):
    """A random diffusers ``MotionAdapter`` (its output projections non-zero, so the frames interact)."""
    from diffusers import MotionAdapter

    torch.manual_seed(seed)
    adapter = MotionAdapter(block_out_channels=blocks, motion_layers_per_block=layers, motion_max_seq_length=32)
    for p in adapter.parameters():
        p.data.normal_(0, scale)
    return adapter.eval()


def write_layouts(folder: Path, seed: int = 0) -> dict[str, Path]:
    """``{"diffusers": folder, "safetensors": file, "ckpt": file}``: one adapter in three layouts."""
    from safetensors.torch import save_file

    from gouache.adapters.motion import original_state_dict

    adapter = tiny_adapter(seed)
    folder.mkdir(parents=True, exist_ok=True)
    adapter.save_pretrained(folder / "tiny-mm")
    original = original_state_dict(adapter)
    save_file(original, folder / "mm_tiny.safetensors")
    torch.save(original, folder / "mm_tiny_ckpt.ckpt")
    return {"diffusers": folder / "tiny-mm", "safetensors": folder / "mm_tiny.safetensors",
            "ckpt": folder / "mm_tiny_ckpt.ckpt"}


def write_motion_lora(path: Path, adapter, rank: int = 2, seed: int = 1) -> Path:
    """A motion LoRA on every motion module's attention projections, original AnimateDiff naming."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, module in adapter.named_modules():
        if name.endswith((".attn1.to_q", ".attn1.to_v", ".attn2.to_k")):
            block, proj = name.rsplit(".", 1)
            head, rest = block.split(".transformer_blocks.", 1)
            original = f"{head}.temporal_transformer.transformer_blocks.{rest}"
            original = original.replace(".attn1", ".attention_blocks.0").replace(".attn2", ".attention_blocks.1")
            out_f, in_f = module.weight.shape
            sd[f"{original}.processor.{proj}_lora.down.weight"] = torch.randn(rank, in_f, generator=g) * 0.3
            sd[f"{original}.processor.{proj}_lora.up.weight"] = torch.randn(out_f, rank, generator=g) * 0.3
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, path)
    return path
