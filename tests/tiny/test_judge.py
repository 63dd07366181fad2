import pytest
from PIL import Image, ImageFilter

from gouache.tiny.judge import evaluation_prompts, parse_prompt, read_image, score
from gouache.tiny.shapes import HELD_OUT, PALETTE, ShapeSpec, ShapesDataset, draw


@pytest.mark.parametrize("blur", [0, 2.0])
def test_reads_the_dataset_perfectly_even_blurred(blur):
    # generated images have soft edges and rounded corners, like a blurred drawing
    ds = ShapesDataset(seed=11)
    items = [ds[i] for i in range(300)]
    images = [it.image.filter(ImageFilter.GaussianBlur(blur)) if blur else it.image for it in items]
    s = score(images, [it.caption for it in items])
    assert s.rate() == 1.0, s.failures[:5]


@pytest.mark.parametrize("colour,shape,background", [(c, s, "blue" if c != "blue" else "red") for (c, s) in sorted(HELD_OUT)])
def test_reads_held_out_pairs_drawn_by_hand(colour, shape, background):
    image = draw(ShapeSpec(colour, shape, background, 30, 34, 36))
    assert read_image(image).as_tuple() == (colour, shape, background)


def test_blank_image_has_no_shape():
    reading = read_image(Image.new("RGB", (64, 64), PALETTE["white"]))
    assert reading.as_tuple() == (None, None, "white")


def test_score_counts_each_attribute():
    image = draw(ShapeSpec("red", "circle", "blue", 32, 32, 40))
    s = score([image, image], ["a red circle on a blue background", "a red square on a green background"])
    assert (s.n, s.colour, s.shape, s.background, s.all_three) == (2, 2, 1, 1, 1)
    assert s.failures == [("a red square on a green background", ("red", "circle", "blue"))]


@pytest.mark.parametrize("bad", ["a pink circle on a blue background", "a red hexagon on a blue background", "red circle"])
def test_unreadable_prompt(bad):
    with pytest.raises(ValueError, match="judge reads prompts"):
        parse_prompt(bad)


def test_evaluation_prompts_cover_the_set():
    held = evaluation_prompts(True, 64)
    assert len(held) == 64
    assert {parse_prompt(p)[:2] for p in held} == set(HELD_OUT)
    assert not {parse_prompt(p)[:2] for p in evaluation_prompts(False, 64)} & HELD_OUT


@pytest.mark.parametrize("blur", [0, 0.75])  # a 4-pixel line blurred more loses its colour to the background
@pytest.mark.parametrize("style", ["filled", "outline"])
def test_tells_outlines_from_filled_shapes(style, blur):
    ds = ShapesDataset(seed=9, style=style)
    for i in range(150):
        item = ds[i]
        image = item.image.filter(ImageFilter.GaussianBlur(blur)) if blur else item.image
        r = read_image(image)
        assert (r.style, *r.as_tuple()) == (style, item.spec.colour, item.spec.shape, item.spec.background), i


def test_an_outline_with_a_small_gap_is_still_an_outline():
    import numpy as np

    from gouache.tiny.shapes import ShapeSpec, draw

    image = np.asarray(draw(ShapeSpec("red", "circle", "white", 32, 32, 40, "outline"))).copy()
    image[12:22, 28:34] = (245, 245, 245)  # a 6-pixel gap cut through the top of the ring
    r = read_image(Image.fromarray(image))
    assert (r.style, r.shape) == ("outline", "circle")


def test_score_counts_outlines():
    from gouache.tiny.shapes import ShapeSpec, draw

    images = [draw(ShapeSpec("red", "square", "blue", 32, 32, 36, style)) for style in ("outline", "filled")]
    s = score(images, ["a red square on a blue background"] * 2)
    assert (s.outline, s.all_three) == (1, 2) and "outlines 50.0%" in s.summary()
