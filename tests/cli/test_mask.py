"""``gouache mask`` and ``gouache remove-background`` with the built-in gouache-tiny-clipseg: masks a
user can check by eye (IoU with the drawn shape), files never overwritten, one-line errors."""

import numpy as np
import pytest
from PIL import Image

from gouache.tiny.masks import coverage, iou
from gouache.tiny.shapes import ShapeSpec, draw

SPEC = ShapeSpec("red", "circle", "blue", 30, 34, 36)


@pytest.fixture(scope="module")
def shape_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "circle.png"
    draw(SPEC).save(path)
    return path


@pytest.fixture(scope="module")
def truth():
    return coverage(draw(SPEC), SPEC)


@pytest.mark.parametrize("words, region", [("the circle", "shape"), ("the background", "background")])
def test_mask_covers_what_the_words_name(run, shape_png, truth, tmp_path, words, region):
    code, out, err = run("mask", shape_png, words, "-o", tmp_path / "m.png")
    assert code == 0, err
    assert out.strip() == str(tmp_path / "m.png")
    mask = Image.open(tmp_path / "m.png")
    assert mask.mode == "L" and mask.size == (64, 64)
    want = truth if region == "shape" else 1 - truth
    assert iou(np.asarray(mask) / 255.0, want) >= 0.85


def test_invert_and_dilate(run, shape_png, tmp_path):
    assert run("mask", shape_png, "the circle", "-o", tmp_path / "a.png")[0] == 0
    assert run("mask", shape_png, "the circle", "-o", tmp_path / "b.png", "--invert", "--dilate", "2")[0] == 0
    a, b = (np.asarray(Image.open(tmp_path / n)) > 127 for n in ("a.png", "b.png"))
    assert not (a & b).all() and (a | b).all()  # the inverse, grown over the edge
    assert (a & b).sum() > 0


def test_remove_background_leaves_the_shape_opaque(run, shape_png, truth, tmp_path):
    code, _, err = run("remove-background", shape_png, "-o", tmp_path / "cut.png")
    assert code == 0, err
    cut = Image.open(tmp_path / "cut.png")
    assert cut.mode == "RGBA" and cut.size == (64, 64)
    rgba = np.asarray(cut)
    assert iou(rgba[..., 3] / 255.0, truth) >= 0.85
    assert np.array_equal(rgba[..., :3], np.asarray(draw(SPEC)))  # the colours are the image's own


def test_words_that_match_nothing_are_one_line(run, shape_png, tmp_path):
    code, _, err = run("mask", shape_png, "the green background", "-o", tmp_path / "m.png")
    assert code == 1 and err.startswith("gouache: error: nothing in the image matches 'the green background'")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "m.png").exists()


def test_an_existing_file_is_kept_unless_overwrite(run, shape_png, tmp_path):
    (tmp_path / "m.png").write_bytes(b"mine")
    code, _, err = run("mask", shape_png, "the circle", "-o", tmp_path / "m.png")
    assert code == 1 and "exists" in err and (tmp_path / "m.png").read_bytes() == b"mine"
    assert run("mask", shape_png, "the circle", "-o", tmp_path / "m.png", "--overwrite")[0] == 0
    assert Image.open(tmp_path / "m.png").size == (64, 64)


@pytest.mark.parametrize("argv, message", [
    (("mask", "{missing}", "the circle", "-o", "{out}"), "IMAGE"),
    (("mask", "{img}", "the circle", "-o", "{dir}/m.jpg"), "--out must name a .png file"),
    (("mask", "{img}", "the circle", "-o", "{out}", "--segmenter", "nope"), "unknown segmenter 'nope'"),
    (("mask", "{img}", "the circle", "-o", "{out}", "--threshold", "2"), "--threshold must be a number"),
    (("mask", "{img}", "  ", "-o", "{out}"), "must name something"),
    (("remove-background", "{notimage}", "-o", "{out}"), "IMAGE"),
])
def test_bad_input_is_one_line(run, shape_png, tmp_path, argv, message):
    (tmp_path / "notes.txt").write_text("not an image")
    names = {"missing": tmp_path / "nope.png", "out": tmp_path / "m.png", "img": shape_png, "dir": tmp_path,
             "notimage": tmp_path / "notes.txt"}
    code, _, err = run(*(a.format(**names) for a in argv))
    assert code == 1, err
    assert err.startswith("gouache: error:") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.png").exists()
