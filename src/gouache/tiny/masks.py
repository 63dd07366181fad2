"""The shapes world with masks from words: what the built-in CLIPSeg trains and is measured on.

Every image of the world has two true regions: **the shape** (the pixels drawn in its colour: the
whole figure when filled, the closed line when outlined) and **the background** (everything else,
the inside of an outline included). :func:`coverage` reads them back from the image exactly: a
pixel is a mix of the two palette colours (the drawing is supersampled and box-reduced), and its
share of the shape's colour is its coverage.

A query names a region, or nothing on that image (:func:`queries`): ``the circle``, ``the red
shape``, ``the red circle``, ``the shape``, ``the background``, ``the blue background``... A query
that names another shape, colour or background asks for an empty mask, which is how the model
learns to say "no" (``gouache mask`` refuses a mask that matches nothing). A training batch
(:func:`training_batch`) derives from its index and the seed alone; held-out colour-shape pairs
(:data:`~gouache.tiny.shapes.HELD_OUT`) never appear in it. :func:`evaluation_items` draws the
measured sets: seen or held-out pairs, both styles, one query of a given kind per image.

>>> item = evaluation_items(held_out=False, kind="shape", n=1)[0]
>>> item.query, item.target.shape                       # doctest: +SKIP
('the square', (64, 64))
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from gouache.tiny.pairs import EVAL_SEED, Combination, combinations, render
from gouache.tiny.shapes import COLOURS, PALETTE, SHAPES, ShapeSpec

# what a query asks for: the shape, the background, or nothing on this image
SHAPE_TEMPLATES = ("the {shape}", "the {colour} shape", "the {colour} {shape}", "the shape", "{shape}")
BACKGROUND_TEMPLATES = ("the background", "the {background} background", "background")
KINDS = ("shape", "background")
NEGATIVE_FRACTION = 0.25  # of training queries name something the image does not show
GREY_LEVELS = (50, 205, 80)  # a grey image's two levels: drawn in [50, 205], at least 80 apart


@dataclass(frozen=True)
class MaskItem:
    """An image, a query, and the query's true region: (H, W) floats in [0, 1], 1 where it matches."""

    image: Image.Image
    query: str
    target: np.ndarray
    spec: ShapeSpec


def coverage(image: Image.Image, spec: ShapeSpec) -> np.ndarray:
    """How much of each pixel of ``image`` (drawn from ``spec``) is the shape: (H, W) in [0, 1]."""
    px = np.asarray(image.convert("RGB"), dtype=np.float32)
    fg = np.array(PALETTE[spec.colour], dtype=np.float32)
    bg = np.array(PALETTE[spec.background], dtype=np.float32)
    d = fg - bg
    return np.clip(((px - bg) @ d) / float(d @ d), 0.0, 1.0)


def queries(spec: ShapeSpec) -> dict[str, list[str]]:
    """Every query of the templates for ``spec``, by what it asks for: ``shape``, ``background`` or ``none``."""
    out: dict[str, list[str]] = {"shape": [], "background": [], "none": []}
    for t in SHAPE_TEMPLATES:
        for colour in COLOURS:
            for shape in SHAPES:
                q = t.format(colour=colour, shape=shape)
                right = ("{colour}" not in t or colour == spec.colour) and ("{shape}" not in t or shape == spec.shape)
                out["shape" if right else "none"].append(q)
    for t in BACKGROUND_TEMPLATES:
        for colour in COLOURS:
            q = t.format(background=colour)
            out["background" if "{background}" not in t or colour == spec.background else "none"].append(q)
    return {k: sorted(set(v)) for k, v in out.items()}


def names_no_colour(query: str) -> bool:
    """Whether ``query`` names no colour: what a grey image can still answer (``the circle``, ``the shape``)."""
    return not any(colour in query.split() for colour in COLOURS)


def names_kind(query: str) -> bool:
    """Whether ``query`` names a shape's kind (``the circle``, ``the red circle``)."""
    return any(shape in query.split() for shape in SHAPES)


def grey(cover: np.ndarray, rng: random.Random) -> Image.Image:
    """The drawing of ``cover`` in two greys drawn from ``rng`` (:data:`GREY_LEVELS`): the outline without its colours."""
    low, high, gap = GREY_LEVELS
    while True:
        fg, bg = rng.randint(low, high), rng.randint(low, high)
        if abs(fg - bg) >= gap:
            break
    px = np.rint(bg + (fg - bg) * cover).astype(np.uint8)
    return Image.fromarray(np.repeat(px[..., None], 3, axis=2))


def item_for(combo: Combination, rng: random.Random, kind: str, resolution: int = 64,
             grey_fraction: float = 0.0) -> MaskItem:
    """``combo`` drawn anew and a query of ``kind`` (``shape``, ``background``, ``none``) drawn from ``rng``.

    With ``grey_fraction`` > 0, the image of a query that names no colour is drawn in greys that often,
    and always when the query names a kind the image does not show. Without it the data teaches a
    shortcut: a held-out pair (a purple triangle) never appears, so "the triangle" on a purple image is
    always absent, and the colour alone answers; the model then finds nothing on a held-out pair's
    image. In greys the kind must be read from the outline, and on coloured images a query naming a
    kind is always present, so colour no longer tells whether it is.
    """
    drawn = render(combo, rng, resolution)
    cover = coverage(drawn.image, drawn.spec)
    query = rng.choice(queries(drawn.spec)[kind])
    target = {"shape": cover, "background": 1.0 - cover, "none": np.zeros_like(cover)}[kind]
    image = drawn.image
    if grey_fraction and names_no_colour(query):
        if (kind == "none" and names_kind(query)) or rng.random() < grey_fraction:
            image = grey(cover, rng)
    return MaskItem(image, query, target, drawn.spec)


def training_batch(seed: int, index: int, size: int, resolution: int = 64,
                   grey_fraction: float = 0.0) -> list[MaskItem]:
    """Batch ``index`` of a run seeded ``seed``: seen combinations only, queries of every kind
    (``grey_fraction``: see :func:`item_for`)."""
    rng = random.Random(seed * 1_000_003 + index)
    seen = combinations(held_out=False)
    out = []
    for _ in range(size):
        kind = "none" if rng.random() < NEGATIVE_FRACTION else rng.choice(KINDS)
        out.append(item_for(rng.choice(seen), rng, kind, resolution, grey_fraction))
    return out


def evaluation_items(held_out: bool, kind: str, n: int = 64, seed: int = EVAL_SEED) -> list[MaskItem]:
    """``n`` images of the seen or held-out combinations (both styles, a fixed shuffled cycle), each
    with a query of ``kind``; the same images for every kind."""
    pool = combinations(held_out)
    rng = random.Random(seed + held_out)
    rng.shuffle(pool)
    picks = random.Random(seed + 7 + KINDS.index(kind) if kind in KINDS else seed + 9)
    out = []
    for i in range(n):
        drawn = render(pool[i % len(pool)], rng)
        cover = coverage(drawn.image, drawn.spec)
        target = {"shape": cover, "background": 1.0 - cover, "none": np.zeros_like(cover)}[kind]
        out.append(MaskItem(drawn.image, picks.choice(queries(drawn.spec)[kind]), target, drawn.spec))
    return out


def iou(predicted: np.ndarray, target: np.ndarray) -> float:
    """Intersection over union of two masks, each read as "more than half"; 1.0 when both are empty."""
    p, t = predicted > 0.5, target > 0.5
    union = np.logical_or(p, t).sum()
    return float(np.logical_and(p, t).sum() / union) if union else 1.0
