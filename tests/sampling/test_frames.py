"""Context windows over a clip's frames, and the averaged model call across them."""

import pytest
import torch

from gouache.prompts.conditioning import Conditioning
from gouache.sampling.frames import FrameAxis, context_windows, step_shift, window_jumps


@pytest.mark.parametrize("frames,length,overlap,loop", [(16, 16, 4, False), (64, 16, 4, False), (17, 16, 4, False),
                                                         (40, 8, 0, False), (64, 16, 4, True), (10, 4, 3, False)])
@pytest.mark.parametrize("shift", [0, 1, 5, 11])
def test_windows_cover_every_frame_with_full_windows(frames, length, overlap, loop, shift):
    windows = context_windows(frames, length, overlap, loop, shift)
    assert sorted({f for w in windows for f in w}) == list(range(frames))
    assert all(len(w) == min(length, frames) for w in windows)
    for a, b in zip(windows, windows[1:]):  # neighbours share at least `overlap` frames
        assert len(set(a) & set(b)) >= min(overlap, length)


def test_a_closed_loop_wraps_round_to_the_first_frames():
    windows = context_windows(64, 16, 4, closed_loop=True)
    assert windows[-1][-1] < windows[-1][0]  # the last window runs past the end into frame 0...


def test_windowed_call_averages_to_the_call_when_windows_agree():
    """A model call that treats frames alone gives the same predictions however the clip is windowed."""
    frames, parts = 12, 2
    x = torch.randn(parts * frames, 4, 2, 2)
    c = Conditioning(torch.randn(1, 3, 5).expand(parts * frames, -1, -1))

    def call(x, t, c, step=0, slot=0):
        return x * 2 + c.hidden.mean()

    whole = FrameAxis(frames, [list(range(frames))], None).model_call(call)(x, torch.tensor(1), c)
    windowed = FrameAxis(frames, context_windows(frames, 5, 2), None).model_call(call)(x, torch.tensor(1), c)
    assert torch.allclose(whole, windowed, atol=1e-6)


def test_the_motion_modules_are_told_each_windows_length():
    from gouache.adapters.motion import FrameCount

    seen, counter = [], FrameCount()

    def call(x, t, c, step=0, slot=0):
        seen.append((x.shape[0], counter.n))
        return x

    axis = FrameAxis(10, context_windows(10, 4, 1), counter)
    axis.model_call(call)(torch.zeros(20, 1, 1, 1), torch.tensor(1), Conditioning(torch.zeros(20, 1, 1)))
    assert seen == [(8, 4), (8, 4), (8, 4)]  # two CFG parts of 4 frames, three windows


def test_window_jumps_finds_a_seam():
    frames = torch.cat([torch.zeros(6, 1), torch.full((6, 1), 5.0)]) + torch.arange(12.0).view(12, 1) * 0.1
    at, within = window_jumps(frames, [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]])
    assert at == pytest.approx(5.1, abs=1e-5) and within == pytest.approx(0.1, abs=1e-5)


def test_uniform_windows_move_each_step_so_no_frame_is_always_an_edge():
    """The uniform schedule: step k's windows start ``step_shift(k, stride)`` later (0, 1/2, 1/4, 3/4 …
    of the stride); over 16 steps every shift of a stride of 12 is used, so each frame inside the
    clip is a window's first frame at no more than a few steps."""
    assert sorted(set(step_shift(k, 12) for k in range(16))) == list(range(12))
    assert [step_shift(k, 12) for k in range(4)] == [0, 6, 3, 9]
    edges = {}
    for k in range(12):
        for w in context_windows(64, 16, 4, shift=step_shift(k, 12))[1:-1]:  # the last stays flush with the end
            edges[w[0]] = edges.get(w[0], 0) + 1
    assert max(edges.values()) <= 2 and len(edges) > 30  # static windows: the same 3 edges at all 12 steps


def test_a_moving_axis_runs_each_step_in_its_own_windows():
    seen = []

    def call(x, t, c, step=0, slot=0):
        seen.append((step, x.shape[0]))
        return x

    axis = FrameAxis(10, context_windows(10, 4, 1), None, moving=(4, 1, False))
    assert axis.windows_at(0) == axis.windows and axis.windows_at(1) == context_windows(10, 4, 1, shift=1)
    x, c = torch.randn(10, 1, 1, 1), Conditioning(torch.zeros(10, 1, 1))
    for step in range(3):
        assert torch.allclose(axis.model_call(call)(x, torch.tensor(1), c, step), x, atol=1e-6)
    assert [n for s, n in seen if s == 1] == [4] * len(axis.windows_at(1))
    static = FrameAxis(10, context_windows(10, 4, 1), None)
    assert static.windows_at(1) == static.windows
