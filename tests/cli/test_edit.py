"""``gouache edit background``: a new background from words, the subject kept (gouache-tiny + the built-in CLIPSeg)."""

import numpy as np
import pytest
from PIL import Image

from gouache.metadata.png import read_infotext
from gouache.tiny.judge import read_image
from gouache.tiny.masks import coverage
from gouache.tiny.shapes import ShapeSpec, draw

SPEC = ShapeSpec("red", "square", "blue", 32, 30, 30)


@pytest.fixture(scope="module")
def shape_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "square.png"
    draw(SPEC).save(path)
    return path


def test_the_background_changes_and_the_subject_stays(run, shape_png, tmp_path):
    code, out, err = run("edit", "background", shape_png, "a red square on a green background", "--seed", "3",
                         "--out", tmp_path)
    assert code == 0, err
    path = out.split()[-1]
    image = Image.open(path).convert("RGB")
    r = read_image(image)
    assert (r.background, r.colour, r.shape) == ("green", "red", "square")
    inside = coverage(draw(SPEC), SPEC) >= 0.99
    diff = np.abs(np.asarray(image, np.int16) - np.asarray(draw(SPEC), np.int16)).max(-1)
    assert (diff[inside] <= 12).mean() >= 0.95  # the square is not repainted
    info = read_infotext(path)
    assert "Mask prompt: the background" in info and "Segmenter: gouache-tiny-clipseg" in info
    assert "Masked content: latent noise" in info and "Denoising strength: 1.0" in info
    assert 'ControlNet 0: "Module: canny, Model: gouache-tiny-edges' in info  # --keep-edges' unit, on the image


def test_a_held_out_subject_is_not_painted_again(run, tmp_path):
    """A green square (a held-out pair): without the edges gouache-tiny paints a second green blob in
    the new background at this seed; the default canny unit on the image keeps just the one."""
    from gouache.tiny.masks import evaluation_items

    item = list(evaluation_items(True, "background", 23))[22]
    assert (item.spec.colour, item.spec.shape, item.spec.background) == ("green", "square", "purple")
    path = tmp_path / "in.png"
    item.image.save(path)
    code, out, err = run("edit", "background", path, "a green square on a red background", "--seed", "23",
                         "--out", tmp_path / "out")
    assert code == 0, err
    r = read_image(Image.open(out.split()[-1]).convert("RGB"))
    assert (r.background, r.colour, r.shape) == ("red", "green", "square")


def test_keep_edges_zero_or_a_control_leaves_the_request_alone(shape_png):
    from gouache.cli.edit import request_keeping_edges
    from gouache.control.spec import ControlSpec
    from gouache.pipelines.request import InpaintRequest

    class Model:
        name = "gouache-tiny"

    req = InpaintRequest("a red square on a green background", init_image=Image.open(shape_png), mask_prompt="the background")
    assert request_keeping_edges(Model, req, 0.8).keep_edges == 0.8
    assert request_keeping_edges(Model, req, 0).keep_edges == 0
    mine = ControlSpec("canny", Image.open(shape_png), weight=0.3)
    assert request_keeping_edges(Model, InpaintRequest(**{**req.__dict__, "controls": [mine]}), 1).keep_edges == 0
    Model.name, notes = "sd15-somewhere", []
    assert request_keeping_edges(Model, req, 1, notes.append).keep_edges == 0 and "no default canny ControlNet" in notes[0]


def test_inpaint_takes_words_instead_of_a_mask(run, shape_png, tmp_path):
    code, out, err = run("inpaint", shape_png, "a red square on a yellow background", "--mask-prompt", "the background",
                         "--fill", "noise", "--strength", "1", "--seed", "2", "--out", tmp_path)
    assert code == 0, err
    assert read_image(Image.open(out.split()[-1]).convert("RGB")).background == "yellow"


@pytest.mark.parametrize("argv, message", [
    (("inpaint", "{img}", "x"), "give a MASK image or --mask-prompt"),
    (("inpaint", "{img}", "{img}", "x", "--mask-prompt", "the square"), "give a MASK image or --mask-prompt"),
    (("edit", "background", "{img}", "x", "--segmenter", "nope"), "unknown segmenter 'nope'"),
    (("edit", "background", "{img}", "x", "--mask-prompt", "the purple background"), "nothing in the image matches"),
    (("edit", "background", "{img}", "x", "--keep-edges", "3"), "--keep-edges must be a weight from 0 (off) to 2, got 3"),
])
def test_bad_input_is_one_line(run, shape_png, tmp_path, argv, message):
    code, _, err = run(*(a.format(img=shape_png) for a in argv), "--out", tmp_path)
    assert code in (1, 2) and message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.png"))
