"""Tiled upscaling with gouache-tiny: the size, the tiles, and no seams where tiles meet."""

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from gouache.errors import InvalidArgument
from gouache.pipelines.hires import lanczos
from gouache.pipelines.request import GenerationRequest, UpscaleRequest
from gouache.pipelines.txt2img import txt2img
from gouache.pipelines.upscale import tile_starts, tile_weights, upscale

PROMPT = "a yellow square on a purple background"


@pytest.mark.parametrize("length, tile, overlap", [(512, 64, 16), (100, 64, 16), (64, 64, 16), (1000, 512, 64)])
def test_tiles_cover_the_axis_and_overlap_enough(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == max(length, tile)
    assert all(a + tile - b >= overlap for a, b in zip(starts, starts[1:]))


def test_weights_cross_fade_to_one_everywhere():
    xs = tile_starts(200, 64, 16)
    total = np.zeros((64, 200))
    for i, x in enumerate(xs):
        total[:, x : x + 64] += tile_weights(xs, [0], 64, i, 0)
    assert np.allclose(total, 1)


@pytest.fixture(scope="module")
def source(tiny_model):
    return txt2img(tiny_model, GenerationRequest(PROMPT, steps=20, seed=4))[0].image


@pytest.fixture(scope="module")
def upscaled(tiny_model, source):
    req = UpscaleRequest(PROMPT, init_image=source, scale=8, tile=64, overlap=16, denoising_strength=0.3,
                         steps=7, seed=4)
    return upscale(tiny_model, req)[0]


def _borders(length, tile=64, overlap=16):
    starts = tile_starts(length, tile, overlap)
    return sorted({s for s in starts if s > 0} | {s + tile for s in starts if s + tile < length})


def test_8x_upscale_is_512_and_records_its_settings(upscaled):
    assert upscaled.image.size == (512, 512)
    for text in ("Size: 512x512", "Denoising strength: 0.3", "SD upscale tile: 64x64", "SD upscale overlap: 16",
                 "SD upscale upscaler: Lanczos"):
        assert text in upscaled.infotext


def test_no_step_in_mean_colour_at_tile_borders(upscaled, source):
    """Each tile is repainted on its own, so neighbouring tiles differ by up to ~60 levels of 255
    in mean colour where they overlap (what averaging them without ramps shows as a hard step;
    scripts/quality/upscale_seams.py). The ramps must spread that out: the jump between neighbouring
    column (row) means at a tile border, beyond the Lanczos source's jump there, must be no larger
    than the repainted content's own edges make elsewhere in the image, and under 30 (half a
    hard seam)."""
    r = np.asarray(upscaled.image, dtype=np.float64)
    s = np.asarray(lanczos(source, (512, 512)), dtype=np.float64)
    for axis in (0, 1):  # means of rows, then of columns
        excess = (np.abs(np.diff(r.mean(axis=axis), axis=0)) - np.abs(np.diff(s.mean(axis=axis), axis=0))).max(axis=1)
        border = np.zeros(511, bool)
        border[[b - 1 for b in _borders(512)]] = True
        assert excess[border].max() < 30
        assert excess[border].max() <= excess[~border].max()


@pytest.mark.parametrize("field, value, message", [
    ("scale", 0.5, "`scale` must be a number from 1 to 16, got 0.5"),
    ("tile", 100, "`tile` must be a multiple of 8, got 100"),
    ("overlap", 40, "`overlap` must be less than half the tile (32), got 40"),
])
def test_bad_settings_are_named(field, value, message):
    req = UpscaleRequest(PROMPT, init_image=Image.new("RGB", (64, 64)), **{"tile": 64, field: value})
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        req.validate()


def test_progress_runs_once_over_every_tile_of_every_image(tiny_model, source):
    """The bar (terminal and /progress) climbs steadily from start to end over all tiles and images,
    never starting over for the next image of a batch."""
    calls = []
    req = UpscaleRequest(PROMPT, init_image=source, scale=2, tile=64, overlap=16, denoising_strength=0.5,
                         steps=4, seed=4, batch_size=2)
    upscale(tiny_model, req, lambda i, n: calls.append((i, n)))
    totals = {n for _, n in calls}
    assert len(totals) == 1
    total = totals.pop()
    done = [i for i, _ in calls]
    assert done == sorted(done) and done[-1] == total
    one = []
    upscale(tiny_model, replace(req, batch_size=1), lambda i, n: one.append(n))
    assert total == 2 * one[-1] > 0  # both images' tiles on one bar
