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

import io
import random
from dataclasses import dataclass
from pathlib import Path

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
STYLES: tuple[str, ...] = ("filled", "outline")
OUTLINE_WIDTH = 1 / 16  # of the image side: 4 px at 64×64

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
    style: str = "filled"  # or "outline": a closed line of OUTLINE_WIDTH, the inside left as background

    @property
    def caption(self) -> str:
        text = caption(self.colour, self.shape, self.background)
        return text if self.style == "filled" else f"{text}, {self.style} style"


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
    if spec.style not in STYLES:
        raise ValueError(f"unknown style {spec.style!r}; choose one of {', '.join(STYLES)}")
    box = [cx - half, cy - half, cx + half, cy + half]
    triangle = [(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    _draw_shape(d, spec.shape, box, triangle, PALETTE[spec.colour])
    if spec.style == "outline":  # the same shape, its inside painted back in the background colour
        inset = OUTLINE_WIDTH * resolution * s
        inner_box = [box[0] + inset, box[1] + inset, box[2] - inset, box[3] - inset]
        # a triangle's sides move in by `inset`: its incentre stays, its size shrinks by 1 - inset/inradius
        r = (2 * half) * (2 * half) / ((2 * half) + 2 * ((half**2 + (2 * half) ** 2) ** 0.5))  # inradius (area/semi-perimeter)
        ix, iy = cx, cy + half - r
        k = max(1 - inset / r, 0.0)
        inner_triangle = [(ix + (x - ix) * k, iy + (y - iy) * k) for x, y in triangle]
        _draw_shape(d, spec.shape, inner_box, inner_triangle, PALETTE[spec.background])
    return img.resize((resolution, resolution), Image.Resampling.BOX)


def _draw_shape(d: ImageDraw.ImageDraw, shape: str, box, triangle, fill) -> None:
    if shape == "circle":
        d.ellipse(box, fill=fill)
    elif shape == "square":
        d.rectangle(box, fill=fill)
    elif shape == "triangle":
        d.polygon(triangle, fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")


def random_spec(
    rng: random.Random,
    resolution: int = 64,
    colour: str | None = None,
    shape: str | None = None,
    background: str | None = None,
    include_held_out: bool = False,
    style: str = "filled",
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
    return ShapeSpec(c, sh, bg, cx, cy, size, style)


class ShapesDataset:
    """An unlimited, seeded dataset of shape images and captions (held-out pairs never appear).

    ``len()`` is nominal (``length``); indices beyond it are valid and simply new images.
    """

    def __init__(self, seed: int = 0, resolution: int = 64, length: int = 1_000_000, style: str = "filled"):
        if resolution < 64 or resolution % 8:
            raise ValueError(f"`resolution` must be a multiple of 8 and at least 64, got {resolution}")
        self.seed, self.resolution, self.length, self.style = seed, resolution, length, style

    def __len__(self) -> int:
        return self.length

    def spec(self, index: int) -> ShapeSpec:
        rng = random.Random(self.seed * 1_000_003 + index)
        return random_spec(rng, self.resolution, style=self.style)

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


def write_folder(
    out: str | Path,
    n: int,
    seed: int = 0,
    style: str = "filled",
    colour: str | None = None,
    shape: str | None = None,
    template: str | None = None,
    resolution: int = 64,
) -> list[Path]:
    """Write ``n`` shape images as PNGs with kohya-style ``.txt`` caption sidecars into ``out``: the
    raw material of ``gouache dataset prepare`` (e.g. the outline-style LoRA's 100 images).

    ``colour``/``shape`` fix those attributes (a held-out pair is allowed here: that is what the
    ``<sks>`` embedding is trained on); ``template`` replaces the caption, with ``{colour}``,
    ``{shape}`` and ``{background}`` filled in, e.g. ``"a <sks> on a {background} background"``.
    Existing files are never overwritten.
    """
    from gouache.metadata.png import atomic_write_bytes

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for i in range(n):
        spec = random_spec(rng, resolution, colour=colour, shape=shape, include_held_out=True, style=style)
        if colour is None and shape is None and (spec.colour, spec.shape) in HELD_OUT:
            spec = random_spec(rng, resolution, style=style)  # random pairs stay off the held-out ones
        text = template.format(colour=spec.colour, shape=spec.shape, background=spec.background) if template else spec.caption
        stem = out / f"{style}-{i:04d}"
        buf = io.BytesIO()
        draw(spec, resolution).save(buf, format="PNG")
        atomic_write_bytes(stem.with_suffix(".png"), buf.getvalue())
        atomic_write_bytes(stem.with_suffix(".txt"), text.encode())
        paths.append(stem.with_suffix(".png"))
    return paths
