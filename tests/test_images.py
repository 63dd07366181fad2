"""A1111's resize modes and image loading."""

import numpy as np
import pytest
from PIL import Image

from gouache.errors import InvalidArgument
from gouache.images import flatten, load_image, resize_image


def halves():
    """128x64: left half red, right half blue."""
    im = Image.new("RGB", (128, 64), (255, 0, 0))
    im.paste((0, 0, 255), (64, 0, 128, 64))
    return im


def test_just_resize_stretches():
    a = np.asarray(resize_image(0, halves(), 64, 64))
    assert tuple(a[32, 5]) == (255, 0, 0) and tuple(a[32, 60]) == (0, 0, 255)


def test_crop_and_resize_keeps_the_centre():
    a = np.asarray(resize_image(1, halves(), 64, 64))  # the middle 64 columns: red | blue at x=32
    assert tuple(a[32, 2]) == (255, 0, 0) and tuple(a[32, 61]) == (0, 0, 255)


def test_resize_and_fill_stretches_the_edges_into_the_bars():
    a = np.asarray(resize_image(2, halves(), 64, 64))  # 64x32 in the middle, bars above and below
    assert a.shape == (64, 64, 3)
    assert tuple(a[2, 2]) == (255, 0, 0) and tuple(a[61, 61]) == (0, 0, 255)


def test_same_size_is_unchanged():
    im = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    for mode in (0, 1, 2):
        assert np.array_equal(np.asarray(resize_image(mode, im, 16, 16)), np.asarray(im))


def test_flatten_puts_transparency_on_white():
    assert flatten(Image.new("RGBA", (2, 2), (0, 0, 0, 0))).getpixel((0, 0)) == (255, 255, 255)


def test_load_image_errors_are_one_line(tmp_path):
    with pytest.raises(InvalidArgument, match="init image .*missing.png is not a file"):
        load_image(tmp_path / "missing.png", "init image")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InvalidArgument, match="is not an image"):
        load_image(tmp_path / "text.png", "mask")
