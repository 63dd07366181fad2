"""Prompt editing schedules: A1111's results for every construct, its doctests and its surprises.

Expected values are A1111's (``get_learned_conditioning_prompt_schedules``), written out from the
documented rules and checked against A1111's own lark grammar while writing these tables.
"""

import doctest
import importlib

import pytest

from gouache.errors import InvalidArgument
from gouache.prompts import schedules, text_at

ALTERNATING_A_B = [(step, "a" if step % 2 else "(b:1.1)") for step in range(1, 11)]

# A1111's doctests for get_learned_conditioning_prompt_schedules (steps=10), and its comment example.
A1111_DOCTESTS = [
    ("test", [(10, "test")]),
    ("a [b:3]", [(3, "a "), (10, "a b")]),
    ("a [b: 3]", [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", [(10, "a [unbalanced")]),
    ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
    # The stale doctest: documented as [(5, 'a  c'), (10, 'a {b|d{ c')], but `|` outside an
    # alternation makes the prompt unparseable, so A1111 really returns it verbatim.
    ("a [{b|d{:.5] c", [(10, "a [{b|d{:.5] c")]),
    ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a|(b:1.1)]", ALTERNATING_A_B),
    ("[fe|]male", [(step, "female" if step % 2 else "male") for step in range(1, 11)]),
    ("[fe|||]male", [(step, "female" if step % 4 == 1 else "male") for step in range(1, 11)]),
]


@pytest.mark.parametrize("prompt, expected", A1111_DOCTESTS)
def test_a1111_doctests(prompt, expected):
    assert schedules(prompt, 10) == expected


def test_a1111_comment_example_over_100_steps():
    prompt = (
        "fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]"
        "[ in foreground::0.6][ in background:0.25] [shoddy:masterful:0.5]"
    )
    assert schedules(prompt, 100) == [
        (25, "fantasy landscape with a mountain and an oak in foreground shoddy"),
        (50, "fantasy landscape with a lake and an oak in foreground in background shoddy"),
        (60, "fantasy landscape with a lake and an oak in foreground in background masterful"),
        (75, "fantasy landscape with a lake and an oak in background masterful"),
        (100, "fantasy landscape with a lake and a christmas tree in background masterful"),
    ]


SWITCH_AT_1 = [(1, "a"), (10, "b")]
ALWAYS_A = [(10, "a")]
ALWAYS_B = [(10, "b")]


# How N in [a:b:N] becomes a step, over 10 steps: (new rule, A1111 >= 1.6) and (old rule).
@pytest.mark.parametrize(
    "number, new, old",
    [
        ("0.5", [(5, "a"), (10, "b")], [(5, "a"), (10, "b")]),
        (".5", [(5, "a"), (10, "b")], [(5, "a"), (10, "b")]),
        ("5", [(5, "a"), (10, "b")], [(5, "a"), (10, "b")]),
        ("+3", [(3, "a"), (10, "b")], [(3, "a"), (10, "b")]),
        ("1", SWITCH_AT_1, SWITCH_AT_1),
        ("1.0", ALWAYS_A, SWITCH_AT_1),  # new: all 10 steps; old: step 1
        ("1.5", ALWAYS_A, SWITCH_AT_1),  # new: 15 steps, capped; old: step 1.5 -> 1
        ("5.", ALWAYS_A, [(5, "a"), (10, "b")]),  # "5." has a decimal point: 5 x steps
        ("1e1", ALWAYS_A, ALWAYS_A),  # no decimal point: step 10
        ("1e-1", ALWAYS_B, SWITCH_AT_1),  # new: step 0.1 -> 0; old: 0.1 x 10
        ("20", ALWAYS_A, ALWAYS_A),  # capped at steps: "before" throughout
        ("0", ALWAYS_B, ALWAYS_B),  # 0 adds no boundary: "after" from the start
        ("-1", ALWAYS_B, ALWAYS_B),
        ("-0.5", ALWAYS_B, ALWAYS_B),
        ("0.05", ALWAYS_B, ALWAYS_B),  # 0.5 truncates to 0
    ],
)
def test_when_new_and_old_scheduling(number, new, old):
    assert schedules(f"[a:b:{number}]", 10) == new
    assert schedules(f"[a:b:{number}]", 10, old_scheduling=True) == old


def test_fraction_truncates_toward_zero():
    assert schedules("[a:b:0.25]", 7) == [(1, "a"), (7, "b")]  # 0.25 x 7 = 1.75 -> step 1


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("[b:\t3\n]", [(3, ""), (10, "b")]),  # whitespace around the number
        ("[b:3 ]", [(3, ""), (10, "b")]),  # after the number: current grammar only
        ("[ b : c : 3 ]", [(3, " b "), (10, " c ")]),  # kept verbatim inside the parts
        ("[a::3]", [(3, "a"), (10, "")]),  # [from::when] removes
        ("[:b:3]", [(3, ""), (10, "b")]),
        ("[::3]", [(3, ""), (10, "")]),
        ("[a:3:4]", [(4, "a"), (10, "3")]),  # a number can be the "to" text
        ("(a [b:c:3]:1.2)", [(3, "(a b:1.2)"), (10, "(a c:1.2)")]),  # inside emphasis
        ("[(a:1.2):[b]:0.5]", [(5, "(a:1.2)"), (10, "[b]")]),  # emphasis inside, literal
        ("[a:[b:2]:3]", [(2, "a"), (3, "a"), (10, "b")]),  # inner boundary counts though unseen
        ("a [cat:dog:0.5] <lora:x:1>", [(5, "a cat <lora:x:1>"), (10, "a dog <lora:x:1>")]),
    ],
)
def test_scheduled_forms(prompt, expected):
    assert schedules(prompt, 10) == expected


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("[a|b|c]", ["a", "b", "c", "a", "b"]),
        ("[|a]", ["", "a", "", "a", ""]),
        ("[a|]", ["a", "", "a", "", "a"]),
        ("[|]", ["", "", "", "", ""]),
        ("[a|b] [c|d|e]", ["a c", "b d", "a e", "b c", "a d"]),
        ("[[a|b]:c:3]", ["a", "b", "a", "c", "c"]),  # alternation inside a schedule
        ("[[a:b:2]|c]", ["a", "c", "b", "c", "b"]),  # a schedule inside an alternation
        ("[(x:1.2)|\\]]", ["(x:1.2)", "\\]", "(x:1.2)", "\\]", "(x:1.2)"]),
    ],
)
def test_alternation_gives_one_entry_per_step(prompt, expected):
    assert schedules(prompt, 5) == list(enumerate(expected, start=1))


