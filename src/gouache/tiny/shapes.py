"""The procedural dataset gouache-tiny is trained on: one coloured shape on a plain background.

Every item is derived from ``(seed, index)`` alone, so the dataset is unlimited, needs no files and
gives the same image for the same index on every machine (the nanoGPT / minGPT habit of a dataset
made from its index by a seeded generator).

>>> ds = ShapesDataset(seed=0)
>>> item = ds[3]
>>> item.image.size, item.caption          # doctest: +SKIP
((64, 64), 'a red circle on a blue background')
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# Saturated, well separated colours: the judge reads them back by nearest palette entry.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 60),
    "blue": (35, 70, 220),
    "yellow": (240, 220, 40),
    "purple": (140, 50, 180),
    "orange": (245, 140, 20),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

# Colour-shape pairs never drawn in training: generating them measures generalisation.
HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    {("purple", "triangle"), ("yellow", "circle"), ("green", "square")}
)


def caption(colour: str, shape: str, background: str) -> str:
    """The caption of an image, e.g. ``a red circle on a blue background``."""
    return f"a {colour} {shape} on a {background} background"


@dataclass(frozen=True)
class ShapeSpec:
    colour: str
    shape: str
    background: str
    cx: float  # centre, in pixels
    cy: float
    size: float  # side of the bounding square, in pixels

    @property
    def caption(self) -> str:
        return caption(self.colour, self.shape, self.background)


@dataclass(frozen=True)
class ShapesItem:
    image: Image.Image
    caption: str
    spec: ShapeSpec


def draw(spec: ShapeSpec, resolution: int = 64, supersample: int = 4) -> Image.Image:
    """Render a spec; drawn at ``supersample`` times the size and reduced, for smooth edges."""
    big = resolution * supersample
    img = Image.new("RGB", (big, big), PALETTE[spec.background])
    d = ImageDraw.Draw(img)
    s = supersample
    half = spec.size * s / 2
    cx, cy = spec.cx * s, spec.cy * s
    fill = PALETTE[spec.colour]
    if spec.shape == "circle":
        d.ellipse([cx - half, cy - half, cx + half, cy + half], fill=fill)
    elif spec.shape == "square":
        d.rectangle([cx - half, cy - half, cx + half, cy + half], fill=fill)
    elif spec.shape == "triangle":
        d.polygon([(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)], fill=fill)
    else:
        raise ValueError(f"unknown shape {spec.shape!r}; choose one of {', '.join(SHAPES)}")
    return img.resize((resolution, resolution), Image.Resampling.BOX)


def random_spec(
    rng: random.Random,
    resolution: int = 64,
    colour: str | None = None,
    shape: str | None = None,
    background: str | None = None,
    include_held_out: bool = False,
) -> ShapeSpec:
    """Draw a spec; fixed attributes are kept, the others are sampled (held-out pairs excluded)."""
    while True:
        c = colour or rng.choice(COLOURS)
        sh = shape or rng.choice(SHAPES)
        if not include_held_out and (c, sh) in HELD_OUT:
            if colour and shape:
                raise ValueError(f"{c} {sh} is a held-out pair; pass include_held_out=True")
            continue
        bg = background or rng.choice([x for x in COLOURS if x != c])
        if bg == c:
            raise ValueError(f"shape and background must differ, both are {c}")
        break
    size = rng.uniform(0.38, 0.72) * resolution
    margin = size / 2 + 1
    cx = rng.uniform(margin, resolution - margin)
    cy = rng.uniform(margin, resolution - margin)
    return ShapeSpec(c, sh, bg, cx, cy, size)


class ShapesDataset:
    """An unlimited, seeded dataset of shape images and captions (held-out pairs never appear).

    ``len()`` is nominal (``length``); indices beyond it are valid and simply new images.
    """

    def __init__(self, seed: int = 0, resolution: int = 64, length: int = 1_000_000):
        if resolution < 64 or resolution % 8:
            raise ValueError(f"`resolution` must be a multiple of 8 and at least 64, got {resolution}")
        self.seed, self.resolution, self.length = seed, resolution, length

    def __len__(self) -> int:
        return self.length

    def spec(self, index: int) -> ShapeSpec:
        rng = random.Random(self.seed * 1_000_003 + index)
        return random_spec(rng, self.resolution)

    def __getitem__(self, index: int) -> ShapesItem:
        spec = self.spec(index)
        return ShapesItem(draw(spec, self.resolution), spec.caption, spec)

    def batch(self, start: int, size: int) -> tuple[np.ndarray, list[str]]:
        """``size`` consecutive items as a float array in [-1, 1] of shape (N, 3, H, W) and captions."""
        items = [self[start + i] for i in range(size)]
        arr = np.stack([np.asarray(it.image, dtype=np.float32) for it in items])
        arr = arr.transpose(0, 3, 1, 2) / 127.5 - 1.0
        return arr, [it.caption for it in items]


def all_prompts(held_out: bool) -> list[tuple[str, str, str]]:
    """Every (colour, shape, background) triple, either the held-out pairs or the seen ones."""
    out = []
    for c in COLOURS:
        for sh in SHAPES:
            if ((c, sh) in HELD_OUT) != held_out:
                continue
            out += [(c, sh, bg) for bg in COLOURS if bg != c]
    return out
