"""The shapes world as captioned pairs: every caption, the held-out split, batches and evaluation sets."""

import pytest

from gouache.tiny.judge import read_image
from gouache.tiny.pairs import combinations, evaluation_items, every_caption, training_batch
from gouache.tiny.shapes import COLOURS, HELD_OUT, SHAPES, STYLES


def test_every_caption_is_one_combination():
    captions = every_caption()
    assert len(captions) == len(set(captions)) == len(COLOURS) * len(SHAPES) * (len(COLOURS) - 1) * len(STYLES) == 336
    assert "a purple triangle on a white background, outline style" in captions
    assert len(combinations(held_out=True)) == len(HELD_OUT) * 7 * 2


def test_training_batches_differ_in_caption_never_hold_out_and_repeat_by_index():
    batch = training_batch(3, 7, 200)
    assert len({it.caption for it in batch}) == 200
    assert not any((it.spec.colour, it.spec.shape) in HELD_OUT for it in batch)
    assert {it.spec.style for it in batch} == set(STYLES)
    again = training_batch(3, 7, 200)
    assert [it.caption for it in again] == [it.caption for it in batch] and again[5].spec == batch[5].spec
    assert [it.caption for it in training_batch(3, 8, 200)] != [it.caption for it in batch]
    with pytest.raises(ValueError, match="1 to 294"):
        training_batch(0, 0, 295)


@pytest.mark.parametrize("held_out", [False, True])
def test_evaluation_sets_are_fixed_and_read_back_by_the_judge(held_out):
    items = evaluation_items(held_out, 16)
    assert all(((it.spec.colour, it.spec.shape) in HELD_OUT) == held_out for it in items)
    assert [it.spec for it in evaluation_items(held_out, 16)] == [it.spec for it in items]
    for it in items:
        reading = read_image(it.image)
        assert (reading.as_tuple(), reading.style) == ((it.spec.colour, it.spec.shape, it.spec.background), it.spec.style)
