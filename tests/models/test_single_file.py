"""Single-file checkpoints: a tiny model in the original LDM layout loads offline, runs, and errors are clear."""

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from gouache.errors import InvalidArgument, ModelLoadError
from gouache.models.single_file import load_single_file, read_state_dict
from gouache.models.tiny_architecture import TinyConfig

COMPONENTS = ("vae", "text_encoder", "unet")


def assert_same_weights(pipe, components, cast=None):
    for name, module in zip(COMPONENTS, components, strict=True):
        expected, loaded = module.state_dict(), getattr(pipe, name).state_dict()
        assert expected.keys() == loaded.keys(), name
        for key, value in expected.items():
            value = value if cast is None else value.to(cast).to(loaded[key].dtype)
            assert torch.equal(value, loaded[key]), f"{name}.{key}"


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_tiny_single_file_loads_with_its_weights_and_makes_an_image(
    tiny_files, tiny_components, suffix, no_shipped_weights
):
    pipe = load_single_file(tiny_files[suffix])

    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert_same_weights(pipe, tiny_components)  # so the LDM → diffusers key mapping is right
    assert pipe.vae.config.scaling_factor == 1.0  # no shipped meta file: neutral scale
    assert pipe.tokenizer("a red circle").input_ids == [49406, 320, 736, 7117, 49407]
    assert pipe.tokenizer.pad_token == "<|endoftext|>"
    image = pipe(
        "a red circle",
        num_inference_steps=2,
        height=64,
        width=64,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert image.shape == (1, 64, 64, 3)
    assert np.isfinite(image).all()


def test_half_precision_file_loads_in_the_dtype_asked_for(tiny_files, tiny_components, tmp_path, no_shipped_weights):
    half = {k: v.half() if v.is_floating_point() else v for k, v in read_state_dict(tiny_files[".safetensors"]).items()}
    save_file(half, str(tmp_path / "tiny-fp16.safetensors"))

    pipe = load_single_file(tmp_path / "tiny-fp16.safetensors", dtype=torch.float32)

    assert {p.dtype for p in pipe.unet.parameters()} == {torch.float32}
    assert_same_weights(pipe, tiny_components, cast=torch.float16)


def test_caller_overrides_prediction_type_and_scale(tiny_files, no_shipped_weights):
    pipe = load_single_file(tiny_files[".safetensors"], prediction_type="v_prediction", scaling_factor=0.5)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.vae.config.scaling_factor == 0.5


def test_tiny_scale_comes_from_the_shipped_meta_file(tiny_files, no_shipped_weights):
    _, meta = no_shipped_weights
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"name": "gouache-tiny", "config": TinyConfig().to_dict(), "scaling_factor": 0.77}))
    assert load_single_file(tiny_files[".safetensors"]).vae.config.scaling_factor == 0.77


def test_nested_state_dict_is_unwrapped(tiny_files):
    state = read_state_dict(tiny_files[".ckpt"])  # saved as {"state_dict": ..., "global_step": 7}
    assert "model.diffusion_model.input_blocks.0.0.weight" in state
    assert "global_step" not in state


