"""Architecture detection from single-file key layouts (only keys and a shape matter; no tensors)."""

import pytest

from gouache.errors import InvalidArgument, ModelLoadError
from gouache.models.detect import ARCHITECTURES, CONV_IN, detect_architecture

UNET = [CONV_IN, "model.diffusion_model.out.2.weight", "first_stage_model.decoder.conv_out.weight"]
SD1_TEXT = ["cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"]
SD2_TEXT = [
    "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight",
    "cond_stage_model.model.ln_final.weight",
]
XL_TEXT = [
    "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight",
    "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight",
    "conditioner.embedders.1.model.text_projection",
]
REFINER_TEXT = [
    "conditioner.embedders.0.model.transformer.resblocks.0.attn.in_proj_weight",
    "conditioner.embedders.0.model.text_projection",
]


def conv_in(width, channels):
    return {CONV_IN: (width, channels, 3, 3)}


@pytest.mark.parametrize(
    "text, shapes, prediction_type, expected",
    [
        (SD1_TEXT, conv_in(320, 4), None, "sd15"),
        (SD1_TEXT, conv_in(320, 9), None, "sd15-inpaint"),
        (SD1_TEXT, conv_in(64, 4), None, "gouache-tiny"),
        (SD2_TEXT, conv_in(320, 4), None, "sd2-v"),  # the keys cannot tell: 768-v is the default
        (SD2_TEXT, conv_in(320, 4), "v_prediction", "sd2-v"),
        (SD2_TEXT, conv_in(320, 4), "epsilon", "sd2"),
        (SD2_TEXT, conv_in(320, 9), None, "sd2-inpaint"),
        (XL_TEXT, conv_in(320, 4), None, "sdxl"),
        (XL_TEXT, conv_in(320, 9), None, "sdxl-inpaint"),
        (REFINER_TEXT, conv_in(384, 4), None, "sdxl-refiner"),
    ],
)
def test_detects_each_architecture(text, shapes, prediction_type, expected):
    assert detect_architecture(UNET + text, shapes, prediction_type=prediction_type) == expected
    assert expected in ARCHITECTURES


@pytest.mark.parametrize(
    "keys, shapes, message",
    [
        ([], {}, "empty state dict"),
        (["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"], {}, "looks like a LoRA"),
        (["encoder.down.0.block.0.conv1.weight", "decoder.up.0.block.0.conv1.weight"], {}, "VAE on its own"),
        (["down_blocks.0.resnets.0.conv1.weight", "conv_in.weight"], {}, "diffusers-format UNet"),
        (UNET + SD1_TEXT, conv_in(192, 4), "192 channels wide"),
        (UNET + SD1_TEXT, conv_in(64, 9), "gouache knows 320 (SD 1.x) and 64 (gouache-tiny)"),
        (UNET + SD1_TEXT, conv_in(320, 8), "8 input channels"),
        (UNET, conv_in(320, 4), "no known text encoder"),
        (UNET + REFINER_TEXT, conv_in(384, 9), "refiner"),
    ],
)
def test_unknown_layouts_say_what_was_found(keys, shapes, message):
    with pytest.raises(ModelLoadError) as err:
        detect_architecture(keys, shapes)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_layout_lists_prefixes():
    keys = [f"foo.bar.{i}" for i in range(3)] + ["baz.qux.0"]
    with pytest.raises(ModelLoadError) as err:
        detect_architecture(keys, {})
    assert "4 tensors: foo.bar.* (3), baz.qux.* (1)" in str(err.value)


def test_rejects_unknown_prediction_type():
    with pytest.raises(InvalidArgument, match="`prediction_type` must be one of epsilon, v_prediction"):
        detect_architecture(UNET + SD2_TEXT, conv_in(320, 4), prediction_type="v")
