"""Seams of `gouache upscale`: the jump in mean colour across every tile border, result vs source.

For each tile border (a tile's first or last pixel column/row inside the image), the mean colour
of the column (row) on either side is compared; the jump in the result, minus the jump in the
Lanczos-upscaled source at the same place, is the seam the tiling added. The same is measured
with flat weights (tiles averaged where they overlap, no ramps) to show what a seam looks like.

Run: OMP_NUM_THREADS=2 .venv/bin/python scripts/quality/upscale_seams.py [steps]
"""
import sys

import numpy as np

from gouache.pipelines import upscale as up
from gouache.pipelines.hires import lanczos
from gouache.pipelines.model import load_model
from gouache.pipelines.request import GenerationRequest, UpscaleRequest
from gouache.pipelines.txt2img import txt2img


def borders(starts, tile, length):
    return sorted({s for s in starts if s > 0} | {s + tile for s in starts if s + tile < length})


def seam_excess(result, source, tile, overlap):
    """(worst jump at a tile border, worst jump anywhere else): the jump in mean colour between
    neighbouring columns (rows) of ``result`` minus the jump in ``source`` there, in 0-255 levels."""
    r, s = (np.asarray(im, dtype=np.float64) for im in (result, source))
    at_border, elsewhere = 0.0, 0.0
    for axis in (1, 0):  # 1: columns (vertical borders), 0: rows
        length = r.shape[axis]
        jump_r = np.abs(np.diff(r.mean(axis=1 - axis), axis=0)).max(axis=1)  # [b - 1]: between b - 1 and b
        jump_s = np.abs(np.diff(s.mean(axis=1 - axis), axis=0)).max(axis=1)
        excess = jump_r - jump_s
        is_border = np.zeros(length - 1, bool)
        is_border[[b - 1 for b in borders(up.tile_starts(length, tile, overlap), tile, length)]] = True
        at_border = max(at_border, excess[is_border].max())
        elsewhere = max(elsewhere, excess[~is_border].max())
    return at_border, elsewhere


if __name__ == "__main__":
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    m = load_model()
    for prompt, seed in [("a red circle on a blue background", 3), ("a yellow square on a purple background", 4),
                         ("a white triangle on a green background", 5)]:
        src = txt2img(m, GenerationRequest(prompt, steps=20, seed=seed))[0].image
        req = UpscaleRequest(prompt, init_image=src, scale=8, tile=64, overlap=16, denoising_strength=0.3,
                             steps=steps, seed=seed)
        source = lanczos(src, (512, 512))
        ramped = up.upscale(m, req)[0].image
        flat_weights = up.tile_weights
        up.tile_weights = lambda xs, ys, tile, i, j: np.ones((tile, tile))
        try:
            flat = up.upscale(m, req)[0].image
        finally:
            up.tile_weights = flat_weights
        (b, e), (fb, fe) = seam_excess(ramped, source, 64, 16), seam_excess(flat, source, 64, 16)
        print(f"{prompt}: steps {steps}: ramps: border {b:.2f}, elsewhere {e:.2f}; "
              f"flat weights: border {fb:.2f}, elsewhere {fe:.2f} (levels of 255)")