# Text the grammar reads as literal characters: unbalanced or malformed brackets.
@pytest.mark.parametrize(
    "prompt",
    ["[a:b]", "[a:b:c]", "(a:b:c)", "a ] b", "a ) b", ":", "[]", "()", "[a:b:3x]", "[a:b:3", "((a",
     "\\[a:3]"],
)
def test_literal_when_not_a_schedule(prompt):
    assert schedules(prompt, 10) == [(10, prompt)]


# What A1111's grammar cannot parse at all: the prompt comes back whole, brackets and all.
@pytest.mark.parametrize(
    "prompt",
    ["a|b", "(a|b)", "[a|b", "[a|b:3]", "[a|b] c|d", "a \\", "a \\\nb", "[a:3] and a trailing \\"],
)
def test_unparseable_prompt_is_one_verbatim_entry(prompt):
    assert schedules(prompt, 10) == [(10, prompt)]
    assert schedules(prompt, 3, old_scheduling=True) == [(3, prompt)]


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("[\\]:3]", [(3, ""), (10, "\\]")]),  # an escaped bracket is text, kept with its backslash
        ("[a\\|b:3]", [(3, ""), (10, "a\\|b")]),  # so is an escaped bar
        ("\\([a:3]", [(3, "\\("), (10, "\\(a")]),
        ("\\\\[a:3]", [(3, "\\\\"), (10, "\\\\a")]),  # an escaped backslash does not escape "["
    ],
)
def test_escapes(prompt, expected):
    assert schedules(prompt, 10) == expected


def test_one_step():
    assert schedules("[a:b:0.5] [c|d]", 1) == [(1, "b c")]  # 0.5 x 1 -> 0: "after" at once


def test_empty_prompt():
    assert schedules("", 20) == [(20, "")]


def test_deep_nesting_does_not_overflow():
    deep = "[" * 3000 + "a" + "]" * 3000
    assert schedules(deep, 10) == [(10, deep)]
    assert schedules("(" * 5000, 10) == [(10, "(" * 5000)]
    assert schedules("[a:" * 500 + "b" + ":1]" * 500, 10) == [(1, "a"), (10, "b")]


def test_schedule_beside_stray_bracket_is_read():
    # A1111's lark parser is ambiguous here and its answer changes with Python's hash seed: it
    # sometimes keeps "[a:3]" literal. We always read the schedule, as A1111's doctests do.
    assert schedules("[a:3])", 10) == [(3, ")"), (10, "a)")]


def test_infinite_number_does_not_crash():
    # A1111 raises OverflowError in int(inf); we read it as "never switches" / "from the start".
    assert schedules("[a:b:1e999]", 10) == [(10, "a")]
    assert schedules("[a:b:-1e999]", 10) == [(10, "b")]


@pytest.mark.parametrize("steps", [0, -1, 1.5, True, "10"])
def test_steps_must_be_a_positive_int(steps):
    with pytest.raises(InvalidArgument, match="`steps`"):
        schedules("a", steps)


def test_prompt_must_be_text():
    with pytest.raises(InvalidArgument, match="`prompt`"):
        schedules(None, 10)


@pytest.mark.parametrize(
    "prompt, steps, expected",
    [
        # end_step counts from 1, the sampler's step from 0: "a" holds for calls 0..3.
        ("[a:b:3]", 10, ["a", "a", "a", "a", "b", "b", "b", "b", "b", "b"]),
        ("[a|b]", 6, ["a", "a", "b", "a", "b", "a"]),
        ("plain", 3, ["plain", "plain", "plain"]),
    ],
)
def test_text_at_uses_a1111s_step_counting(prompt, steps, expected):
    plan = schedules(prompt, steps)
    assert [text_at(plan, step) for step in range(steps)] == expected


def test_text_at_past_the_end_falls_back_to_the_first_entry():
    assert text_at(schedules("[a:b:3]", 10), 11) == "a"  # A1111's target_index stays 0


def test_text_at_needs_a_schedule():
    with pytest.raises(InvalidArgument, match="schedules"):
        text_at([], 0)


@pytest.mark.parametrize("module", ["gouache.prompts.schedule"])
def test_docstring_examples(module):
    assert doctest.testmod(importlib.import_module(module)).failed == 0
