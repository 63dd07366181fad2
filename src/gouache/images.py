"""Small image helpers shared by the commands."""

from __future__ import annotations

import math

from PIL import Image


def image_grid(images: list[Image.Image], cols: int | None = None) -> Image.Image:
    """Lay images out in a grid, as AUTOMATIC1111's grids: about square, row by row.

    >>> image_grid([Image.new("RGB", (64, 64))] * 6).size
    (192, 128)
    """
    if not images:
        raise ValueError("image_grid needs at least one image")
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h), "white")
    for i, im in enumerate(images):
        grid.paste(im.convert("RGB").resize((w, h)), ((i % cols) * w, (i // cols) * h))
    return grid
