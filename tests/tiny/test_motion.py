"""The shapes world in motion: clips the same for the same index, never a held-out pair, moving
the way their captions say."""

import numpy as np
import pytest

from gouache.tiny.judge import read_image, shape_mask
from gouache.tiny.motion import (CAPTION_FORMS, DIRECTIONS, MotionDataset, evaluation_prompts, evaluation_specs,
                                 motion_caption, render)
from gouache.tiny.shapes import HELD_OUT


def centroid(image):
    ys, xs = np.nonzero(shape_mask(image))
    return np.array([xs.mean(), ys.mean()])


def test_the_same_index_gives_the_same_clip_and_other_indices_others():
    a, b = MotionDataset(seed=3)[11], MotionDataset(seed=3)[11]
    assert a.caption == b.caption and len(a.frames) == 16
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.frames, b.frames))
    assert [MotionDataset(seed=3)[i].caption for i in range(12)] != [MotionDataset(seed=4)[i].caption for i in range(12)]
    arr, captions = MotionDataset(seed=3).batch(10, 2)
    assert arr.shape == (2, 16, 3, 64, 64) and captions[1] == a.caption and -1 <= arr.min() and arr.max() <= 1


def test_held_out_pairs_never_appear_and_every_direction_does():
    ds = MotionDataset(seed=0)
    specs = [ds.spec(i) for i in range(2000)]
    assert not {(s.start.colour, s.start.shape) for s in specs} & HELD_OUT
    assert {s.direction for s in specs} == set(DIRECTIONS)


@pytest.mark.parametrize("index", range(8))
def test_the_shape_moves_the_named_way_by_more_than_a_quarter_and_stays_whole(index):
    clip = MotionDataset(seed=1)[index]
    centres = np.array([centroid(f) for f in clip.frames])
    step = np.array(DIRECTIONS[clip.spec.direction])
    along = centres @ step
    assert along[-1] - along[0] >= 0.25 * 64
    assert np.all(np.diff(along) > 0)  # steadily, every frame
    assert np.ptp(centres @ np.abs(step[::-1])) < 1  # and only that way
    for frame in clip.frames:  # the whole shape in every frame, its colour, kind and background as captioned
        mask = shape_mask(frame)
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
        s = clip.spec.start
        assert read_image(frame).as_tuple() == (s.colour, s.shape, s.background)


def test_captions_say_colour_shape_background_and_direction_in_either_form():
    spec = MotionDataset(seed=0).spec(2)
    s = spec.start
    assert spec.caption == f"a {s.colour} {s.shape} on a {s.background} background, moving {spec.direction}"
    assert MotionDataset(seed=0, form="middle")[2].caption == \
        f"a {s.colour} {s.shape} moving {spec.direction} on a {s.background} background"
    assert motion_caption("red", "circle", "up", "blue", "middle") == "a red circle moving up on a blue background"
    assert MotionDataset(seed=0, outline=1.0)[0].caption.endswith(", outline style")
    with pytest.raises(ValueError, match="choose one of " + ", ".join(CAPTION_FORMS)):
        MotionDataset(form="before")


def test_evaluation_clips_cover_their_set_and_the_four_directions_evenly():
    held = evaluation_specs(held_out=True, n=12)
    assert {(s.start.colour, s.start.shape) for s in held} == HELD_OUT
    assert [s.direction for s in held[:4]] == list(DIRECTIONS)
    seen = evaluation_specs(held_out=False, n=48)
    assert not {(s.start.colour, s.start.shape) for s in seen} & HELD_OUT
    assert evaluation_prompts(True, 12) == [s.caption for s in held]
    assert len(render(held[0])) == 16