class RunsCode:
    """Unpickling this would create the marker file: weights_only loading must refuse it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def small_safetensors(path):
    save_file({"a": torch.randn(64, 64)}, str(path))
    return path.read_bytes()


def small_ckpt(path):
    torch.save({"a": torch.randn(64, 64)}, path)
    return path.read_bytes()


BAD_FILES = {
    "random bytes": ("corrupt.safetensors", lambda d: os.urandom(4096), "truncated or corrupt"),
    "cut in half": (
        "half.safetensors",
        lambda d: (b := small_safetensors(d / "x.safetensors"))[: len(b) // 2],
        "truncated or corrupt",
    ),
    "empty": ("empty.safetensors", lambda d: b"", "the file is empty"),
    "empty ckpt": ("empty.ckpt", lambda d: b"", "the file is empty"),
    "ckpt cut in half": ("half.ckpt", lambda d: (b := small_ckpt(d / "x.ckpt"))[: len(b) // 2], "truncated or corrupt"),
    "random ckpt": ("corrupt.ckpt", lambda d: os.urandom(4096), "not a readable PyTorch checkpoint"),
    "wrong extension": (
        "model.txt",
        lambda d: small_safetensors(d / "x.safetensors"),
        "unsupported checkpoint extension '.txt'",
    ),
    "not a checkpoint": (
        "lora.safetensors",
        lambda d: small_safetensors(d / "x.safetensors"),
        "no Stable Diffusion UNet",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_raise_one_clear_line(tmp_path, case):
    name, content, message = BAD_FILES[case]
    path = tmp_path / name
    path.write_bytes(content(tmp_path))
    with pytest.raises(ModelLoadError) as err:
        load_single_file(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_pickled_code_is_refused_not_run(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"state_dict": {"w": torch.zeros(2), "payload": RunsCode(marker)}}, tmp_path / "evil.ckpt")
    with pytest.raises(ModelLoadError, match="refused to load: the file pickles a Python object") as err:
        read_state_dict(tmp_path / "evil.ckpt")
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_missing_file_and_bad_arguments(tmp_path, tiny_files):
    with pytest.raises(ModelLoadError, match="no such file"):
        read_state_dict(tmp_path / "absent.safetensors")
    with pytest.raises(InvalidArgument, match="`dtype` must be a torch.dtype"):
        load_single_file(tiny_files[".safetensors"], dtype="fp16")
    with pytest.raises(InvalidArgument, match="`prediction_type`"):
        load_single_file(tiny_files[".safetensors"], prediction_type="x0")


def test_checkpoint_missing_a_component_names_it(tiny_files, tmp_path, no_shipped_weights):
    state = read_state_dict(tiny_files[".safetensors"])
    save_file(
        {k: v for k, v in state.items() if not k.startswith("first_stage_model.")}, str(tmp_path / "novae.safetensors")
    )
    with pytest.raises(ModelLoadError) as err:
        load_single_file(tmp_path / "novae.safetensors")
    assert "novae.safetensors" in str(err.value) and "AutoencoderKL" in str(err.value)


# --- SD 2.x and SDXL layouts, at tiny size -------------------------------------------------------
# The shipped configs are full size; to exercise the same assembly (OpenCLIP conversion, two text
# encoders, text-time embeddings, the pipeline flags in model_index.json) we pair each architecture's
# shipped model_index.json and scheduler with tiny component configs.


def tiny_clip(hidden, act, projection=None):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act=act,
        projection_dim=projection or hidden,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def tiny_unet(cross, text_time=None):
    from diffusers import UNet2DConditionModel

    blocks = dict(
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")
    )
    if text_time:  # SDXL: the first block has no attention; pooled text + size/crop ids embedded
        blocks = dict(
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=text_time,
            transformer_layers_per_block=(1, 2),
        )
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        cross_attention_dim=cross,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        **blocks,
    )


def tiny_layout(arch_name):
    """(modules by component name, single-file state dict) for a tiny model of ``arch_name``'s layout."""
    from ldm_layout import open_clip_to_ldm, schedule_buffers, text_encoder_to_ldm, unet_to_ldm, vae_to_ldm

    from gouache.models.tiny_architecture import build_vae

    torch.manual_seed(1)
    if arch_name == "sd2-v":
        modules = {"text_encoder": tiny_clip(32, "gelu"), "unet": tiny_unet(32)}
        text = open_clip_to_ldm(modules["text_encoder"], "cond_stage_model.model.")
        text["cond_stage_model.model.text_projection"] = torch.randn(32, 32)  # in SD 2.x files, unused
    elif arch_name == "sdxl":
        modules = {
            "text_encoder": tiny_clip(32, "quick_gelu"),
            "text_encoder_2": tiny_clip(64, "gelu", 32),
            "unet": tiny_unet(32 + 64, text_time=32 + 6 * 8),
        }
        text = {
            **text_encoder_to_ldm(modules["text_encoder"], "conditioner.embedders.0.transformer."),
            **open_clip_to_ldm(modules["text_encoder_2"], "conditioner.embedders.1.model."),
        }
    else:  # sdxl-refiner: OpenCLIP bigG only, aesthetic score instead of target size
        modules = {"text_encoder_2": tiny_clip(64, "gelu", 32), "unet": tiny_unet(64, text_time=32 + 5 * 8)}
        text = open_clip_to_ldm(modules["text_encoder_2"], "conditioner.embedders.0.model.")
    modules["vae"] = build_vae(TinyConfig())
    for module in modules.values():
        module.eval()
    state = {**unet_to_ldm(modules["unet"]), **vae_to_ldm(modules["vae"]), **text, **schedule_buffers()}
    return modules, {k: v.detach().contiguous() for k, v in state.items()}


def write_config_folder(arch, modules, folder):
    import shutil

    shutil.copy(arch.config_path() / "model_index.json", folder / "model_index.json")
    shutil.copytree(arch.config_path() / "scheduler", folder / "scheduler")
    for name, module in modules.items():
        if name.startswith("text_encoder"):
            module.config.save_pretrained(folder / name)
        else:
            module.save_config(folder / name)
    return folder


@pytest.mark.parametrize(
    "arch_name, pipeline_class, pads",
    [
        ("sd2-v", "StableDiffusionPipeline", {"tokenizer": "!"}),
        ("sdxl", "StableDiffusionXLPipeline", {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"}),
        ("sdxl-refiner", "StableDiffusionXLImg2ImgPipeline", {"tokenizer_2": "!"}),
    ],
)
def test_sd2_and_sdxl_layouts_assemble_and_run(tmp_path, arch_name, pipeline_class, pads):
    from PIL import Image

    from gouache.models.detect import ARCHITECTURES, detect_architecture
    from gouache.models.single_file import build_pipeline

    modules, state = tiny_layout(arch_name)
    assert detect_architecture(state.keys(), {k: v.shape for k, v in state.items()}) == arch_name
    arch = ARCHITECTURES[arch_name]

    pipe = build_pipeline(state, arch, write_config_folder(arch, modules, tmp_path), torch.float32)

    assert type(pipe).__name__ == pipeline_class
    for name, module in modules.items():
        expected, loaded = module.state_dict(), getattr(pipe, name).state_dict()
        assert expected.keys() == loaded.keys(), name
        assert all(torch.equal(v, loaded[k]) for k, v in expected.items()), name
    assert {name: getattr(pipe, name).pad_token for name in pads} == pads
    extra = {"image": Image.new("RGB", (64, 64)), "strength": 1.0} if arch_name == "sdxl-refiner" else {}
    image = pipe("a red circle", num_inference_steps=2, height=64, width=64, output_type="np", **extra).images
    assert image.shape == (1, 64, 64, 3)
