"""Masks as A1111 prepares them: binary, blurred exactly so far, cropped, filled, pasted back."""

import numpy as np
import pytest
from PIL import Image

from gouache.pipelines import masking


def square_mask(size=64, box=(24, 24, 40, 40)):
    m = Image.new("L", (size, size))
    m.paste(255, box)
    return m


@pytest.mark.parametrize("blur", [1, 4, 8])
def test_blur_spreads_the_mask_no_farther_than_its_radius(blur):
    a = np.asarray(masking.blur_mask(square_mask(), blur))
    r = masking.blur_radius(blur)
    assert a[32, 40] > 0 and a[32, 23] > 0  # past the mask's edge on both sides...
    assert (a[:, 40 + r:] == 0).all() and (a[:, : 24 - r] == 0).all()  # ...but never past the radius
    assert a[32, 32] == a.max()  # peaked in the middle of the mask


def test_binary_mask_reads_an_rgba_alpha_and_thresholds_grey():
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.putpixel((3, 3), (0, 0, 0, 255))
    assert np.asarray(masking.binary_mask(rgba))[3, 3] == 255 and np.asarray(masking.binary_mask(rgba)).sum() == 255
    grey = Image.new("L", (2, 1))
    grey.putpixel((0, 0), 128)
    grey.putpixel((1, 0), 129)
    assert np.asarray(masking.binary_mask(grey)).tolist() == [[0, 255]]


def test_crop_region_is_grown_to_the_working_ratio():
    mask = square_mask(512, (100, 200, 228, 232))  # a 128x32 region
    region = masking.crop_region(mask, 0)
    assert region == (100, 200, 228, 232)
    assert masking.expand_crop_region(region, 512, 512, 512, 512) == (100, 152, 228, 280)  # A1111: 128x128
    # at the image's edge the box slides inside it
    assert masking.expand_crop_region((0, 0, 128, 32), 512, 512, 512, 512) == (0, 0, 128, 128)
    assert masking.crop_region(Image.new("L", (8, 8)), 4) is None


def test_fill_takes_the_colours_around_the_mask():
    image = Image.new("RGB", (32, 32), (200, 20, 20))
    image.paste((0, 0, 0), (8, 8, 24, 24))
    out = np.asarray(masking.fill(image, square_mask(32, (8, 8, 24, 24))))
    assert abs(int(out[16, 16, 0]) - 200) < 10 and out[16, 16, 1] < 40


def test_latent_mask_keeps_small_masks():
    m = masking.latent_mask(square_mask(64, (9, 9, 11, 11)), 8)
    assert m.shape == (1, 1, 8, 8) and m.sum() == 1 and m[0, 0, 1, 1] == 1


def test_paste_back_keeps_the_original_where_the_mask_is_black():
    original = Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    generated = Image.new("RGB", (16, 16), "white")
    mask = square_mask(16, (4, 4, 8, 8))
    out = np.asarray(masking.paste_back(generated, original, mask))
    keep = np.asarray(mask) == 0
    assert np.array_equal(out[keep], np.asarray(original)[keep]) and (out[~keep] == 255).all()
    # "Only masked": the generated crop is scaled into its box
    out = np.asarray(masking.paste_back(Image.new("RGB", (64, 64), "white"), original, mask, box=(4, 4, 8, 8)))
    assert np.array_equal(out[keep], np.asarray(original)[keep]) and (out[~keep] == 255).all()
