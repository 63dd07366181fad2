"""The shapes world with masks from words: true regions read back exactly, queries sorted right."""


import numpy as np

from gouache.tiny.masks import coverage, evaluation_items, iou, queries, training_batch
from gouache.tiny.shapes import HELD_OUT, ShapeSpec, draw


def test_coverage_is_the_shape_drawn():
    spec = ShapeSpec("red", "square", "blue", 32, 32, 20)
    cover = coverage(draw(spec), spec)
    assert cover[32, 32] == 1.0 and cover[2, 2] == 0.0
    # supersampled edges: partial pixels add up to the area (PIL draws the box's last row too: 20 + 1/4 a side)
    assert abs(cover.sum() - 20.25 ** 2) < 1.0
    ring = ShapeSpec("red", "circle", "blue", 32, 32, 40, "outline")
    cover = coverage(draw(ring), ring)
    assert cover[32, 32] == 0.0 and cover[32, 13] == 1.0  # the inside of an outline is background


def test_queries_name_the_shape_the_background_or_nothing():
    q = queries(ShapeSpec("red", "circle", "blue", 32, 32, 20))
    assert {"the circle", "the red shape", "the red circle", "the shape", "circle"} <= set(q["shape"])
    assert {"the background", "the blue background", "background"} <= set(q["background"])
    assert {"the square", "the blue shape", "the red square", "the green background"} <= set(q["none"])
    assert not set(q["shape"]) & set(q["none"]) and not set(q["background"]) & set(q["none"])


def test_training_batches_come_from_their_index_and_leave_held_out_pairs_out():
    a, b = training_batch(0, 7, 16), training_batch(0, 7, 16)
    assert [x.query for x in a] == [x.query for x in b] and all(np.array_equal(x.target, y.target) for x, y in zip(a, b))
    items = [x for i in range(20) for x in training_batch(0, i, 16)]
    assert not any((x.spec.colour, x.spec.shape) in HELD_OUT for x in items)
    kinds = {("none" if not x.target.any() else "?") for x in items}
    assert "none" in kinds and "?" in kinds


def test_evaluation_sets_are_fixed_and_of_their_kind():
    held = evaluation_items(True, "shape", 8)
    assert all((x.spec.colour, x.spec.shape) in HELD_OUT for x in held)
    again = evaluation_items(True, "background", 8)
    assert [x.spec for x in held] == [x.spec for x in again]  # the same images for every kind
    assert all(np.allclose(x.target + y.target, 1.0) for x, y in zip(held, again))
    assert not any(x.target.any() for x in evaluation_items(False, "none", 8))


def test_iou():
    a = np.zeros((4, 4))
    a[:2] = 1
    b = np.zeros((4, 4))
    b[1:3] = 1
    assert iou(a, a) == 1.0 and abs(iou(a, b) - 1 / 3) < 1e-9 and iou(np.zeros(3), np.zeros(3)) == 1.0


def test_grey_images_leave_the_kind_to_the_outline():
    from gouache.tiny.masks import names_kind, names_no_colour

    items = [x for i in range(12) for x in training_batch(0, i, 16, grey_fraction=0.5)]
    again = [x for i in range(12) for x in training_batch(0, i, 16, grey_fraction=0.5)]
    assert all(np.array_equal(np.asarray(x.image), np.asarray(y.image)) for x, y in zip(items, again))

    def is_grey(img):
        px = np.asarray(img, dtype=int)
        same = (px[..., 0] == px[..., 1]).all() and (px[..., 1] == px[..., 2]).all()
        return bool(same and px.min() >= 50 and px.max() <= 205)  # white on black is no grey image

    greys = [x for x in items if is_grey(x.image)]
    assert greys and all(names_no_colour(x.query) for x in greys)  # a query naming a colour keeps it
    for x in items:  # a kind the image does not show is asked of greys only: colour never answers it
        if names_kind(x.query) and names_no_colour(x.query) and not x.target.any():
            assert is_grey(x.image)
    g = greys[0]
    px = np.asarray(g.image)[..., 0].astype(float)
    inside, outside = px[g.target > 0.99] if g.target.any() else None, px[g.target < 0.01]
    assert outside.std() == 0 and (inside is None or abs(inside.mean() - outside.mean()) >= 80)
