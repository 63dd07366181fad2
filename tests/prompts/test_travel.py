"""Prompt travel: the A1111 AnimateDiff extension's keyframe format, and the per-frame mix."""

import pytest
import torch

from gouache.errors import InvalidArgument
from gouache.prompts.conditioning import Conditioning
from gouache.prompts.travel import Keyframe, check_travel, mix_weights, parse_travel, travel_schedule


@pytest.mark.parametrize("prompt,expected", [
    ("a red circle on a blue background", None),
    ("0: a red circle on a blue background, 8: a blue circle on a blue background",
     [Keyframe(0, "a red circle on a blue background"), Keyframe(8, "a blue circle on a blue background")]),
    ("a circle\n0: red\n12 : blue, shiny\noutline style",
     [Keyframe(0, "a circle, red, outline style"), Keyframe(12, "a circle, blue, shiny, outline style")]),
    ("8: late\n0: early", [Keyframe(0, "early"), Keyframe(8, "late")]),
    ("(red:1.2) circle, [a:b:8]", None),  # weights and prompt editing are no keyframes
])
def test_parse(prompt, expected):
    assert parse_travel(prompt) == expected


@pytest.mark.parametrize("prompt,message", [("0: a\nnot a key\n4: b", "between keyframes"), ("0: a, 0: b", "two keyframes")])
def test_parse_errors(prompt, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_travel(prompt)


def test_keyframe_past_the_clip():
    with pytest.raises(InvalidArgument, match="past the last frame"):
        check_travel(parse_travel("0: a, 16: b"), 16)


def test_mix_weights_hold_then_lerp_then_hold():
    w = mix_weights([2, 6], 9)
    assert w.sum(1).tolist() == [1.0] * 9
    assert w[:, 1].tolist() == [0, 0, 0, 0.25, 0.5, 0.75, 1, 1, 1]


def test_schedule_gives_each_frame_its_mix():
    a = Conditioning(torch.zeros(1, 77, 4))
    b = Conditioning(torch.ones(1, 77, 4))
    neg = Conditioning(torch.full((1, 77, 4), -1.0))
    at = travel_schedule([lambda s: ([(a, 1.0)], neg), lambda s: ([(b, 1.0)], neg)], [0, 4], 5,
                         Conditioning(torch.zeros(1, 77, 4)))
    conds, uncond = at(0)
    hidden = conds[0][0].hidden
    assert hidden.shape == (5, 77, 4) and hidden[:, 0, 0].tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert torch.equal(uncond.hidden, neg.hidden)
