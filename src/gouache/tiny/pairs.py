"""The shapes world as (image, caption) pairs, for the built-in CLIP and captioner.

Every caption of the world (:func:`every_caption`: 8 colours × 3 shapes × 7 backgrounds × 2 styles
= 336) is one combination; :data:`~gouache.tiny.shapes.HELD_OUT` colour-shape pairs are split off
(42 captions) and never trained on. A training batch (:func:`training_batch`) is derived from its
index and a seed alone, so a resumed run sees the same batches; its captions are all different,
which keeps CLIP's contrastive loss exact (no two rows of a batch are the same caption). The
evaluation sets (:func:`evaluation_items`) cycle through the seen or the held-out combinations
in a fixed shuffled order, drawn at positions and sizes from their own seed.

>>> len(every_caption()), len(combinations(held_out=False)), len(combinations(held_out=True))
(336, 294, 42)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from gouache.tiny.shapes import COLOURS, HELD_OUT, SHAPES, STYLES, ShapesItem, ShapeSpec, draw, random_spec

EVAL_SEED = 20_001  # far from any training seed


@dataclass(frozen=True)
class Combination:
    """What a caption names: a colour, a shape, a background and a style."""

    colour: str
    shape: str
    background: str
    style: str

    @property
    def held_out(self) -> bool:
        return (self.colour, self.shape) in HELD_OUT

    @property
    def caption(self) -> str:
        return ShapeSpec(self.colour, self.shape, self.background, 0, 0, 0, self.style).caption


def combinations(held_out: bool | None = None) -> list[Combination]:
    """Every combination in a fixed order; ``held_out`` True or False keeps only those pairs."""
    every = [Combination(c, s, bg, st) for st in STYLES for c in COLOURS for s in SHAPES for bg in COLOURS if bg != c]
    return [x for x in every if held_out is None or x.held_out == held_out]


def every_caption() -> list[str]:
    """The 336 captions of the world, seen and held-out alike: what zero-shot ranking picks from."""
    return [x.caption for x in combinations()]


def render(combo: Combination, rng: random.Random, resolution: int = 64) -> ShapesItem:
    """``combo`` drawn at a position and size drawn from ``rng``."""
    spec = random_spec(rng, resolution, combo.colour, combo.shape, combo.background, include_held_out=True,
                       style=combo.style)
    return ShapesItem(draw(spec, resolution), spec.caption, spec)


def training_batch(seed: int, index: int, size: int, resolution: int = 64) -> list[ShapesItem]:
    """Batch ``index`` of a run seeded ``seed``: ``size`` different seen combinations (at most 294),
    each drawn anew. Held-out pairs never appear."""
    seen = combinations(held_out=False)
    if not 1 <= size <= len(seen):
        raise ValueError(f"a batch of different captions holds 1 to {len(seen)} items, got {size}")
    rng = random.Random(seed * 1_000_003 + index)
    return [render(combo, rng, resolution) for combo in rng.sample(seen, size)]


def evaluation_items(held_out: bool, n: int = 64, seed: int = EVAL_SEED) -> list[ShapesItem]:
    """``n`` images of the seen or held-out combinations, both styles, in a fixed shuffled cycle."""
    pool = combinations(held_out)
    rng = random.Random(seed + held_out)
    rng.shuffle(pool)
    return [render(pool[i % len(pool)], rng) for i in range(n)]
