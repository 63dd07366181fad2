"""The motion judge: rendered clips pass every bar; frames that break a rule fail that rule."""

import dataclasses

import pytest
from PIL import Image

from gouache.tiny.motion import MotionDataset, evaluation_specs, render
from gouache.tiny.motion_eval import MIN_TRAVEL, judge_clip, motion_bars, parse_motion_prompt, passes
from gouache.tiny.shapes import PALETTE, draw


def test_rendered_clips_reach_every_bar():
    clips = [(render(s), s.caption) for held in (False, True) for s in evaluation_specs(held, 8)]
    scores = motion_bars(clips)
    assert scores["seen"].clips == scores["held_out"].clips == 8
    for s in scores.values():
        assert s.as_dict() == {"clips": 8, "frames_right": 1.0, "consistent": 1.0, "moving": 1.0} and not s.misses
    assert all(passes(scores).values())


def _clip(index=0):
    return MotionDataset(seed=2)[index]


def _recolour(clip, frame, **change):
    frames = list(clip.frames)
    frames[frame] = draw(dataclasses.replace(clip.spec.at(frame), **change))
    return frames


def _other(clip, attr, choices):
    return next(c for c in choices if c not in (getattr(clip.spec.start, attr), clip.spec.start.background))


def _with_travel(clip, travel):
    return render(dataclasses.replace(clip.spec, travel=travel))


def _jump_back(clip):
    frames = list(clip.frames)
    frames[9] = clip.frames[2]  # back by 7 frames' travel, about 10 px
    return frames


def _diagonal(clip):  # 18 px the named way, 24 px across it
    across = {"left": "cy", "right": "cy", "up": "cx", "down": "cx"}[clip.spec.direction]
    spec = dataclasses.replace(clip.spec, travel=18)
    return [draw(dataclasses.replace(spec.at(f), **{across: 20 + 24 * f / 15})) for f in range(16)]


def _blank(clip, frame):
    frames = list(clip.frames)
    frames[frame] = Image.new("RGB", (64, 64), PALETTE[clip.spec.start.background])
    return frames


OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
CASES = {  # name -> (frames, caption) from a clip, and what the judge must find: (frames right, consistent, moving)
    "a frame of another colour": (lambda c: (_recolour(c, 5, colour=_other(c, "colour", PALETTE)), c.caption), (15, False, True)),
    "a frame of another kind": (lambda c: (_recolour(c, 5, shape=_other(c, "shape", ("circle", "square", "triangle"))),
                                           c.caption), (15, False, True)),
    "a frame without the shape": (lambda c: (_blank(c, 7), c.caption), (15, False, False)),
    "the other way": (lambda c: (c.frames, dataclasses.replace(c.spec, direction=OPPOSITE[c.spec.direction]).caption),
                      (16, True, False)),
    "too short a way": (lambda c: (_with_travel(c, MIN_TRAVEL * 64 - 2), c.caption), (16, True, False)),
    "back and forth": (lambda c: (_jump_back(c), c.caption), (16, True, False)),
    "more across than along": (lambda c: (_diagonal(c), c.caption), (16, True, False)),
    "still": (lambda c: ([c.frames[0]] * 16, c.caption), (16, True, False)),
    "the wrong background": (lambda c: (c.frames, c.caption.replace(f"on a {c.spec.start.background}",
                                                                    f"on a {_other(c, 'colour', PALETTE)}")),
                             (0, True, True)),
}


@pytest.mark.parametrize("index", [0, 1])
@pytest.mark.parametrize("case", CASES)
def test_a_clip_that_breaks_a_rule_fails_that_rule_only(case, index):
    clip = _clip(index)
    make, want = CASES[case]
    frames, caption = make(clip)
    j = judge_clip(frames, caption)
    assert (j.frames_right, j.consistent, j.moving) == want


def test_bars_count_clips_by_their_set_and_name_the_misses():
    clip = _clip(0)
    good = [(c.frames, c.caption) for c in (_clip(i) for i in range(3))]
    scores = motion_bars(good + [([clip.frames[0]] * 16, clip.caption)])
    assert scores["seen"].clips == 4 and scores["held_out"].clips == 0
    assert scores["seen"].as_dict()["moving"] == 0.75 and scores["seen"].as_dict()["consistent"] == 1.0
    assert len(scores["seen"].misses) == 1 and "travel 0.0px" in scores["seen"].misses[0][1]
    assert passes(scores)["moving (seen)"] is False and passes(scores)["moving (held_out)"] is False


@pytest.mark.parametrize("prompt", ["a red circle on a blue background", "a red circle moving sideways on a blue background",
                                    "a red blob on a blue background, moving up", ""])
def test_prompts_it_cannot_judge_are_one_clear_error(prompt):
    with pytest.raises(ValueError, match="moving <direction>"):
        parse_motion_prompt(prompt)
