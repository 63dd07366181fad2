"""The shapes world in motion: clips that gouache-tiny's motion adapter trains on.

A clip is ``frames`` frames (16 by default) of one shape of the shapes world
(:mod:`gouache.tiny.shapes`) sliding left, right, up or down at constant speed over a plain
background, by 30-45 % of the image side over the clip (the bar asks for a quarter), captioned
``a {colour} {shape} on a {background} background, moving {direction}`` (or in issue #22's form,
``a {colour} {shape} moving {direction} on a {background} background``: see :data:`CAPTION_FORMS`). The shape keeps its colour,
kind and size; its size is in the image model's range (38-50 % of the side, so it has room to
travel). The three held-out colour-shape pairs (:data:`~gouache.tiny.shapes.HELD_OUT`) never appear
in :class:`MotionDataset`; :func:`evaluation_specs` draws clips of either set for measurements.

Every clip is derived from ``(seed, index)`` alone (the nanoGPT habit of a dataset made from its
index), so a resumed run sees the same clips.

>>> clip = MotionDataset(seed=0)[5]
>>> len(clip.frames), clip.frames[0].size, clip.caption          # doctest: +SKIP
(16, (64, 64), 'a red circle on a blue background, moving left')
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from gouache.tiny.shapes import COLOURS, HELD_OUT, SHAPES, STYLES, ShapeSpec, draw, random_spec

# direction -> unit step in image coordinates (y grows downwards)
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
FRAMES = 16
SIZE_RANGE = (0.38, 0.50)  # of the image side: the lower part of the image dataset's 0.38-0.72
TRAVEL_RANGE = (0.30, 0.45)  # distance travelled over the clip, of the image side
# an "either way" clip starts where it could go either way along its axis, so its start says nothing of
# the direction and only the words do: smaller shapes (no smaller than the judge reads well through the
# VAE: 20 px of 64) up to a largest size (the larger, the better the held-out pairs are drawn, the less
# room to travel), a travel as long as the room from the middle to the edge allows (at most half of it)
EITHER_WAY_SIZE = (0.31, 0.38)
EITHER_WAY_TRAVEL = (0.30, 0.34)


# Where a caption says the direction. "middle" is issue #22's form; but gouache-tiny's frozen text
# encoder never saw a word between the shape and "on a ... background", and with one there the image
# model gets the background wrong (1 of 12 images right, against 12 of 12 for "end": the image
# caption's tokens stay as trained, its text encoder being causal, and the direction follows them).
CAPTION_FORMS: dict[str, str] = {
    "end": "a {colour} {shape} on a {background} background, moving {direction}",
    "middle": "a {colour} {shape} moving {direction} on a {background} background",
}
DEFAULT_FORM = "end"


def motion_caption(colour: str, shape: str, direction: str, background: str, form: str = DEFAULT_FORM) -> str:
    """``a red circle on a blue background, moving left`` (``form`` "end") or ``a red circle moving
    left on a blue background`` ("middle"); see :data:`CAPTION_FORMS`."""
    if form not in CAPTION_FORMS:
        raise ValueError(f"unknown caption form {form!r}; choose one of {', '.join(CAPTION_FORMS)}")
    return CAPTION_FORMS[form].format(colour=colour, shape=shape, direction=direction, background=background)


@dataclass(frozen=True)
class MotionSpec:
    """A clip: the shape at its first frame, where it goes and in how many frames."""

    start: ShapeSpec
    direction: str
    travel: float  # pixels moved from the first frame to the last
    frames: int = FRAMES

    @property
    def caption(self) -> str:
        return self.captioned()

    def captioned(self, form: str = DEFAULT_FORM) -> str:
        """The caption in ``form`` (:data:`CAPTION_FORMS`); an outline clip's ends in ", outline style"."""
        s = self.start
        text = motion_caption(s.colour, s.shape, self.direction, s.background, form)
        return text if s.style == "filled" else f"{text}, {s.style} style"

    def at(self, frame: int) -> ShapeSpec:
        """The shape at ``frame`` (0 is the first)."""
        dx, dy = DIRECTIONS[self.direction]
        k = self.travel * frame / max(self.frames - 1, 1)
        return dataclasses.replace(self.start, cx=self.start.cx + dx * k, cy=self.start.cy + dy * k)


@dataclass(frozen=True)
class Clip:
    frames: list[Image.Image]
    caption: str
    spec: MotionSpec


def render(spec: MotionSpec, resolution: int = 64) -> list[Image.Image]:
    """The clip's frames."""
    return [draw(spec.at(f), resolution) for f in range(spec.frames)]


