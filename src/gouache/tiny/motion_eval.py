"""Judge clips of the shapes world in motion against their captions: the video bars of issue #22.

A clip (a list of frames) made for ``a {colour} {shape} on a {background} background, moving
{direction}`` (either caption form of :data:`gouache.tiny.motion.CAPTION_FORMS`) is judged on three
counts:

* **frames right**: each frame read by :func:`gouache.tiny.judge.read_image` has the caption's
  colour, shape and background;
* **consistent**: every frame shows a shape, and the same colour and kind in all of them (right or
  not: this is about flicker, the frames-right figure about the prompt);
* **moving the named way**: the shape's centre (the centroid of the non-background pixels,
  :func:`gouache.tiny.judge.shape_mask`) travels, from the first frame to the last, at least
  :data:`MIN_TRAVEL` (a quarter of the image side) in the named direction and more along it than
  across it, and no frame-to-frame step goes back against it by more than :data:`TOLERANCE`
  (1/32 of the side: 2 px at 64×64, the jitter a VAE's soft edges give the centroid). A frame
  without a shape fails the clip.

:func:`motion_bars` gives the figures for a list of clips, split into seen and held-out
colour-shape pairs (:data:`gouache.tiny.shapes.HELD_OUT`).

>>> from gouache.tiny.motion import MotionDataset
>>> clip = MotionDataset(seed=0)[0]
>>> j = judge_clip(clip.frames, clip.caption)
>>> (j.frames_right, j.consistent, j.moving)
(16, True, True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from gouache.tiny.judge import Reading, read_image, shape_mask
from gouache.tiny.motion import DIRECTIONS
from gouache.tiny.shapes import COLOURS, HELD_OUT, SHAPES

MIN_TRAVEL = 0.25  # of the image side, first frame to last, in the named direction
TOLERANCE = 1 / 32  # of the image side: the most a frame-to-frame step may go back
# issue #22's bars: share of frames right, of clips consistent, of clips moving the named way
BARS = {"frames_right": {"seen": 0.90, "held_out": 0.80}, "consistent": {"seen": 0.90, "held_out": 0.90},
        "moving": {"seen": 0.85, "held_out": 0.70}}
# the two caption forms of gouache.tiny.motion.CAPTION_FORMS, as (colour, shape, direction, background)
_END = re.compile(r"^a (\w+) (\w+) on a (\w+) background, moving (\w+)$")
_MIDDLE = re.compile(r"^a (\w+) (\w+) moving (\w+) on a (\w+) background$")


def parse_motion_prompt(prompt: str) -> tuple[str, str, str, str]:
    """``"a red circle on a blue background, moving left"`` (or ``"a red circle moving left on a blue
    background"``) → ``("red", "circle", "left", "blue")``."""
    text = prompt.strip().lower()
    m = _END.match(text)
    parts = (m[1], m[2], m[4], m[3]) if m else None
    if parts is None and (m := _MIDDLE.match(text)):
        parts = (m[1], m[2], m[3], m[4])
    if parts is None or parts[0] not in COLOURS or parts[1] not in SHAPES or parts[2] not in DIRECTIONS \
            or parts[3] not in COLOURS:
        raise ValueError(
            f"clips are judged on prompts of the form 'a <colour> <shape> on a <colour> background, moving "
            f"<direction>' (or 'a <colour> <shape> moving <direction> on a <colour> background') with colours "
            f"{', '.join(COLOURS)}, shapes {', '.join(SHAPES)} and directions {', '.join(DIRECTIONS)}; got {prompt!r}")
    return parts


def centre(image: Image.Image) -> tuple[float, float] | None:
    """The shape's centroid (x, y) in pixels, or None when the frame shows no shape."""
    ys, xs = np.nonzero(shape_mask(image))
    return (float(xs.mean()), float(ys.mean())) if len(xs) else None


@dataclass(frozen=True)
class Motion:
    """How a clip's shape moved, in pixels, measured in the named direction."""

    travel: float  # first frame to last, along the named direction (negative: the other way)
    drift: float  # first frame to last, across it (absolute)
    back: float  # the largest frame-to-frame step against the direction (0 if none)

    def named_way(self, side: int) -> bool:
        return self.travel >= MIN_TRAVEL * side and self.drift < self.travel and self.back <= TOLERANCE * side


def motion(centres: list[tuple[float, float] | None], direction: str) -> Motion | None:
    """The motion of a clip's centres in ``direction``; None when a frame has no shape."""
    if any(c is None for c in centres) or len(centres) < 2:
        return None
    dx, dy = DIRECTIONS[direction]
    along = np.array([x * dx + y * dy for x, y in centres])  # position measured in the direction
    across = np.array([x * abs(dy) + y * abs(dx) for x, y in centres])
    steps = np.diff(along)
    return Motion(float(along[-1] - along[0]), float(abs(across[-1] - across[0])), float(max(0.0, -steps.min())))


@dataclass(frozen=True)
class ClipJudgement:
    """What the judge found in one clip."""

    frames: int
    frames_right: int  # frames whose colour, shape and background are the caption's
    consistent: bool  # a shape in every frame, the same colour and kind in all
    moving: bool  # the centre moved the named way (see the module docstring)
    motion: Motion | None  # None: some frame has no shape
    readings: tuple[Reading, ...]


def judge_clip(frames: list[Image.Image], prompt: str) -> ClipJudgement:
    """Judge ``frames`` against the caption they were made from (see the module docstring)."""
    colour, shape, direction, background = parse_motion_prompt(prompt)
    if not frames:
        raise ValueError("a clip needs at least one frame")
    readings = tuple(read_image(f) for f in frames)
    right = sum(r.as_tuple() == (colour, shape, background) for r in readings)
    kinds = {(r.colour, r.shape) for r in readings}
    consistent = len(kinds) == 1 and None not in next(iter(kinds))
    moved = motion([centre(f) for f in frames], direction)
    side = frames[0].size[0] if direction in ("left", "right") else frames[0].size[1]
    return ClipJudgement(len(frames), right, consistent, moved is not None and moved.named_way(side), moved, readings)


@dataclass
class MotionScore:
    """The bars' counts over a set of clips."""

    clips: int = 0
    frames: int = 0
    frames_right: int = 0
    consistent: int = 0
    moving: int = 0
    misses: list = field(default_factory=list)  # (prompt, what went wrong) of the first few clips that failed

    def add(self, prompt: str, j: ClipJudgement) -> None:
        self.clips, self.frames = self.clips + 1, self.frames + j.frames
        self.frames_right += j.frames_right
        self.consistent += j.consistent
        self.moving += j.moving
        if (j.frames_right < j.frames or not j.consistent or not j.moving) and len(self.misses) < 8:
            m = j.motion
            how = "a frame without a shape" if m is None else f"travel {m.travel:.1f}px drift {m.drift:.1f}px back {m.back:.1f}px"
            self.misses.append((prompt, f"{j.frames_right}/{j.frames} frames right, "
                                        f"{'consistent' if j.consistent else 'inconsistent'}, {how}"))

    def as_dict(self) -> dict:
        n, f = max(self.clips, 1), max(self.frames, 1)
        return {"clips": self.clips, "frames_right": round(self.frames_right / f, 4),
                "consistent": round(self.consistent / n, 4), "moving": round(self.moving / n, 4)}

    def summary(self) -> str:
        d = self.as_dict()
        return (f"{d['clips']} clips: frames right {d['frames_right']:.1%}, consistent {d['consistent']:.1%}, "
                f"moving the named way {d['moving']:.1%}")


def motion_bars(clips: list[tuple[list[Image.Image], str]]) -> dict[str, MotionScore]:
    """``{"seen": MotionScore, "held_out": MotionScore}`` for ``(frames, prompt)`` pairs, split by
    whether the prompt's colour-shape pair is held out.

    >>> from gouache.tiny.motion import evaluation_specs, render
    >>> specs = evaluation_specs(held_out=True, n=4)
    >>> motion_bars([(render(s), s.caption) for s in specs])["held_out"].as_dict()["moving"]
    1.0
    """
    scores = {"seen": MotionScore(), "held_out": MotionScore()}
    for frames, prompt in clips:
        colour, shape, _, _ = parse_motion_prompt(prompt)
        scores["held_out" if (colour, shape) in HELD_OUT else "seen"].add(prompt, judge_clip(frames, prompt))
    return scores


def passes(scores: dict[str, MotionScore]) -> dict[str, bool]:
    """Which of :data:`BARS` the figures reach (a set with no clips reaches none)."""
    out = {}
    for figure, bars in BARS.items():
        for name, bar in bars.items():
            d = scores[name].as_dict()
            out[f"{figure} ({name})"] = scores[name].clips > 0 and d[figure] >= bar
    return out
