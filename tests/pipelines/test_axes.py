"""The axes of an X/Y/Z plot: A1111's value syntax, the labels, what each axis changes, and the
one-line errors for what cannot be plotted."""

import time

import pytest

from gouache.errors import GouacheError
from gouache.pipelines.axes import A1111_IMG2IMG, A1111_TXT2IMG, a1111_axis, find_axis, parse_axis
from gouache.pipelines.request import GenerationRequest


@pytest.mark.parametrize("text, values", [
    ("Steps: 1-5", [1, 2, 3, 4, 5]),
    ("Steps: 1-10 (+2)", [1, 3, 5, 7, 9]),
    ("Steps: 10-1 (-3)", [10, 7, 4, 1]),
    ("Steps: 5-1", [5, 4, 3, 2, 1]),
    ("Steps: 1-10 [4]", [1, 4, 7, 10]),
    ("Steps: 1-3, 8, 10-12", [1, 2, 3, 8, 10, 11, 12]),
    ("Seed: -1, 5", [-1, 5]),
    ("Seed: -5--3", [-5, -4, -3]),
    ("CFG scale: 3-9 (+2)", [3.0, 5.0, 7.0, 9.0]),
    ("CFG scale: 3.5-7.5 (+1.5)", [3.5, 5.0, 6.5]),
    ("CFG scale: 1-2 [3]", [1.0, 1.5, 2.0]),
    ("cfg SCALE: 7", [7.0]),
    ("CFG Scale: 4.5, 6", [4.5, 6.0]),
    ("Sampler: Euler, DPM++ 2M", ["Euler", "DPM++ 2M"]),
    ('Prompt S/R: red, "green, bright", blue', ["red", "green, bright", "blue"]),
    ("Prompt order: a, b", [("a", "b"), ("b", "a")]),
    ("Size: 64x64, 64x96", ["64x64", "64x96"]),
])
def test_values_follow_a1111s_syntax(text, values):
    assert parse_axis(text)[1] == values


@pytest.mark.parametrize("text, message", [
    ("Foo: 1, 2", "unknown axis 'Foo'; one of: Nothing, Steps, CFG scale, Sampler"),
    ("Eta: 0, 1", "the axis 'Eta' is A1111's, which gouache does not have"),
    ("Steps 1-5", 'is not "LABEL: VALUES"'),
    ("Steps:", "Steps: the axis has no values"),
    ("Steps: , ,", "Steps: the axis has no values"),
    ("Steps: 1-", "Steps: '1-' is not a whole number or a range like 1-5"),
    ("Steps: 1-10 (+2", "is not a whole number or a range"),
    ("Steps: 1-10 (-2)", "never reaches its end"),
    ("Steps: 1-10 (0)", "never reaches its end"),
    ("Steps: 1.5-3", "is a range of whole numbers"),
    ("Steps: 1-10 [0]", "asks for 0 values"),
    ("Steps: 1-1000000000", "makes 1000000000 values, over the limit of 400"),
    ("CFG scale: nan", "is not a number"),
    ("Prompt order: a, b, c, d, e, f", "6 items make 720 orders; give at most 5"),
])
def test_bad_axes_are_one_clear_line(text, message):
    with pytest.raises(GouacheError) as err:
        parse_axis(text)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a1111_labels_and_indices_name_the_same_axes():
    assert find_axis("Var. seed").label == "Variation seed"
    assert find_axis("denoising").label == "Denoising strength"
    assert find_axis("checkpoint name") is find_axis("Model")
    # script_args name axes by index into A1111's txt2img list (img2img's lacks the hires ones)
    assert [a1111_axis(i).label for i in (0, 1, 4, 6, 7, 9, 17, 41)] == [
        "Nothing", "Seed", "Steps", "CFG scale", "Prompt S/R", "Sampler", "Schedule type", "Size"]
    assert a1111_axis(9, img2img=True).label == "Sampler" and a1111_axis(5, img2img=True).label == "CFG scale"
    assert a1111_axis("CFG Scale").label == "CFG scale"
    assert len(A1111_TXT2IMG) == 42 and len(A1111_IMG2IMG) == 41
    with pytest.raises(GouacheError, match="not an index of A1111's txt2img axis list"):
        a1111_axis(99)
    with pytest.raises(GouacheError, match="gouache does not have"):
        a1111_axis(23)  # Eta


