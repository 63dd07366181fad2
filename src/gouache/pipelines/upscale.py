"""Tiled upscaling over the one denoising loop (AUTOMATIC1111's "SD upscale" script).

The image is enlarged with Lanczos, then cut into overlapping tiles of the model's native size;
each tile goes through the img2img input of the loop (:class:`~gouache.sampling.start.ImageStart`)
at a low strength, which adds detail at the size the model knows, and the tiles are put back
with weights that ramp linearly across every overlap, so neighbours cross-fade instead of
meeting at a seam. Every tile of an image uses the image's seed (as A1111 does).

With ControlNet units (``controls``, e.g. a ControlNet Tile with the ``tile`` preprocessor) each
tile gets its own control map: the unit's image (the upscaled image itself when it has none)
at the upscaled size, cut to the tile, then preprocessed; the tiles then go one at a time.

>>> from gouache.pipelines.request import UpscaleRequest
>>> request = UpscaleRequest("a red circle", init_image=image, scale=4, denoising_strength=0.3)  # doctest: +SKIP
>>> upscale(load_model(), request)[0].image.size                                                 # doctest: +SKIP
(256, 256)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from PIL import Image

from gouache.images import flatten
from gouache.pipelines.hires import lanczos
from gouache.pipelines.controlnet import control_map, prepare_controls
from gouache.pipelines.engine import Generation, Progress, generation, resolve_request
from gouache.pipelines.model import LoadedModel, pixels_of
from gouache.pipelines.prompting import with_prompt_tools
from gouache.pipelines.request import GeneratedImage, UpscaleRequest
from gouache.sampling.start import ImageStart

__all__ = ["UpscaleRequest", "upscale", "tile_starts", "tile_weights"]
TILE_BATCH = 8  # tiles denoised together


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of ``tile`` pixels start along an axis of ``length``: as few as overlap by at
    least ``overlap``, spread evenly from 0 to ``length - tile``.

    >>> tile_starts(512, 64, 16)[:3], tile_starts(512, 64, 16)[-1]
    ([0, 45, 90], 448)
    """
    if length <= tile:
        return [0]
    n = -(-(length - overlap) // (tile - overlap))  # ceil
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _ramp(starts: list[int], tile: int, k: int) -> np.ndarray:
    """Tile ``k``'s weights along one axis: 1 inside, rising linearly over the overlap with the
    tile before and falling over the overlap with the tile after (a cross-fade that sums to 1)."""
    x = np.arange(tile) + 0.5
    w = np.ones(tile)
    if k > 0:
        before = starts[k - 1] + tile - starts[k]
        w = np.minimum(w, x / before)
    if k + 1 < len(starts):
        after = starts[k] + tile - starts[k + 1]
        w = np.minimum(w, (tile - x) / after)
    return w


def tile_weights(xs: list[int], ys: list[int], tile: int, i: int, j: int) -> np.ndarray:
    """The ``(tile, tile)`` blending weights of the tile at ``(xs[i], ys[j])``."""
    return np.outer(_ramp(ys, tile, j), _ramp(xs, tile, i))


@with_prompt_tools
def upscale(model: LoadedModel, request: UpscaleRequest, progress: Progress | None = None) -> list[GeneratedImage]:
    """One upscaled image per seed of the request (``n_iter × batch_size``)."""
    # 1. Check inputs; the request's size is the tile's
    request.validate()
    tile = request.tile or model.native_size
    req = resolve_request(replace(request, width=tile, height=tile), model)
    req = replace(req, overlap=tile // 4 if request.overlap is None else request.overlap)
    req.validate()
    # 2. The Lanczos-upscaled image, cut into tiles
    big = lanczos(flatten(req.init_image), req.upscaled_size())
    tile = min(tile, *big.size)
    xs, ys = tile_starts(big.width, tile, req.overlap), tile_starts(big.height, tile, req.overlap)
    boxes = [(x, y) for y in ys for x in xs]
    req = replace(req, width=tile, height=tile)
    controls = prepare_controls(model, req, per_tile=True)
    tile_maps = _tile_maps(req, controls, big, boxes, tile) if controls else None
    # the infotext's Size is the result's, what a reader of `gouache info` takes it for (A1111's SD
    # upscale writes the tile there); the tile has a key of its own
    extra = {"Size": f"{big.width}x{big.height}", "SD upscale tile": f"{tile}x{tile}"}
    with generation(model, req, controls) as gen:
        latents = torch.cat([model.encode(pixels_of(big.crop((x, y, x + tile, y + tile)))) for x, y in boxes])

        # 3. Every tile through the one loop, then the tiles blended back together
        def make_batch(seeds, tick):  # one bar over every tile of every image
            return [_one_image(gen, seed, latents, boxes, xs, ys, big.size,
                               lambda i, n, k=k: tick(k * n + i, len(seeds) * n), tile_maps)
                    for k, seed in enumerate(seeds)]

        return gen.run(make_batch, progress, extra)


def _tile_maps(req, controls, big: Image.Image, boxes, tile: int) -> list[list[Image.Image]]:
    """``maps[k]``: each unit's control map of tile ``k``."""
    sources = []
    for item in controls.items:
        image = item.spec.load_image()
        sources.append(big if image is None else image.resize(big.size, Image.Resampling.LANCZOS))
    return [[control_map(item.spec, src, tile, tile, (x, y, x + tile, y + tile)) for item, src in zip(controls.items, sources)]
            for x, y in boxes]


def _one_image(gen: Generation, seed, latents, boxes, xs, ys, size, tick, tile_maps=None) -> Image.Image:
    tile, controls = gen.req.width, gen.controls
    total = np.zeros((size[1], size[0], 3))
    weight = np.zeros((size[1], size[0], 1))
    per_chunk = 1 if controls else TILE_BATCH  # each tile its own control maps
    n_chunks = -(-len(boxes) // per_chunk)
    for c in range(n_chunks):
        chunk = slice(c * per_chunk, (c + 1) * per_chunk)
        start = ImageStart(latents[chunk], gen.req.denoising_strength)
        seeds = [seed] * latents[chunk].shape[0]
        tiled = controls.with_maps(tile_maps[c]) if controls else None
        tiles = gen.images(seeds, lambda i, n, c=c: tick(c * n + i, n_chunks * n), start, controls=tiled)
        for k, image in enumerate(tiles, start=c * per_chunk):
            x, y = boxes[k]
            w = tile_weights(xs, ys, tile, xs.index(x), ys.index(y))[..., None]
            total[y : y + tile, x : x + tile] += w * np.asarray(image, dtype=np.float64)
            weight[y : y + tile, x : x + tile] += w
    return Image.fromarray(np.clip(np.round(total / weight), 0, 255).astype(np.uint8))
