"""Motion adapters: every layout loads offline and runs exactly as diffusers' UNetMotionModel; wrong UNets refused."""

import pytest
import torch

from gouache.adapters.motion import (FrameCount, check_fits, find_motion, load_motion, parse_motion)
from gouache.errors import InvalidArgument, ModelLoadError, UnknownName
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("motion_layouts", Path(__file__).parents[1] / "motion_layouts.py")
_layouts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_layouts)  # tests/motion_layouts.py (the tests' folder is no package)
tiny_adapter, write_layouts, write_motion_lora = _layouts.tiny_adapter, _layouts.write_layouts, _layouts.write_motion_lora


@pytest.fixture(scope="module")
def layouts(gouache_home):
    return write_layouts(gouache_home / "motion")


@pytest.fixture(scope="module")
def reference_unet():
    """gouache-tiny's UNet with diffusers' own attention (UNetMotionModel copies its processors)."""
    from gouache.pipelines.model import load_model
    from gouache.speed import SpeedSettings

    return load_model(speed=SpeedSettings.reference()).unet


def _inputs(frames=5, clips=2):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(clips * frames, 4, 8, 8, generator=g)
    text = torch.randn(clips, 77, 64, generator=g).repeat_interleave(frames, 0)
    return x, torch.tensor(400), text


@pytest.mark.parametrize("layout,name", [("diffusers", "tiny-mm"), ("safetensors", "mm_tiny"), ("ckpt", "mm_tiny_ckpt")])
def test_each_layout_runs_as_unet_motion_model(layouts, reference_unet, layout, name):
    from diffusers import UNetMotionModel

    motion = load_motion(name)
    assert motion.layout == ("diffusers" if layout == "diffusers" else "original")
    frames = 5
    x, t, text = _inputs(frames)
    reference = UNetMotionModel.from_unet2d(reference_unet, tiny_adapter()).eval()
    with torch.no_grad():
        want = reference(x.view(2, frames, 4, 8, 8).permute(0, 2, 1, 3, 4), t, encoder_hidden_states=text).sample
        want = want.permute(0, 2, 1, 3, 4).reshape(2 * frames, 4, 8, 8)
        plain = reference_unet(x, t, encoder_hidden_states=text).sample
        with motion.installed(reference_unet, FrameCount(frames)):
            got = reference_unet(x, t, encoder_hidden_states=text).sample
        after = reference_unet(x, t, encoder_hidden_states=text).sample
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(plain, want, atol=1e-3)  # the modules do something
    assert torch.equal(after, plain)  # and are gone after the block


def test_adapter_for_another_unet_is_one_clear_line(tmp_path, tiny_model):
    from gouache.adapters.motion import LoadedMotion

    sd15 = LoadedMotion(tiny_adapter(blocks=(320, 640, 1280, 1280), layers=2, scale=0.0), "mm_sd_v15_v2", "0" * 12,
                        "original")
    with pytest.raises(InvalidArgument) as e:
        check_fits(sd15, tiny_model.unet)
    message = str(e.value)
    assert "\n" not in message and "mm_sd_v15_v2" in message and "(320, 640, 1280, 1280)" in message
    assert "(64, 128, 128)" in message


def test_motion_lora_in_original_naming_changes_the_modules(layouts, tmp_path):
    base = load_motion("tiny-mm")
    write_motion_lora(layouts["diffusers"].parent / "lora" / "zoom-in.safetensors", base.adapter)
    zoomed = load_motion("tiny-mm", loras=[("zoom-in", 0.8)])
    off = load_motion("tiny-mm", loras=[("zoom-in", 0.0)])
    key = "down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q.weight"
    assert not torch.equal(zoomed.adapter.state_dict()[key], base.adapter.state_dict()[key])
    assert torch.equal(off.adapter.state_dict()[key], base.adapter.state_dict()[key])
    assert "zoom-in" in zoomed.loras
    with pytest.raises((UnknownName, ModelLoadError)):  # motion/lora holds LoRAs, not adapters
        load_motion("lora/zoom-in")


def test_unknown_name_lists_the_adapters(layouts):
    with pytest.raises(UnknownName) as e:
        find_motion("tiny-m", paths=False)
    assert "did you mean 'tiny-mm'" in str(e.value) and "mm_tiny" in str(e.value)


def test_a_file_that_is_no_motion_module_is_one_error(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(ModelLoadError, match="not an AnimateDiff motion module"):
        load_motion(str(tmp_path / "other.safetensors"))
    (tmp_path / "broken.ckpt").write_bytes(b"not a pickle")
    with pytest.raises(ModelLoadError, match="cannot be read"):
        load_motion(str(tmp_path / "broken.ckpt"))


@pytest.mark.parametrize("text,expected", [("mm", ("mm", 1.0)), ("mm:0", ("mm", 0.0)), ("a/b:c.ckpt:0.5", ("a/b:c.ckpt", 0.5))])
def test_parse_motion(text, expected):
    assert parse_motion(text) == expected


def test_parse_motion_rejects_a_scale_out_of_range():
    with pytest.raises(InvalidArgument, match="from 0 to 4"):
        parse_motion("mm:9")


def test_an_adapter_folder_declares_its_generation_settings(tmp_path):
    import json

    folder = tmp_path / "declared"
    tiny_adapter().save_pretrained(folder)
    assert load_motion(str(folder)).generation_defaults == {}
    (folder / "gouache.json").write_text(json.dumps({"generation_defaults": {"cfg_truncation": 1}}))
    assert load_motion(str(folder)).generation_defaults == {"cfg_truncation": 1.0}
    for bad in ({"generation_defaults": {"steps": 30}}, {"generation_defaults": {"cfg_truncation": 2}}):
        (folder / "gouache.json").write_text(json.dumps(bad))
        with pytest.raises(ModelLoadError) as e:
            load_motion(str(folder))
        assert "cannot read the motion adapter's settings" in str(e.value) and "\n" not in str(e.value)
    (folder / "gouache.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="gouache.json: cannot read"):
        load_motion(str(folder))


def test_the_built_in_adapter_asks_for_guidance_on_every_step():
    """gouache-tiny-motion is measured best with CFG on every step (docs/motion-training.md), while
    gouache-tiny's images guide half of them."""
    assert load_motion("gouache-tiny-motion").generation_defaults == {"cfg_truncation": 1.0}
