"""Video on the one loop: the frames of a clip are one sample with a time axis.

A clip of ``F`` frames is a batch of ``F`` latents (each frame's noise from its own seed, ``seed + k``)
that the model sees together, so the motion modules hooked onto the UNet
(:mod:`gouache.adapters.motion`) attend across them. :class:`FrameAxis` is a wrapper around the
model call, as every other model-specific feature is: guidance, samplers, ControlNet residuals,
LoRA and previews are unchanged.

More frames than the motion adapter saw in training run in **context windows**: overlapping runs
of ``length`` frames, ``length - overlap`` apart, the last one flush with the end (or wrapping round
to the start, for a closed loop); each frame's prediction is the average of its windows',
weighted by a pyramid (highest in a window's middle) — AnimateDiff-Evolved's context windows
with their pyramid fuse, and the A1111 AnimateDiff extension's ``batch_size``/``overlap``. In the
``uniform`` schedule (the default) the windows move from one sampling step to the next
(:func:`step_shift`), so no frame is a window's edge at every step and a seam one step leaves, the
next blends over; ``static`` keeps them where they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gouache.prompts.conditioning import Conditioning


CONTEXT_SCHEDULES = ("uniform", "static")  # AnimateDiff-Evolved's names; uniform: the windows move each step


def context_windows(frames: int, length: int, overlap: int, closed_loop: bool = False, shift: int = 0) -> list[list[int]]:
    """The frame indices of each window: ``length`` frames, each window ``length - overlap`` after the
    last, the first at frame ``shift`` (and one at frame 0 before it); the last flush with the end (so
    every window is full), or with ``closed_loop`` running past the end round to the first frames.
    One window when the clip fits.

    >>> context_windows(10, 4, 1)
    [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    >>> context_windows(10, 4, 1, shift=2)
    [[0, 1, 2, 3], [2, 3, 4, 5], [5, 6, 7, 8], [6, 7, 8, 9]]
    >>> context_windows(8, 4, 2, closed_loop=True)
    [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 0, 1]]
    """
    if frames <= length:
        return [list(range(frames))]
    stride = max(length - overlap, 1)
    if closed_loop:
        return [[(shift + s + i) % frames for i in range(length)] for s in range(0, frames, stride)]
    starts = sorted({0, frames - length} | set(range(shift % stride, frames - length, stride)))
    return [list(range(s, s + length)) for s in starts]


def step_shift(step: int, stride: int) -> int:
    """How far the windows of sampling step ``step`` move (``uniform`` schedule): the step's bits
    reversed as a binary fraction of ``stride`` — 0, 1/2, 1/4, 3/4, 1/8, … — so that consecutive steps
    put their window boundaries far apart and every frame is a boundary as rarely as can be (the
    A1111 AnimateDiff extension and AnimateDiff-Evolved shift their uniform windows by this sequence).

    >>> [step_shift(k, 8) for k in range(6)]
    [0, 4, 2, 6, 1, 5]
    """
    fraction, weight = 0.0, 0.5
    while step:
        fraction += weight * (step & 1)
        step, weight = step >> 1, weight / 2
    return int(fraction * stride)


def pyramid(length: int) -> torch.Tensor:
    """Weights across a window: 1, 2, ... up to its middle, and down again (never 0)."""
    i = torch.arange(length, dtype=torch.float32)
    return torch.minimum(i + 1, length - i)


@dataclass
class FrameAxis:
    """The model call of a clip: the UNet's batch holds ``parts`` runs of ``frames`` frames (one per
    classifier-free guidance part); each window's frames of every part go through the UNet together,
    ``counter.n`` telling the motion modules how many frames a run has. ``windows`` are lists of frame
    indices (:func:`context_windows`; one window: the whole clip at once)."""

    frames: int
    windows: list[list[int]]
    counter: object  # gouache.adapters.motion.FrameCount, or None (no motion modules)
    moving: tuple | None = None  # (length, overlap, closed_loop): the windows move each step (uniform schedule)

    def windows_at(self, step: int) -> list[list[int]]:
        """The windows sampling step ``step`` runs in: :attr:`windows`, moved by :func:`step_shift`
        when :attr:`moving`."""
        if self.moving is None or len(self.windows) == 1:
            return self.windows
        length, overlap, closed_loop = self.moving
        return context_windows(self.frames, length, overlap, closed_loop, step_shift(step, max(length - overlap, 1)))

    def model_call(self, call):
        """``call`` (a :data:`gouache.sampling.guidance.ModelCall`) made to run in windows and
        averaged where they overlap."""

        def windowed(x: torch.Tensor, t: torch.Tensor, c: Conditioning, step: int = 0, slot: int = 0) -> torch.Tensor:
            parts = x.shape[0] // self.frames
            assert parts * self.frames == x.shape[0], (x.shape, self.frames)
            if len(self.windows) == 1 and len(self.windows[0]) == self.frames:
                self._set(self.frames)
                return call(x, t, c, step, slot)
            out = torch.zeros_like(x, dtype=torch.float32)
            weight = torch.zeros(x.shape[0], 1, 1, 1)
            for window in self.windows_at(step):
                rows = torch.tensor([p * self.frames + f for p in range(parts) for f in window])
                w = pyramid(len(window)).repeat(parts).view(-1, 1, 1, 1)
                self._set(len(window))
                eps = call(x[rows], t, _rows(c, rows), step, slot)
                out.index_add_(0, rows, eps.float() * w)
                weight.index_add_(0, rows, w)
            return (out / weight).to(x.dtype)

        return windowed

    def _set(self, n: int) -> None:
        if self.counter is not None:
            self.counter.n = n


def _rows(c: Conditioning, rows: torch.Tensor) -> Conditioning:
    pick = lambda t: None if t is None else t[rows]  # noqa: E731
    images = None if c.image_embeds is None else tuple(e[rows] for e in c.image_embeds)
    return Conditioning(pick(c.hidden), pick(c.pooled), pick(c.time_ids), images)


def window_jumps(frames: torch.Tensor, windows: list[list[int]]) -> tuple[float, float]:
    """``(largest change between neighbouring frames at a window boundary, largest change between
    neighbouring frames elsewhere)``, a change being the mean absolute difference of two consecutive
    frames of ``frames`` (``(F, ...)``: pixels or latents). A boundary is where a window starts or
    ends: the seam a bad blend would show.

    >>> window_jumps(torch.arange(8.0).view(8, 1), context_windows(8, 4, 2))
    (1.0, 1.0)
    """
    diffs = (frames[1:].float() - frames[:-1].float()).abs().flatten(1).mean(1)
    starts = {w[0] for w in windows[1:]} | {w[-1] + 1 for w in windows[:-1]}
    boundary = [k for k in range(1, frames.shape[0]) if k in starts]
    inner = [k for k in range(1, frames.shape[0]) if k not in starts]
    at = max((float(diffs[k - 1]) for k in boundary), default=0.0)
    within = max((float(diffs[k - 1]) for k in inner), default=0.0)
    return at, within
