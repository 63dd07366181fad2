"""IP-Adapter units: the option syntax, pairing images with adapters, the infotext and its checks."""

import pytest
from PIL import Image

from gouache.adapters.ip_spec import IPAdapterSpec, pair_images, parse_adapter, specs_from_params
from gouache.errors import InvalidArgument


@pytest.mark.parametrize("text,expected", [
    ("gouache-tiny-ip-adapter", ("gouache-tiny-ip-adapter", 1.0)),
    ("gouache-tiny-ip-adapter:0.6", ("gouache-tiny-ip-adapter", 0.6)),
    ("C:\\ip\\a.safetensors:0.5", ("C:\\ip\\a.safetensors", 0.5)),
    ("models/ip-adapter_sd15:style", ("models/ip-adapter_sd15:style", 1.0)),
])
def test_adapter_option(text, expected):
    assert parse_adapter(text) == expected


def test_one_adapter_takes_every_image_several_take_one_each():
    assert [s.images for s in pair_images([("a", 1.0)], ["x", "y"], True)] == [["x", "y"]]
    specs = pair_images([("a", 0.5), ("b", 1.0)], ["x", "y"])
    assert [(s.model, s.images, s.scale, s.style) for s in specs] == [("a", ["x"], 0.5, False), ("b", ["y"], 1.0, False)]
    with pytest.raises(InvalidArgument, match="2 --ip-adapter and 3 --ip-image: give one image per adapter"):
        pair_images([("a", 1.0), ("b", 1.0)], ["x", "y", "z"])


def test_the_infotext_records_model_weight_style_and_file_images(tmp_path):
    path = tmp_path / "shape.png"
    Image.new("RGB", (8, 8)).save(path)
    spec = IPAdapterSpec("tiny-ip", [str(path), Image.new("RGB", (8, 8))], 0.75, style=True)
    text = spec.infotext("tiny-ip [1a2b3c4d]")
    assert text == f"Model: tiny-ip [1a2b3c4d], Weight: 0.75, Style: True, Image 1: {path.resolve()}"
    from gouache.metadata.infotext import format_infotext, parse_infotext

    params = parse_infotext(format_infotext("p", "", {"Steps": 2, "Sampler": "Euler", "Seed": 1, "IP-Adapter 0": text})).params
    (back,) = specs_from_params(params)
    assert (back.model, back.images, back.scale, back.style) == ("tiny-ip", [str(path.resolve())], 0.75, True)


@pytest.mark.parametrize("spec,words", [
    (IPAdapterSpec("tiny-ip", []), "has no image prompt; pass --ip-image IMAGE"),
    (IPAdapterSpec("tiny-ip", ["/nowhere/x.png"]), "does not exist"),
    (IPAdapterSpec("tiny-ip", [Image.new("RGB", (8, 8))], scale=3), "`ip_adapters[0].scale` must be a number from 0 to 2"),
    (IPAdapterSpec("tiny-ip", [42]), "must be a PIL image or a path, got int"),
    (IPAdapterSpec(42, [Image.new("RGB", (8, 8))]), "must be an IP-Adapter name or path"),
    (IPAdapterSpec("no-such-adapter", [Image.new("RGB", (8, 8))]), "unknown IP-Adapter 'no-such-adapter'"),
])
def test_bad_units_name_the_field_and_the_fix(tiny_ip_adapter, spec, words):
    with pytest.raises(InvalidArgument if "unknown" not in words else KeyError, match=None) as err:
        spec.validate(0)
    assert words in str(err.value)


def test_a_file_that_is_not_an_image_is_refused_before_anything_loads(tmp_path, tiny_ip_adapter):
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    with pytest.raises(InvalidArgument, match="is not an image"):
        IPAdapterSpec("tiny-ip", [str(bad)]).validate()


def test_malformed_infotext_units_name_the_unit():
    with pytest.raises(InvalidArgument, match="`IP-Adapter 0` in the image's parameters is malformed: Weight"):
        specs_from_params({"IP-Adapter 0": "Model: x, Weight: heavy"})
    with pytest.raises(InvalidArgument, match="names no Model"):
        specs_from_params({"IP-Adapter 1": "Weight: 1"})
