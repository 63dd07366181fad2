import numpy as np
import pytest

from gouache.tiny.shapes import COLOURS, HELD_OUT, PALETTE, SHAPES, ShapesDataset, all_prompts, caption


def test_same_index_same_image():
    a, b = ShapesDataset(seed=3)[17], ShapesDataset(seed=3)[17]
    assert a.caption == b.caption
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_seeds_differ():
    assert [ShapesDataset(seed=0)[i].caption for i in range(20)] != [ShapesDataset(seed=1)[i].caption for i in range(20)]


def test_held_out_pairs_never_drawn_and_everything_else_is():
    ds = ShapesDataset(seed=0)
    pairs = {(ds.spec(i).colour, ds.spec(i).shape) for i in range(3000)}
    assert not pairs & HELD_OUT
    assert len(pairs) == len(COLOURS) * len(SHAPES) - len(HELD_OUT)


def test_image_matches_caption():
    item = ShapesDataset(seed=0, resolution=64)[5]
    arr = np.asarray(item.image)
    assert arr.shape == (64, 64, 3)
    assert tuple(arr[0, 0]) == PALETTE[item.spec.background]
    assert item.spec.background != item.spec.colour
    assert item.caption == caption(item.spec.colour, item.spec.shape, item.spec.background)


def test_batch_is_normalised():
    arr, caps = ShapesDataset().batch(0, 4)
    assert arr.shape == (4, 3, 64, 64) and len(caps) == 4
    assert -1.0 <= arr.min() and arr.max() <= 1.0


@pytest.mark.parametrize("resolution", [32, 65])
def test_bad_resolution(resolution):
    with pytest.raises(ValueError, match="resolution"):
        ShapesDataset(resolution=resolution)


def test_prompt_sets_partition_all_triples():
    seen, held = all_prompts(False), all_prompts(True)
    assert len(held) == 3 * 7
    assert len(seen) + len(held) == len(COLOURS) * len(SHAPES) * 7