def random_motion(rng: random.Random, frames: int = FRAMES, resolution: int = 64, colour: str | None = None,
                  shape: str | None = None, background: str | None = None, direction: str | None = None,
                  include_held_out: bool = False, style: str = "filled", either_way: bool = False,
                  either_way_size: tuple[float, float] = EITHER_WAY_SIZE) -> MotionSpec:
    """Draw a clip; fixed attributes are kept, the others sampled (held-out pairs excluded unless
    ``include_held_out``). The shape starts where the whole path stays inside the image; with
    ``either_way``, where the path in the opposite direction would too, the shape's size drawn from
    ``either_way_size`` (fractions of the side; see :data:`EITHER_WAY_SIZE`)."""
    if direction is not None and direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; choose one of {', '.join(DIRECTIONS)}")
    base = random_spec(rng, resolution, colour, shape, background, include_held_out, style)
    direction = direction or rng.choice(tuple(DIRECTIONS))
    size = rng.uniform(*(either_way_size if either_way else SIZE_RANGE)) * resolution
    travel = rng.uniform(*(EITHER_WAY_TRAVEL if either_way else TRAVEL_RANGE)) * resolution
    lo, hi = size / 2 + 1, resolution - size / 2 - 1  # the centre's range: the shape whole in the image
    if either_way:  # the room both ways from the start: at most half the centre's range
        travel = min(travel, (hi - lo) / 2 - 0.5)
    dx, dy = DIRECTIONS[direction]
    # where the path starts, measured in its own direction (either way: a range symmetric about the middle)
    along = rng.uniform(lo + travel, hi - travel) if either_way else rng.uniform(lo, hi - travel)
    across = rng.uniform(lo, hi)
    if dx:
        cx, cy = (along if dx > 0 else resolution - along), across
    else:
        cx, cy = across, (along if dy > 0 else resolution - along)
    start = dataclasses.replace(base, cx=cx, cy=cy, size=size)
    return MotionSpec(start, direction, travel, frames)


class MotionDataset:
    """An unlimited, seeded dataset of clips (held-out pairs never appear); ``len()`` is nominal."""

    def __init__(self, seed: int = 0, frames: int = FRAMES, resolution: int = 64, length: int = 1_000_000,
                 outline: float = 0.0, form: str = DEFAULT_FORM, either_way: float = 0.0,
                 either_way_max_size: float = EITHER_WAY_SIZE[1]):
        if resolution < 64 or resolution % 8:
            raise ValueError(f"`resolution` must be a multiple of 8 and at least 64, got {resolution}")
        if frames < 2:
            raise ValueError(f"a clip needs at least 2 frames, got {frames}")
        if form not in CAPTION_FORMS:
            raise ValueError(f"unknown caption form {form!r}; choose one of {', '.join(CAPTION_FORMS)}")
        if not 0 <= either_way <= 1:
            raise ValueError(f"`either_way` is a fraction of the clips, from 0 to 1, got {either_way}")
        if not EITHER_WAY_SIZE[0] <= either_way_max_size <= 0.45:
            raise ValueError(f"`either_way_max_size` is the largest either-way shape, from {EITHER_WAY_SIZE[0]} (the "
                             f"smallest) to 0.45 of the side (room left to travel a quarter), got {either_way_max_size}")
        self.either_way_size = (EITHER_WAY_SIZE[0], either_way_max_size)
        self.form, self.either_way = form, either_way
        self.seed, self.frames, self.resolution, self.length, self.outline = seed, frames, resolution, length, outline

    def __len__(self) -> int:
        return self.length

    def spec(self, index: int) -> MotionSpec:
        rng = random.Random(self.seed * 1_000_003 + index)
        style = STYLES[1] if self.outline and rng.random() < self.outline else STYLES[0]
        either = bool(self.either_way) and rng.random() < self.either_way  # no draw at 0: the clips stay as they were
        return random_motion(rng, self.frames, self.resolution, style=style, either_way=either,
                             either_way_size=self.either_way_size)

    def __getitem__(self, index: int) -> Clip:
        spec = self.spec(index)
        return Clip(render(spec, self.resolution), spec.captioned(self.form), spec)

    def batch(self, start: int, size: int) -> tuple[np.ndarray, list[str]]:
        """Clips ``start`` .. ``start + size - 1`` as a float array in [-1, 1] of shape
        (N, F, 3, H, W), and their captions."""
        return clips_array([self[start + i].frames for i in range(size)]), [self[start + i].caption for i in range(size)]


def clips_array(clips: list[list[Image.Image]]) -> np.ndarray:
    """Frames of clips as one float array in [-1, 1] of shape (N, F, 3, H, W)."""
    arr = np.stack([np.stack([np.asarray(f.convert("RGB"), dtype=np.float32) for f in frames]) for frames in clips])
    return arr.transpose(0, 1, 4, 2, 3) / 127.5 - 1.0


def evaluation_specs(held_out: bool, n: int = 48, seed: int = 0, frames: int = FRAMES) -> list[MotionSpec]:
    """``n`` clips of the seen or of the held-out colour-shape pairs, the four directions in turn
    and the pairs cycled evenly: the fixed set measurements are made on."""
    pairs = sorted(HELD_OUT) if held_out else [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in HELD_OUT]
    rng = random.Random(seed * 1_000_003 + (7 if held_out else 3))
    rng.shuffle(pairs)
    directions = tuple(DIRECTIONS)
    return [random_motion(rng, frames, colour=pairs[k % len(pairs)][0], shape=pairs[k % len(pairs)][1],
                          direction=directions[k % len(directions)], include_held_out=True) for k in range(n)]


def evaluation_prompts(held_out: bool, n: int = 48, seed: int = 0, form: str = DEFAULT_FORM) -> list[str]:
    """The captions of :func:`evaluation_specs`: the prompts a video model is judged on."""
    return [spec.captioned(form) for spec in evaluation_specs(held_out, n, seed)]
