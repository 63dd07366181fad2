"""Read a shapes image back and score generations against their prompts.

The judge knows the dataset's rules (:mod:`gouache.tiny.shapes`): one shape in one of 8 palette
colours on a plain background of another. It reads

* the **background** from the image border (its most common palette colour),
* the **shape's colour** from the pixels inside the shape, away from its blended edge (most
  common palette colour),
* the **shape's kind** from its geometry, in a way that survives the soft edges and rounded corners
  a VAE gives: a triangle (drawn apex up) is much narrower in the top third of its bounding box
  than in the bottom third; of the symmetric shapes, a square fills the corners of its bounding
  box and a circle leaves them empty. The geometry is read from the shape with its holes filled,
  so an outline has the same kind as the filled shape,
* the **style**: how much of its hole-filled area the shape's colour covers; a filled shape about
  all of it, an outline (:data:`~gouache.tiny.shapes.OUTLINE_WIDTH` wide) a ring of 25-84 %.

>>> from gouache.tiny.shapes import ShapesDataset
>>> item = ShapesDataset(seed=1)[0]
>>> read_image(item.image).as_tuple() == (item.spec.colour, item.spec.shape, item.spec.background)
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy.ndimage import binary_fill_holes

from gouache.tiny.shapes import COLOURS, HELD_OUT, PALETTE, SHAPES

_PALETTE = np.array([PALETTE[c] for c in COLOURS], dtype=np.float32)
_CAPTION = re.compile(r"^a (\w+) (\w+) on a (\w+) background$")
MIN_SHAPE_FRACTION = 0.03  # a "shape" smaller than 3 % of the image is noise, not a shape


@dataclass(frozen=True)
class Reading:
    colour: str | None
    shape: str | None
    background: str
    taper: float = 0.0  # mean width of the top third of the shape / of the bottom third
    corners: float = 0.0  # fraction of the bounding box's four corner cells the shape covers
    fill: float = 1.0  # fraction of the shape's hole-filled area in the shape's colour

    @property
    def style(self) -> str | None:
        if self.shape is None:
            return None
        return "outline" if self.fill < FILL_OUTLINE else "filled"

    def as_tuple(self) -> tuple[str | None, str | None, str]:
        return (self.colour, self.shape, self.background)


def _nearest(pixels: np.ndarray) -> np.ndarray:
    """Index of the nearest palette colour for each RGB pixel (..., 3)."""
    d = ((pixels[..., None, :].astype(np.float32) - _PALETTE) ** 2).sum(-1)
    return d.argmin(-1)


def _majority_filter(mask: np.ndarray) -> np.ndarray:
    """Keep pixels with at least 5 of their 3×3 neighbourhood set: removes specks and thin fringes."""
    p = np.pad(mask.astype(np.int32), 1)
    h, w = mask.shape
    total = sum(p[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))
    return total >= 5


TAPER_TRIANGLE = 0.68  # ideal triangles give about 0.2-0.3, circles and squares about 1.0
# Both thresholds sit midway between the classes as measured on the dataset and on its VAE
# reconstructions (blurred corners: triangles up to 0.53, small circles up to 0.55 corners).
CORNERS_SQUARE = 0.62  # ideal squares give about 1.0, circles 0.15-0.4


FILL_OUTLINE = 0.88  # drawn outlines cover 0.25-0.84 of the region they enclose (small triangles the most), filled shapes 1.0


def _erode(mask: np.ndarray) -> np.ndarray:
    """Pixels whose whole 3×3 neighbourhood is set."""
    p = np.pad(mask, 1)
    h, w = mask.shape
    out = np.ones_like(mask)
    for dy in range(3):
        for dx in range(3):
            out &= p[dy : dy + h, dx : dx + w]
    return out


def classify(taper: float, corners: float) -> str:
    if taper < TAPER_TRIANGLE:
        return "triangle"
    return "square" if corners >= CORNERS_SQUARE else "circle"


def _geometry(mask: np.ndarray) -> tuple[float, float]:
    """(taper, corners) of the largest shape in a boolean mask; see :class:`Reading`."""
    ys, xs = np.nonzero(mask)
    box = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = box.shape
    widths = box.sum(axis=1).astype(np.float32)
    third = max(h // 3, 1)
    taper = float(widths[:third].mean() / max(widths[-third:].mean(), 1e-6))
    ch, cw = max(h // 4, 1), max(w // 4, 1)
    cells = [box[:ch, :cw], box[:ch, -cw:], box[-ch:, :cw], box[-ch:, -cw:]]
    corners = float(np.mean([c.mean() for c in cells]))
    return taper, corners


def read_image(image: Image.Image) -> Reading:
    """What the judge sees in one image."""
    arr = np.asarray(image.convert("RGB"))
    h, w, _ = arr.shape
    labels = _nearest(arr)
    border = np.concatenate([labels[:2].ravel(), labels[-2:].ravel(), labels[:, :2].ravel(), labels[:, -2:].ravel()])
    bg = int(np.bincount(border, minlength=len(COLOURS)).argmax())
    fg = labels != bg
    counts = np.bincount(labels[fg], minlength=len(COLOURS))
    if counts.sum() < MIN_SHAPE_FRACTION * h * w:
        return Reading(None, None, COLOURS[bg])
    # Where shape meets background, soft edges mix the two (yellow on red blurs to orange): take
    # the colour from the shape's interior, the foreground eroded away from its border.
    inner = _erode(_erode(fg))
    if inner.sum() >= 0.25 * fg.sum():
        counts = np.bincount(labels[inner], minlength=len(COLOURS))
    colour = int(counts.argmax())
    mask = _majority_filter(labels == colour)
    if mask.sum() < MIN_SHAPE_FRACTION * h * w:
        return Reading(COLOURS[colour], None, COLOURS[bg])
    # Style from everything that is not background: an outline's soft edges blend into other palette
    # colours (yellow on blue reads orange and purple at its rims), so its own colour alone leaves gaps.
    shape = _majority_filter(fg)
    region = _filled(shape)
    fill = float((shape & region).sum() / max(region.sum(), 1))
    if fill < FILL_OUTLINE:  # an outline's kind is the kind of the region it encloses
        taper, corners = _geometry(region)
    else:
        taper, corners = _geometry(mask)
    return Reading(COLOURS[colour], classify(taper, corners), COLOURS[bg], taper, corners, fill)


def shape_mask(image: Image.Image) -> np.ndarray:
    """Where the shape is: the pixels whose palette colour is not the background's (read from the
    border, as :func:`read_image` does), specks removed, the largest piece kept. Empty when the
    image holds no shape.

    >>> from gouache.tiny.shapes import ShapesDataset
    >>> shape_mask(ShapesDataset(seed=1)[0].image).any()
    True
    """
    labels = _nearest(np.asarray(image.convert("RGB")))
    border = np.concatenate([labels[:2].ravel(), labels[-2:].ravel(), labels[:, :2].ravel(), labels[:, -2:].ravel()])
    fg = _majority_filter(labels != np.bincount(border).argmax())
    if fg.sum() < MIN_SHAPE_FRACTION * fg.size:
        return np.zeros_like(fg)
    return _largest_component(fg)


CLOSE_GAPS = 3  # px: an outline whose palette reading has gaps up to twice this wide still encloses its inside


def _filled(mask: np.ndarray) -> np.ndarray:
    """The largest shape of ``mask`` with its inside filled, small gaps in its outline bridged first
    (a dilation, hole filling, and the same erosion back)."""
    from scipy.ndimage import binary_dilation, binary_erosion

    grown = binary_dilation(mask, iterations=CLOSE_GAPS)
    filled = binary_erosion(binary_fill_holes(grown), iterations=CLOSE_GAPS, border_value=0) | mask
    return _largest_component(filled)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import label

    labels, n = label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == sizes.argmax()


def parse_prompt(prompt: str) -> tuple[str, str, str]:
    """``"a red circle on a blue background"`` → ``("red", "circle", "blue")``."""
    m = _CAPTION.match(prompt.strip().lower())
    if not m or m[1] not in PALETTE or m[2] not in SHAPES or m[3] not in PALETTE:
        raise ValueError(
            f"the judge reads prompts of the form 'a <colour> <shape> on a <colour> background' "
            f"with colours {', '.join(COLOURS)} and shapes {', '.join(SHAPES)}; got {prompt!r}"
        )
    return m[1], m[2], m[3]


@dataclass
class Score:
    n: int = 0
    colour: int = 0
    shape: int = 0
    background: int = 0
    all_three: int = 0
    outline: int = 0  # images the judge reads as outlines (see Reading.style)
    failures: list[tuple[str, tuple]] = field(default_factory=list)
    clip_score: float | None = None  # mean CLIP score against the prompts (gouache.vision.clip), when asked for

    def add(self, prompt: str, reading: Reading) -> None:
        want = parse_prompt(prompt)
        got = reading.as_tuple()
        ok = [a == b for a, b in zip(want, got)]
        self.n += 1
        self.colour += ok[0]
        self.shape += ok[1]
        self.background += ok[2]
        self.all_three += all(ok)
        self.outline += reading.style == "outline"
        if not all(ok):
            self.failures.append((prompt, got))

    def rate(self, attr: str = "all_three") -> float:
        return getattr(self, attr) / self.n if self.n else 0.0

    def summary(self) -> str:
        return (
            f"{self.n} images: all three {self.rate():.1%} (colour {self.rate('colour'):.1%}, "
            f"shape {self.rate('shape'):.1%}, background {self.rate('background'):.1%}); "
            f"outlines {self.rate('outline'):.1%}"
        ) + ("" if self.clip_score is None else f"; CLIP score {self.clip_score:.2f}")


def score(images: list[Image.Image], prompts: list[str]) -> Score:
    """Score a batch of images against the prompts they were generated from."""
    if len(images) != len(prompts):
        raise ValueError(f"got {len(images)} images but {len(prompts)} prompts")
    s = Score()
    for image, prompt in zip(images, prompts):
        s.add(prompt, read_image(image))
    return s


def evaluation_prompts(held_out: bool, n: int = 64, seed: int = 0) -> list[str]:
    """``n`` prompts for the seen pairs or for the held-out pairs, backgrounds cycled evenly."""
    import random

    from gouache.tiny.shapes import all_prompts, caption

    triples = all_prompts(held_out)
    rng = random.Random(seed)
    rng.shuffle(triples)
    return [caption(*triples[i % len(triples)]) for i in range(n)]


def is_held_out(prompt: str) -> bool:
    c, s, _ = parse_prompt(prompt)
    return (c, s) in HELD_OUT
