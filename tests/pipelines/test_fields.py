"""The field table: every request field's infotext key, reader, options and API names in one place."""

import dataclasses

import pytest
import torch

from gouache.errors import InvalidArgument
from gouache.metadata.infotext import format_infotext, parse_infotext
from gouache.pipelines import fields
from gouache.pipelines.fields import FIELDS, GROUPS, infotext_params, read_request, run_difference
from gouache.pipelines.request import GenerationRequest, InpaintRequest


def test_every_attribute_and_option_names_something_real():
    for f in FIELDS:
        names = {x.name for x in dataclasses.fields(f.mode)}
        assert f.attr is None or f.attr in names, f
        for flag in f.flags:
            assert flag.group in GROUPS
            assert flag.dest or f.attr in {x.name for x in dataclasses.fields(GROUPS[flag.group])}, flag
    keys = [f.key for f in FIELDS if f.key]
    assert len(keys) == len(set(keys))
    for group in GROUPS:
        flags = [flag.name for _, flag in fields.flags_of(group)]
        assert len(flags) == len(set(flags)), group


def test_an_unknown_option_group_names_the_known_ones():
    with pytest.raises(InvalidArgument, match="unknown option group 'hires fix'; one of request, hires"):
        fields.flags_of("hires fix")


def test_dtype_and_attention_close_the_line_before_version(tiny_model):
    req = GenerationRequest("a cat", seed=1, width=64, height=64, cfg_scale=5.0, deepcache_interval=2)
    params = infotext_params(req, tiny_model, extra={**req.infotext_extra(), "ControlNet 0": "Module: canny"})
    assert list(params)[-4:] == ["ControlNet 0", "Dtype", "Attention", "Version"]
    assert (params["Dtype"], params["Attention"]) == ("fp32", "gouache")


@pytest.mark.parametrize("speed,dtype,written", [
    ({"attention": "sdpa"}, torch.bfloat16, ("bf16", "sdpa")),
    ({"attention": "sliced"}, torch.float16, ("fp16", "sliced")),
    (None, torch.float32, ("fp32", None)),  # set up outside gouache.speed: its attention is not said
])
def test_dtype_and_attention_as_written(tiny_model, speed, dtype, written):
    model = dataclasses.replace(tiny_model, speed=speed, dtype=dtype)
    params = infotext_params(GenerationRequest("x", width=64, height=64), model)
    assert (params["Dtype"], params["Attention"]) == written


def test_dtype_and_attention_do_not_change_the_request():
    text = "a cat\nSteps: 3, Sampler: Euler, Seed: 2, Size: 64x64"
    assert read_request(text + ", Dtype: bf16, Attention: sdpa") == read_request(text)


def test_run_difference_names_what_differs_and_nothing_else(tiny_model):
    def line(extra: str):
        return parse_infotext("a\nSteps: 3, Seed: 2, Size: 64x64" + extra)

    assert run_difference(line(""), tiny_model) is None  # an older image: nothing recorded
    assert run_difference(line(", Dtype: fp32, Attention: gouache"), tiny_model) is None
    assert run_difference(line(", Dtype: bf16, Attention: gouache"), tiny_model) == "dtype bf16; this run uses fp32"
    assert run_difference(line(", Attention: sdpa, Dtype: fp16"), tiny_model) == \
        "dtype fp16 and attention sdpa; this run uses fp32 and gouache"


def test_written_keys_read_back_to_the_request(tiny_model):
    req = GenerationRequest("a cat", "a dog", steps=7, cfg_scale=4.0, sampler="Euler a", scheduler="Karras", seed=3,
                            width=64, height=72, clip_skip=2, emphasis="No norm", subseed=9, subseed_strength=0.5,
                            tome_ratio=0.5, deepcache_interval=2, cfg_truncation=0.25, enable_hr=True, hr_scale=1.5,
                            hr_upscaler="Lanczos", hr_second_pass_steps=3, denoising_strength=0.4)
    params = infotext_params(req, tiny_model, extra=req.infotext_extra())
    again = read_request(format_infotext(req.prompt, req.negative_prompt, params))
    # the recorded prompt is the one the image was made with: it reads back as written, not as a template
    assert again == dataclasses.replace(req, model="gouache-tiny", literal_prompts=True)


def test_mode_keys_belong_to_their_request_class():
    from PIL import Image

    image, mask = Image.new("RGB", (64, 64)), Image.new("L", (64, 64), 255)
    assert "Mask blur" not in GenerationRequest("x").infotext_extra()
    inpaint = InpaintRequest("x", init_image=image, mask=mask).infotext_extra()
    assert list(inpaint) == ["Denoising strength", "Mask blur", "Inpaint area", "Masked area padding", "Masked content"]
    assert inpaint["Masked area padding"] is None  # "Whole picture": A1111 leaves the padding out


def test_a_plain_request_has_no_mode_keys():
    assert fields.extra_params(GenerationRequest("x")) == {}
