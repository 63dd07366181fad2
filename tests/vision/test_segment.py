"""Masks from words: segmenters found and loaded offline, probabilities at the image's size, and the
mask a user gets from them (threshold, invert, dilate, blur, and a clear error when nothing matches)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gouache.errors import InvalidArgument, ModelLoadError, UnknownName
from gouache.vision.segment import (MaskOptions, Segmenter, alpha_matte, find_segmenter, load_segmenter, mask_image,
                                    remove_background, words_mask)


def _square(size: int = 40) -> np.ndarray:
    """Probabilities: 0.9 on a centred square of half the side, 0.1 elsewhere."""
    p = np.full((size, size), 0.1, np.float32)
    p[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 0.9
    return p


def test_words_mask_is_white_where_the_probabilities_pass_the_threshold():
    mask = words_mask(_square(), "the square")
    assert mask.mode == "L" and mask.size == (40, 40)
    a = np.asarray(mask)
    assert set(np.unique(a)) == {0, 255}
    assert (a == 255).sum() == 20 * 20 and a[20, 20] == 255 and a[0, 0] == 0


def test_invert_dilate_and_blur_change_the_mask_as_named():
    inverted = np.asarray(words_mask(_square(), "the square", MaskOptions(invert=True)))
    assert (inverted == 255).sum() == 40 * 40 - 20 * 20
    grown = np.asarray(words_mask(_square(), "the square", MaskOptions(dilate=3)))
    assert (grown == 255).sum() > 20 * 20 and grown[10 - 3, 20] == 255 and grown[10 - 4, 20] == 0
    soft = np.asarray(words_mask(_square(), "the square", MaskOptions(blur=3)))
    assert 0 < soft[10, 20] < 255  # the edge is soft, the inside stays white
    assert soft[20, 20] == 255


def test_a_mask_that_matches_nothing_says_so_and_how_close_it_came():
    with pytest.raises(InvalidArgument, match=r"nothing in the image matches 'the cat' \(best score 0\.90, threshold 0\.95\)"):
        words_mask(_square(), "the cat", MaskOptions(threshold=0.95))
    with pytest.raises(InvalidArgument, match="its inverse is empty"):
        words_mask(np.ones((8, 8), np.float32), "everything", MaskOptions(invert=True))


@pytest.mark.parametrize("options, field", [(MaskOptions(threshold=1.5), "threshold"), (MaskOptions(dilate=-1), "dilate"),
                                            (MaskOptions(blur=1000), "blur")])
def test_mask_options_are_checked(options, field):
    with pytest.raises(InvalidArgument, match=f"`{field}`"):
        options.validate()


def test_alpha_matte_keeps_the_object_and_its_soft_edge():
    background = np.array([[1.0, 0.5, 0.0]], np.float32)
    assert np.asarray(alpha_matte(background)).tolist() == [[0, 128, 255]]


def test_unknown_names_and_folders_that_are_not_segmenters_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("GOUACHE_HOME", str(tmp_path))
    with pytest.raises(UnknownName, match="unknown segmenter 'nope'"):
        find_segmenter("nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="not a segmenter folder"):
        find_segmenter(str(tmp_path / "empty"))
    unet = tmp_path / "unet"
    unet.mkdir()
    (unet / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(ModelLoadError, match="neither a CLIPSeg"):
        load_segmenter(str(unet))


def test_rembg_names_are_checked_and_never_downloaded(tmp_path, monkeypatch):
    with pytest.raises(InvalidArgument, match="rembg:MODEL"):
        load_segmenter("rembg:../u2net")
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match="rembg"):  # no package, or no model file: never a download
        load_segmenter("rembg:u2net")


def test_a_clipseg_folder_in_cidas_layout_loads_offline_by_name(tiny_clipseg, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "segmenters").mkdir(parents=True)
    (home / "segmenters" / "clipseg").symlink_to(tiny_clipseg)
    monkeypatch.setenv("GOUACHE_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    image = Image.new("RGB", (50, 30), (200, 10, 10))
    with load_segmenter("clipseg") as seg:
        assert seg.kind == "clipseg"
        p = seg.probabilities(image, "the red thing")
        assert p.shape == (30, 50) and p.dtype == np.float32 and 0 <= p.min() <= p.max() <= 1
        again = seg.probabilities(image, "the red thing")
    assert np.array_equal(p, again)
    with pytest.raises(InvalidArgument, match="was closed"):
        seg.probabilities(image, "x")


def test_mask_image_and_remove_background_with_any_loaded_segmenter():
    """The same post-processing whatever the model: a segmenter stand-in that says "background"
    everywhere but a 10×10 square (what a real model returns is tested above and with the built-in)."""

    def probabilities(self, image, words):
        p = np.ones((image.height, image.width), np.float32)
        p[5:15, 5:15] = 0.0
        return p if "background" in words else 1 - p

    seg = Segmenter("clipseg", "stand-in", model=object())
    seg.probabilities = probabilities.__get__(seg)
    image = Image.new("RGB", (20, 20), (0, 0, 255))
    image.paste((255, 0, 0), (5, 5, 15, 15))  # the square the stand-in sees, so refining keeps its edge
    mask = np.asarray(mask_image(image, "the square", segmenter=seg))
    assert (mask == 255).sum() == 100 and mask[10, 10] == 255
    cut = remove_background(image, seg)
    assert cut.mode == "RGBA" and np.asarray(cut)[10, 10].tolist() == [255, 0, 0, 255]
    assert np.asarray(cut)[0, 0, 3] == 0
    seg.probabilities = (lambda image, words: np.ones((20, 20), np.float32))
    with pytest.raises(InvalidArgument, match="no object in front of the background"):
        remove_background(image, seg)


def test_words_are_checked():
    with pytest.raises(InvalidArgument, match="must name something"):
        mask_image(Image.new("RGB", (8, 8)), "  ", segmenter=Segmenter("clipseg", "x", model=object()))
    with pytest.raises(InvalidArgument, match="at most 300 characters"):
        mask_image(Image.new("RGB", (8, 8)), "x" * 301, segmenter=Segmenter("clipseg", "x", model=object()))


def test_every_door_refines_a_mask_by_the_same_default():
    import dataclasses
    import inspect

    import gouache
    from gouache.pipelines.request import InpaintRequest
    from gouache.server.schemas import Img2ImgBody
    from gouache.vision.segment import DEFAULT_REFINE

    assert MaskOptions().refine == DEFAULT_REFINE > 0
    assert {f.name: f.default for f in dataclasses.fields(InpaintRequest)}["mask_refine"] == DEFAULT_REFINE
    assert Img2ImgBody().mask_refine == DEFAULT_REFINE
    assert inspect.signature(gouache.mask).parameters["refine"].default == DEFAULT_REFINE
    assert inspect.signature(gouache.remove_background).parameters["refine"].default == DEFAULT_REFINE


def test_refine_moves_a_coarse_edge_onto_the_image_edge():
    from gouache.vision.segment import refine

    image = np.zeros((32, 32, 3), np.uint8)
    image[:, 16:] = 255  # the object: the right half
    coarse = np.zeros((32, 32), np.float32)
    coarse[:, 14:] = 1.0  # a mask whose edge is 2 pixels off, into the flat dark half
    out = refine(Image.fromarray(image), coarse, 4)
    from gouache.tiny.masks import iou

    truth = np.zeros((32, 32))
    truth[:, 16:] = 1.0
    assert (out[:, 16:] > 0.9).all() and iou(out, truth) > iou(coarse, truth) + 0.05  # 0.89 -> 0.94
    assert np.allclose(refine(Image.fromarray(image), np.full((32, 32), 0.3, np.float32), 4), 0.3, atol=1e-3)
