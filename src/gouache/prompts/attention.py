"""Emphasis as AUTOMATIC1111 reads it: ``(more)``, ``[less]``, ``(exact:1.3)``, escapes and ``BREAK``.

This matches A1111's ``prompt_parser.parse_prompt_attention`` (v1.7 to v1.10), the step that turns
one scheduled text into weighted fragments before tokenizing.

>>> attention("a (red:1.2) [ball]")
[('a ', 1.0), ('red', 1.2), (' ', 1.0), ('ball', 0.9090909090909091)]
"""

from __future__ import annotations

import re

ROUND = 1.1  # what "(...)" multiplies by
SQUARE = 1 / 1.1  # what "[...]" multiplies by: A1111 multiplies by this, it does not divide by 1.1
BREAK = ("BREAK", -1.0)  # the marker fragment; weight -1 is how A1111 tells it from the word

# ":1.2)" closing a round bracket with an explicit weight; whitespace allowed since A1111 1.7.
# `\d` and `\s` are Unicode-aware here, as in A1111.
_WEIGHT_CLOSE = re.compile(r":\s*([+-]?[.\d]+)\s*\)")
_TEXT_RUN = re.compile(r"[^\\()\[\]:]+")
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)  # eats the whitespace around the keyword
_ESCAPABLE = "()[]\\"


def _split_breaks(text: str) -> list[list]:
    """Plain text as fragments of weight 1, with a BREAK marker wherever the keyword stands alone."""
    out: list[list] = []
    for i, part in enumerate(_BREAK.split(text)):
        if i:
            out.append(list(BREAK))
        out.append([part, 1.0])
    return out


def _scan(text: str):
    """A1111's tokens, in order: ``(kind, value)`` with kind one of

    ``"text"`` (plain text or a stray bracket), ``"escaped"`` (one literal character, possibly
    empty), ``"("``, ``"["``, ``")"``, ``"]"`` and ``"weight"`` (``:N)`` with N's text).
    """
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == "\\":
            # "\(" is a literal bracket and "\\" one backslash; a backslash before anything else
            # is dropped (A1111 appends an empty fragment for it and reads the next character on).
            if text[pos + 1 : pos + 2] and text[pos + 1] in _ESCAPABLE:
                yield "escaped", text[pos + 1]
                pos += 2
            else:
                yield "escaped", ""
                pos += 1
        elif char in "()[]":
            yield char, char
            pos += 1
        elif char == ":":
            match = _WEIGHT_CLOSE.match(text, pos)
            if match is not None and _is_float(match.group(1)):
                yield "weight", match
                pos = match.end()
            else:  # A1111 would crash on float("1.2.3"); we read it as a stray ":" and go on
                yield "text", ":"
                pos += 1
        else:
            run = _TEXT_RUN.match(text, pos)
            yield "text", run.group()
            pos = run.end()


def _is_float(number: str) -> bool:
    try:
        float(number)
    except ValueError:
        return False
    return True


def _merge_equal_neighbours(fragments: list[list]) -> list[tuple[str, float]]:
    """Join adjacent fragments whose weights are exactly equal (float ``==``), as A1111 does."""
    merged: list[list] = []
    for text, weight in fragments:
        if merged and merged[-1][1] == weight:
            merged[-1][0] += text
        else:
            merged.append([text, weight])
    return [(text, weight) for text, weight in merged]


def attention(text: str) -> list[tuple[str, float]]:
    """Weighted fragments of ``text``: ``[(fragment, weight), ...]``, exactly A1111's.

    * ``(x)`` multiplies by 1.1, ``[x]`` by 1/1.1, ``(x:N)`` by N (``(x: 1.5 )`` works too).
    * ``\\(``, ``\\)``, ``\\[``, ``\\]`` and ``\\\\`` are literal characters; a backslash before
      anything else is dropped.
    * A bracket never closed still counts, up to the end of the text; a stray ``)`` or ``]`` is
      plain text.
    * ``BREAK`` on its own becomes the fragment ``("BREAK", -1.0)`` and eats the whitespace around
      it. Inside brackets it is multiplied like everything else, and A1111 then no longer treats it
      as a break: ``(a BREAK b)`` encodes the word "break" at weight -1.1.
    * Weights are multiplied in the order the brackets close, so the floats are A1111's to the
      last bit (``(((a)))`` inside an open ``(`` is 1.4641000000000006, not 1.4641).
    * Neighbours with equal weights are merged; an empty text gives ``[("", 1.0)]``.

    >>> attention("(unnecessary)(parens)")
    [('unnecessaryparens', 1.1)]
    >>> attention("a BREAK b")
    [('a', 1.0), ('BREAK', -1.0), ('b', 1.0)]
    >>> attention("\\\\(literal\\\\]")
    [('(literal]', 1.0)]
    """
    fragments: list[list] = []
    round_opened: list[int] = []  # index into `fragments` where each open "(" started
    square_opened: list[int] = []

    def multiply_from(start: int, factor: float) -> None:
        for fragment in fragments[start:]:
            fragment[1] *= factor

    for kind, value in _scan(text):
        if kind == "escaped":
            fragments.append([value, 1.0])
        elif kind == "(":
            round_opened.append(len(fragments))
        elif kind == "[":
            square_opened.append(len(fragments))
        elif kind == "weight" and round_opened:
            multiply_from(round_opened.pop(), float(value.group(1)))
        elif kind == ")" and round_opened:
            multiply_from(round_opened.pop(), ROUND)
        elif kind == "]" and square_opened:
            multiply_from(square_opened.pop(), SQUARE)
        else:  # text, or a closer with nothing open: plain text
            fragments.extend(_split_breaks(value.group() if kind == "weight" else value))

    # Unclosed brackets count to the end: all "(" first, outermost first, then all "[".
    for start in round_opened:
        multiply_from(start, ROUND)
    for start in square_opened:
        multiply_from(start, SQUARE)

    if not fragments:
        return [("", 1.0)]
    return _merge_equal_neighbours(fragments)
