"""``import gouache``: the Python functions the README shows, called as it shows them."""

import gouache


def test_txt2img_takes_a_preview_callback_as_the_readme_says(tiny_model):
    previews = []
    images = gouache.txt2img("a red circle on a blue background", model=tiny_model, seed=1, steps=4,
                             preview=lambda step, total, image: previews.append((step, total, image.size)),
                             preview_every=2)
    assert len(images) == 1 and images[0].image.size == (64, 64)
    assert [p[:2] for p in previews] == [(2, 4), (4, 4)] and previews[0][2][0] > 0