BASE = GenerationRequest("a red circle on a blue background", negative_prompt="red noise", seed=1, steps=3)


@pytest.mark.parametrize("text, index, changed", [
    ("Sampler: Euler, Heun", 1, {"sampler": "Heun"}),
    ("Schedule type: Automatic, Karras", 1, {"scheduler": "Karras"}),
    ("Seed: 7, 8", 0, {"seed": 7}),
    ("Var. strength: 0, 0.5", 1, {"subseed_strength": 0.5}),
    ("Clip skip: 1, 2", 1, {"clip_skip": 2}),
    ("Hires upscale: 1.5", 0, {"hr_scale": 1.5, "enable_hr": True}),
    ("Size: 64x96", 0, {"width": 64, "height": 96}),
    ("Prompt S/R: red, green", 1, {"prompt": "a green circle on a blue background", "negative_prompt": "green noise"}),
    ("Prompt order: circle, blue", 1, {"prompt": "a red blue on a circle background"}),
    ("Checkpoint name: other-model", 0, {"model": "other-model"}),
])
def test_each_axis_changes_one_thing(text, index, changed):
    axis, values = parse_axis(text)
    cell = axis.apply(BASE, values[index], values)
    assert {name: getattr(cell, name) for name in changed} == changed
    untouched = {k: v for k, v in vars(BASE).items() if k not in changed}
    assert {k: getattr(cell, k) for k in untouched} == untouched


def test_lora_and_controlnet_weights():
    from PIL import Image

    from gouache.control.spec import ControlSpec

    axis, values = parse_axis("LoRA weight: 0.25")
    cell = axis.apply(GenerationRequest("a cat <lora:fur:1> <lora:ink:0.5:1>"), values[0], values)
    assert cell.prompt == "a cat <lora:fur:0.25> <lora:ink:0.25>"
    with pytest.raises(GouacheError, match="no <lora:NAME:WEIGHT> tag"):
        axis.apply(BASE, values[0], values)
    axis, values = parse_axis("ControlNet weight: 0.5")
    unit = ControlSpec("canny", Image.new("RGB", (64, 64)))
    assert axis.apply(GenerationRequest("a", controls=[unit]), 0.5, values).controls[0].weight == 0.5
    with pytest.raises(GouacheError, match="no ControlNet unit"):
        axis.apply(BASE, 0.5, values)


@pytest.mark.parametrize("text, message", [
    ("Prompt S/R: square, circle", "the first value 'square' is not in the prompt"),
    ("Hires steps: 5, 10", "the hires fix is off"),
    ("Denoising: 0.5", "changes only img2img and the hires fix"),
    ("Size: 64 by 64", "is not WIDTHxHEIGHT"),
])
def test_an_axis_that_cannot_apply_says_why(text, message):
    axis, values = parse_axis(text)
    with pytest.raises(GouacheError, match=message):
        axis.apply(BASE, values[0], values)


def test_the_range_scanner_is_linear():
    """Long hostile values are rejected at once, never by a backtracking search."""
    for text in ("1" + " " * 9_000 + "-", "-" * 9_000, "1-" + "2" * 9_000, "1- " + "(" * 9_000):
        started = time.perf_counter()
        with pytest.raises(GouacheError):
            parse_axis("Steps: " + text)
        assert time.perf_counter() - started < 0.5


def test_cell_labels_read_as_a1111s():
    assert find_axis("CFG scale").cell_label(7.0) == "CFG scale: 7.0"
    assert find_axis("Sampler").cell_label("Euler") == "Euler"
    assert find_axis("Prompt S/R").cell_label("green") == "green"
    assert find_axis("Prompt order").cell_label(("b", "a")) == "b, a"
    assert find_axis("Checkpoint name").cell_label("models/sd15.safetensors") == "sd15.safetensors"
