"""LoRA files made by the tests, in every layout gouache reads, from known down/up matrices."""

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

RANK = 4
# gouache-tiny's module names (transformers 5's CLIPTextModel has no `.text_model`)
UNET = ["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",  # cross-attention: reads the 64-wide text
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0",
        "up_blocks.2.attentions.1.transformer_blocks.0.ff.net.0.proj",
        "mid_block.attentions.0.transformer_blocks.0.attn2.to_v",
        "down_blocks.0.attentions.0.proj_in"]  # a 1x1 conv
CONV = ["down_blocks.0.resnets.0.conv1", "up_blocks.1.resnets.1.conv1"]  # 3x3: LyCORIS LoCon
TE = ["encoder.layers.0.self_attn.q_proj", "encoder.layers.1.self_attn.out_proj", "encoder.layers.1.mlp.fc1"]


KOHYA_PREFIX = {"unet": "lora_unet_", "text_encoder": "lora_te_text_model_", "text_encoder_2": "lora_te2_text_model_"}


def layer(model, component, name):
    module = getattr(model.pipeline, component).get_submodule(name)
    return getattr(module, "base_layer", module)  # once loaded, peft wraps the layer


def random_lora(model, seed, modules):
    """{(component, module): (down, up)} of rank RANK for the given (component, module) pairs."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for component, name in modules:
        w = layer(model, component, name).weight
        kernel = tuple(w.shape[2:])
        out[component, name] = (torch.randn(RANK, w.shape[1], *kernel, generator=g) * 0.3,
                                torch.randn(w.shape[0], RANK, *(1,) * len(kernel), generator=g) * 0.3)
    return out


def delta(down, up):
    """kohya's merge of one module's update: up @ down, for linear, 1x1 and 3x3 conv layers."""
    if down.ndim == 2:
        return up @ down
    if down.shape[2:] == (1, 1):
        return (up.flatten(1) @ down.flatten(1))[:, :, None, None]
    return torch.nn.functional.conv2d(down.transpose(0, 1), up).transpose(0, 1)


def _legacy_key(name):
    block, proj = name.split(".transformer_blocks.0.")[0], name.split(".")[-1]
    attn = name.split(".")[-2] if proj != "0" else name.split(".")[-3]
    proj = "to_out" if proj == "0" else proj
    return f"{block}.transformer_blocks.0.{attn}.processor.{proj}_lora"


def layout(kind, lora, alpha=None):
    """The state dict of ``lora`` as the tool behind ``kind`` writes it."""
    sd = {}
    for (component, name), (down, up) in lora.items():
        if kind == "kohya":
            key = KOHYA_PREFIX[component] + name.removeprefix("text_model.").replace(".", "_")
            sd[f"{key}.lora_down.weight"], sd[f"{key}.lora_up.weight"] = down, up
            if alpha is not None:
                sd[f"{key}.alpha"] = torch.tensor(alpha, dtype=torch.float16)  # kohya saves alpha in the save dtype
        elif kind == "diffusers":
            key = f"unet.{name}.lora" if component == "unet" else f"text_encoder.text_model.{name}.lora_linear_layer"
            sd[f"{key}.down.weight"], sd[f"{key}.up.weight"] = down, up
        elif kind == "peft":
            sd[f"{component}.{name}.lora_A.weight"], sd[f"{component}.{name}.lora_B.weight"] = down, up
        elif kind == "peft-folder":
            sd[f"base_model.model.{name}.lora_A.weight"], sd[f"base_model.model.{name}.lora_B.weight"] = down, up
        elif kind == "attn-procs":
            sd[f"{_legacy_key(name)}.down.weight"], sd[f"{_legacy_key(name)}.up.weight"] = down, up
    return sd


def write_lora(folder, name, kind, lora, alpha=None):
    """Save ``lora`` in layout ``kind`` as ``folder/name.safetensors`` (a PEFT folder: ``folder/name/``)."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "peft-folder":
        (folder / name).mkdir(exist_ok=True)
        (folder / name / "adapter_config.json").write_text(json.dumps({"r": RANK, "lora_alpha": alpha or RANK}))
        path = folder / name / "adapter_model.safetensors"
    else:
        path = folder / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in layout(kind, lora, alpha).items()}, str(path))
    return path


@pytest.fixture(scope="session")
def loras(gouache_home):
    """The helpers above, and the lora folder, for the LoRA tests (importlib mode: no conftest imports)."""
    return SimpleNamespace(RANK=RANK, UNET=UNET, CONV=CONV, TE=TE, layer=layer, random_lora=random_lora, delta=delta,
                           layout=layout, write=write_lora, folder=gouache_home / "lora")


@pytest.fixture(scope="session")
def tiny_sd15():
    """A random-weight model with SD 1.5's UNet layout (four levels, two layers each: its 16
    cross-attention layers, h94's ``ip_adapter.1`` to ``ip_adapter.31``) at a tiny width."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from gouache.models.clip_tokenizer import load_clip_tokenizer
    from gouache.models.tiny_architecture import SCHEDULER_CONFIG, TinyConfig, build_vae
    from gouache.pipelines.model import LoadedModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=32, attention_head_dim=8,
        norm_num_groups=32).eval()
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, max_position_embeddings=77)).eval()
    from diffusers import DDIMScheduler

    pipe = StableDiffusionPipeline(vae=build_vae(TinyConfig()).eval(), text_encoder=text, tokenizer=load_clip_tokenizer(),
                                   unet=unet, scheduler=DDIMScheduler.from_config(SCHEDULER_CONFIG), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    return LoadedModel(pipe, "tiny-sd15", "tiny-sd15", "0000000000")
