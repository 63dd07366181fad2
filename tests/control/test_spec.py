"""ControlSpec validation and the infotext round trip."""

import re
import time

import pytest
from PIL import Image

from gouache.control.spec import ControlSpec, _model_name, controls_from_params
from gouache.errors import InvalidArgument, UnknownName
from gouache.metadata.infotext import format_infotext, parse_infotext
from gouache.pipelines.request import GenerationRequest, Img2ImgRequest, request_from_infotext

IMAGE = Image.new("RGB", (64, 64))


@pytest.mark.parametrize("spec, error, match", [
    (ControlSpec("cany", IMAGE), UnknownName, "unknown preprocessor 'cany'"),
    (ControlSpec("canny", None), InvalidArgument, r"`controls\[0\]` has no image"),
    (ControlSpec("canny", "no/such.png"), InvalidArgument, "control image 'no/such.png' does not exist"),
    (ControlSpec("canny", 3), InvalidArgument, "must be a PIL image or a path"),
    (ControlSpec("canny", IMAGE, weight=3), InvalidArgument, "weight` must be a number from 0 to 2"),
    (ControlSpec("canny", IMAGE, start=0.6, end=0.5), InvalidArgument, "0 <= start < end <= 1"),
    (ControlSpec("canny", IMAGE, model="no-such-net"), UnknownName, "unknown ControlNet 'no-such-net'"),
    (ControlSpec("canny", IMAGE, model=3), InvalidArgument, "must be a ControlNet name"),
])
def test_validation_names_the_unit_and_the_fix(spec, error, match):
    with pytest.raises(error, match=match):
        GenerationRequest("x", controls=[spec]).validate()


def test_img2img_units_may_leave_the_image_out():
    Img2ImgRequest("x", init_image=IMAGE, controls=[ControlSpec("canny")]).validate()
    with pytest.raises(InvalidArgument, match="must be a gouache.control.spec.ControlSpec"):
        GenerationRequest("x", controls=["canny"]).validate()


def test_infotext_round_trip(tmp_path):
    path = tmp_path / "edges, one.png"  # a comma: the path is quoted inside the quoted unit
    IMAGE.save(path)
    specs = [ControlSpec("canny", str(path), "gouache-tiny-edges", 0.8, 0.1, 0.9),
             ControlSpec("softedge", IMAGE, "other [1234abcd]", 1.0, 0.0, 0.5)]
    params = {"Steps": 6, "Seed": 2, "Size": "64x64", "Model": "gouache-tiny",
              **{f"ControlNet {k}": s.infotext(f"{s.model} [0a1b2c3d]") for k, s in enumerate(specs)}}
    text = format_infotext("a red circle", "", params)
    assert 'ControlNet 0: "Module: canny, Model: gouache-tiny-edges [0a1b2c3d], Weight: 0.8, ' \
           'Resize Mode: Crop and Resize, Guidance Start: 0.1, Guidance End: 0.9, Image: ' in text
    req = request_from_infotext(text)
    first, second = req.controls
    assert (first.preprocessor, first.model, first.weight, first.start, first.end) == ("canny", "gouache-tiny-edges", 0.8, 0.1, 0.9)
    assert first.image == str(path.resolve())
    assert (second.preprocessor, second.image, second.end) == ("softedge", None, 0.5)  # pixels leave no path


def test_a1111_extension_infotext_reads():
    line = ('Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, ControlNet 0: "Module: canny, '
            'Model: control_v11p_sd15_canny [d14c016b], Weight: 1, Resize Mode: Crop and Resize, Low Vram: False, '
            'Processor Res: 512, Threshold A: 100, Threshold B: 200, Guidance Start: 0, Guidance End: 1, '
            'Pixel Perfect: False, Control Mode: Balanced"')
    [spec] = controls_from_params(parse_infotext("a cat\n" + line).params)
    assert (spec.preprocessor, spec.model, spec.weight, spec.start, spec.end) == ("canny", "control_v11p_sd15_canny", 1, 0, 1)


def unit(value: str) -> dict[str, str]:
    return {"ControlNet 0": value}


@pytest.mark.parametrize(
    "params, message",
    [
        (unit("Module: canny, Weight: high"), "Weight must be a number like 1.0, got 'high'"),
        (unit("Module: canny, Weight: inf"), "Weight must be a number like 1.0, got 'inf'"),
        (unit("Module: canny, Guidance Start: nan"), "Guidance Start must be a number like 1.0, got 'nan'"),
        (unit("Module: canny, Guidance End: 1e999"), "Guidance End must be a number like 1.0, got '1e999'"),
        (unit("Module: canny, Weight: " + "9" * 100_000), "(100000 characters)"),  # 1e99999: inf
        (unit("Module: canny, Image: " + "x" * 300), "Image is no file name or path"),  # longer than a name can be
        (unit("Module: canny, Model: " + "m/" * 5000), "Model is no file name or path"),
        ({"ControlNet " + "9" * 5000: "Module: canny"}, "is not a ControlNet unit number"),  # int() refuses it
    ],
)
def test_malformed_units_are_invalid_arguments(params, message):
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        controls_from_params(params)


@pytest.mark.parametrize(
    "title, name",
    [
        ("control_v11p_sd15_canny [d14c016b]", "control_v11p_sd15_canny"),
        ("two  words \t [0123456789]", "two  words"),
        ("[d14c016b]", ""),
        ("no hash [d14c016]", "no hash [d14c016]"),  # 7 digits: not a hash
        ("a [d14c016b]\n", "a"),  # `$` matches before a final newline
        ("two\nlines [d14c016b]", "two\nlines [d14c016b]"),
        ("None", None),
    ],
)
def test_model_titles_read_as_a1111_title_does(title, name):
    assert _model_name(title) == name


def test_a_megabyte_unit_is_read_in_linear_time():
    value = "Module: canny, Model: a" + " " * 1_000_000 + "b, Weight: 0.5"
    start = time.process_time()
    with pytest.raises(InvalidArgument, match="Model is no file name or path"):
        controls_from_params(unit(value))
    assert time.process_time() - start < 1.0
