"""The architecture configs shipped as JSON: complete, loadable, and the published model sizes."""

import json

import pytest

from gouache.models.detect import ARCHITECTURES

SHIPPED = [a for a in ARCHITECTURES.values() if a.config_folder is not None]

# Parameter counts of the published models, as diffusers / transformers build them.
PUBLISHED = {
    ("sd15", "unet"): 859_520_964,
    ("sd15-inpaint", "unet"): 859_520_964 + 5 * 320 * 9,  # 5 more input channels into a 3×3 conv
    ("sd2-v", "unet"): 865_910_724,
    ("sd2", "unet"): 865_910_724,
    ("sdxl", "unet"): 2_567_463_684,
    ("sd15", "vae"): 83_653_863,
    ("sdxl", "vae"): 83_653_863,
    ("sd15", "text_encoder"): 123_060_480,  # CLIP ViT-L/14 text tower
    ("sd2-v", "text_encoder"): 340_387_840,  # OpenCLIP ViT-H/14, 23 of 24 layers
    ("sdxl", "text_encoder"): 123_060_480,
    ("sdxl", "text_encoder_2"): 694_659_840,  # OpenCLIP bigG/14 with projection
}


def build_empty(arch_name, component):
    from accelerate import init_empty_weights

    folder = ARCHITECTURES[arch_name].config_path() / component
    with init_empty_weights():
        if component in ("unet", "vae"):
            import diffusers

            config = json.loads((folder / "config.json").read_text())
            return getattr(diffusers, config["_class_name"]).from_config(config)
        import transformers

        config = transformers.CLIPTextConfig.from_pretrained(folder, local_files_only=True)
        return getattr(transformers, config.architectures[0])(config)


@pytest.mark.parametrize("arch", SHIPPED, ids=lambda a: a.name)
def test_config_folder_is_complete(arch):
    folder = arch.config_path()
    index = json.loads((folder / "model_index.json").read_text())
    for name, spec in index.items():
        if not isinstance(spec, list) or spec[0] is None:
            continue
        if name.startswith("tokenizer"):
            assert not (folder / name).exists(), "tokenizers are built at run time, not shipped"
            assert name in arch.pads
        elif name == "scheduler":
            assert (folder / "scheduler" / "scheduler_config.json").is_file()
        else:
            assert (folder / name / "config.json").is_file(), name


@pytest.mark.parametrize("arch_name, component", sorted(PUBLISHED))
def test_configs_build_the_published_sizes(arch_name, component):
    module = build_empty(arch_name, component)
    assert sum(p.numel() for p in module.parameters()) == PUBLISHED[(arch_name, component)]


@pytest.mark.parametrize(
    "arch_name, facts",
    [
        (
            "sd2-v",
            {
                "scheduler": {"prediction_type": "v_prediction"},
                "unet": {"use_linear_projection": True, "cross_attention_dim": 1024},
            },
        ),
        ("sd2", {"scheduler": {"prediction_type": "epsilon"}}),
        (
            "sdxl",
            {
                "unet": {"addition_embed_type": "text_time", "cross_attention_dim": 2048},
                "vae": {"scaling_factor": 0.13025},
            },
        ),
        ("sdxl-refiner", {"unet": {"cross_attention_dim": 1280, "projection_class_embeddings_input_dim": 2560}}),
        ("sd15-inpaint", {"unet": {"in_channels": 9}, "vae": {"scaling_factor": 0.18215}}),
    ],
)
def test_config_facts(arch_name, facts):
    folder = ARCHITECTURES[arch_name].config_path()
    for component, expected in facts.items():
        name = "scheduler_config.json" if component == "scheduler" else "config.json"
        config = json.loads((folder / component / name).read_text())
        assert {k: config[k] for k in expected} == expected
