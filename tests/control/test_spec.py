"""ControlSpec validation and the infotext round trip."""

import pytest
from PIL import Image

from gouache.control.spec import ControlSpec, controls_from_params
from gouache.errors import InvalidArgument, UnknownName
from gouache.metadata.infotext import format_infotext, parse_infotext
from gouache.pipelines.request import GenerationRequest, Img2ImgRequest, request_from_infotext

IMAGE = Image.new("RGB", (64, 64))


@pytest.mark.parametrize("spec, error, match", [
    (ControlSpec("cany", IMAGE), UnknownName, "unknown preprocessor 'cany'"),
    (ControlSpec("canny", None), InvalidArgument, r"`controls\[0\]` has no image"),
    (ControlSpec("canny", "no/such.png"), InvalidArgument, "control image 'no/such.png' does not exist"),
    (ControlSpec("canny", 3), InvalidArgument, "must be a PIL image or a path"),
    (ControlSpec("canny", IMAGE, weight=3), InvalidArgument, "weight must be between 0 and 2"),
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
