"""Emphasis parsing: A1111's ``parse_prompt_attention`` results, floats compared exactly."""

import doctest
import importlib

import pytest

from gouache.prompts.attention import attention

# A1111's doctests for parse_prompt_attention.
A1111_DOCTESTS = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ("a ", 1.0),
            ("house", 1.5730000000000004),  # 1.3 * 1.1 * 1.1, in closing order
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.4641000000000006),  # 1.1 ** 4 the way A1111 multiplies it
            (".", 1.1),
        ],
    ),
]


@pytest.mark.parametrize("text, expected", A1111_DOCTESTS)
def test_a1111_doctests(text, expected):
    assert attention(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[a]", [("a", 0.9090909090909091)]),  # times 1/1.1
        ("[[a]]", [("a", 0.8264462809917354)]),
        ("(((a)))", [("a", 1.3310000000000004)]),
        ("(a) (b)", [("a", 1.1), (" ", 1.0), ("b", 1.1)]),
        ("[a:1.2]", [("a:1.2", 0.9090909090909091)]),  # ":N" only counts before ")"
        ("(a [b:c:3]:1.2)", [("a ", 1.2), ("b:c:3", 1.0909090909090908)]),  # a schedule left literal
    ],
)
def test_brackets(text, expected):
    assert attention(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("(a:1.5)", [("a", 1.5)]),
        ("(a: 1.5 )", [("a", 1.5)]),  # whitespace around the number: A1111 >= 1.7
        ("(a :1.5)", [("a ", 1.5)]),  # ...but not before the colon: it stays in the text
        ("(a:-1)", [("a", -1.0)]),
        ("(a:0)", [("a", 0.0)]),
        ("(a:+.5)", [("a", 0.5)]),
        ("(a:1.)", [("a", 1.0)]),
        ("(a:١.٥)", [("a", 1.5)]),  # Unicode digits, as Python's \d and float() read them
        ("((a:1.2)", [("a", 1.32)]),  # the outer "(" never closes: 1.1 at the end
    ],
)
def test_explicit_weights(text, expected):
    assert attention(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("((a", [("a", 1.2100000000000002)]),
        ("[a", [("a", 0.9090909090909091)]),
        ("(a [b", [("a ", 1.1), ("b", 1.0)]),  # 1.1 first (all "(" before "["), then 1/1.1
        ("[a (b", [("a ", 0.9090909090909091), ("b", 1.0)]),
        ("(a:1.2]", [("a:1.2]", 1.1)]),
        ("a)b]", [("a)b]", 1.0)]),  # closers with nothing open are text
        ("(a)))", [("a", 1.1), ("))", 1.0)]),
        ("a:b", [("a:b", 1.0)]),
        ("(a:-)", [("a:-", 1.1)]),  # "-" alone is no weight: a stray ":", then ")" closes as usual
        ("a:1.2)", [("a:1.2)", 1.0)]),  # a weight with no "(" open is text, ")" included
    ],
)
def test_unbalanced(text, expected):
    assert attention(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\\\\", [("\\", 1.0)]),  # an escaped backslash
        ("\\x", [("x", 1.0)]),  # a lone backslash is dropped
        ("\\", [("", 1.0)]),
        ("(a\\)b)", [("a)b", 1.1)]),
        ("\\:1.2)", [(":1.2)", 1.0)]),  # the backslash goes, the ":" is then read normally
        ("(a\\:1.2)", [("a", 1.2)]),  # ...so it can still be a weight
    ],
)
def test_escapes(text, expected):
    assert attention(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a BREAK b", [("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]),
        ("BREAK a", [("", 1.0), ("BREAK", -1.0), ("a", 1.0)]),
        ("a BREAK", [("a", 1.0), ("BREAK", -1.0), ("", 1.0)]),
        ("BREAK", [("", 1.0), ("BREAK", -1.0), ("", 1.0)]),
        ("BREAK BREAK", [("", 1.0), ("BREAK", -1.0), ("", 1.0), ("BREAK", -1.0), ("", 1.0)]),
        ("a  BREAK\n b", [("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]),  # whitespace eaten
        ("a, BREAK, b", [("a,", 1.0), ("BREAK", -1.0), (", b", 1.0)]),
        ("aBREAK b", [("aBREAK b", 1.0)]),  # not a whole word
        ("BREAKfast", [("BREAKfast", 1.0)]),
        ("break", [("break", 1.0)]),  # capitals only
        # Inside brackets the marker is multiplied too, and is then just the word "break".
        ("(a BREAK b)", [("a", 1.1), ("BREAK", -1.1), ("b", 1.1)]),
        ("(a BREAK b:0)", [("aBREAKb", 0.0)]),  # 0.0 == -0.0, so the three merge
    ],
)
def test_break(text, expected):
    assert attention(text) == expected


@pytest.mark.parametrize("text", ["", "()", "[]", "(:1.2)", "\\"])
def test_empty_gives_one_empty_fragment(text):
    assert attention(text) == [("", 1.0)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("(a:1.2.3)", [("a:1.2.3", 1.1)]),
        ("(a:.)", [("a:.", 1.1)]),
        ("(a:1..2)", [("a:1..2", 1.1)]),
    ],
)
def test_weight_that_is_not_a_number_is_text(text, expected):
    # A1111 raises ValueError in float(); we read the ":" as text and the ")" as a plain close.
    assert attention(text) == expected


def test_weights_are_floats():
    assert all(type(weight) is float for _, weight in attention("a BREAK (b) [c] (d:2)"))


@pytest.mark.parametrize("module", ["gouache.prompts.attention"])
def test_docstring_examples(module):
    assert doctest.testmod(importlib.import_module(module)).failed == 0
