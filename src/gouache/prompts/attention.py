"""Emphasis as AUTOMATIC1111 reads it: ``(more)``, ``[less]``, ``(exact:1.3)``, escapes and ``BREAK``.

This matches A1111's ``prompt_parser.parse_prompt_attention`` (v1.7 to v1.10), the step that turns
one scheduled text into weighted fragments before tokenizing.

>>> attention("a (red:1.2) [ball]")
[('a ', 1.0), ('red', 1.2), (' ', 1.0), ('ball', 0.9090909090909091)]
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np

from gouache.errors import InvalidArgument

ROUND = 1.1  # what "(...)" multiplies by
SQUARE = 1 / 1.1  # what "[...]" multiplies by: A1111 multiplies by this, it does not divide by 1.1
BREAK = ("BREAK", -1.0)  # the marker fragment; weight -1 is how A1111 tells it from the word

# A1111 reads the text one character at a time. Here `re.split` cuts out what is not plain text,
# each a run of its kind, so a megabyte of "(((" or "\(\(" is a few pieces. `\d` and `\s` are
# Unicode-aware, as in A1111.
_SPECIAL = re.compile(
    r"((?:\\[()\[\]\\]?)+"  # escapes: "\(" is a literal "(", "\\" a backslash, "\" + other: nothing
    r"|[()\[\]]+"  # brackets
    r"|:\s*[+-]?[.\d]+\s*\))"  # ":1.2)", closing "(x:1.2)"; whitespace allowed since A1111 1.7
)
# A1111 splits on r"\s*\bBREAK\b\s*", which `re` runs in quadratic time on long whitespace;
# _split_breaks finds the keyword and then the whitespace around it.
_BREAK_WORD = re.compile(r"\bBREAK\b")
_SPACES = re.compile(r"\s*")
# Every bracket around a piece of text is one multiplication, done in A1111's order so the floats
# match to the last bit; no shortcut gives the same floats, so the depth is capped, which keeps
# the work linear. Real prompts stay under 10 (1.1 ** 20 is already a weight of 6.7).
MAX_DEPTH = 20


def _split_breaks(text: str) -> list[tuple[str, float]]:
    r"""Plain text as fragments of weight 1, with a BREAK marker wherever the keyword stands alone.

    The same pieces as A1111's ``re.split(r"\s*\bBREAK\b\s*", text)``: each keyword takes the
    whitespace before it (back to the previous keyword's) and all the whitespace after it.
    """
    out: list[tuple[str, float]] = []
    start = 0  # where the current piece of text starts
    for word in _BREAK_WORD.finditer(text):
        before = word.start()
        while before > start and text[before - 1].isspace():  # `\s`, exactly
            before -= 1
        out.append((text[start:before], 1.0))
        out.append(BREAK)
        start = _SPACES.match(text, word.end()).end()
    out.append((text[start:], 1.0))
    return out


def _is_float(number: str) -> bool:
    try:
        float(number)
    except ValueError:
        return False
    return True


def _check_finite(weights: list[float]) -> None:
    """Raise if a weight is inf or nan: A1111 would go on and encode nonsense."""
    bad = next((weight for weight in weights if not math.isfinite(weight)), None)
    if bad is not None:
        raise InvalidArgument(f"an emphasis weight in the prompt comes to {bad}; write weights like (word:1.2).")


def _too_deep(depth: int) -> None:
    raise InvalidArgument(
        f"the prompt has text inside {depth} brackets at once (counting any never closed); "
        f"at most {MAX_DEPTH} are read. Close them, or write literal brackets as \\( \\) \\[ \\]."
    )


class _Weights:
    """The fragments' weights, multiplied as brackets close, in A1111's order: the same floats.

    A closing bracket multiplies every fragment since it opened. Most brackets hold a few
    fragments, done in a list; one around many (a prompt inside 19 brackets that close at the
    end) goes through a numpy array, whose float64 multiplication is Python's, bit for bit.
    Each fragment is multiplied once per bracket around it, and that depth is capped. Weights
    that overflow become inf (or nan) and stay so: :func:`_read` checks them once, at the end.
    """

    FEW = 64  # more fragments than this go through numpy

    def __init__(self) -> None:
        self.array = np.empty(0)  # the older weights, in array[:stored]
        self.stored = 0
        self.recent: list[float] = []  # the rest; fragments are appended here

    def multiply(self, start: int, factor: float, count: int = 1) -> None:
        """Multiply the weights from fragment ``start`` on by ``factor``, ``count`` times."""
        if self.stored + len(self.recent) - start <= self.FEW:
            if start < self.stored:  # take the few back from the array
                self.recent[:0] = self.array[start : self.stored].tolist()
                self.stored = start
            part = self.recent[start - self.stored :]
            for _ in range(count):
                part = [weight * factor for weight in part]
            self.recent[start - self.stored :] = part
            return
        self._store()
        view = self.array[start : self.stored]
        for _ in range(count):
            view *= factor

    def values(self) -> np.ndarray:
        self._store()
        return self.array[: self.stored]

    def _store(self) -> None:
        end = self.stored + len(self.recent)
        if end > len(self.array):
            grown = np.empty(max(end, 2 * len(self.array)))
            grown[: self.stored] = self.array[: self.stored]
            self.array = grown
        self.array[self.stored : end] = self.recent
        self.stored = end
        self.recent.clear()


class _Reader:
    """A1111's fragments of a text and their weights, read in one pass (see :func:`_read`).

    Plain text is gathered in ``plain`` and becomes one fragment at the next bracket (neighbours
    between the same brackets always end with equal weights, and A1111 merges those too);
    ``round_`` and ``square`` hold the fragment each open bracket starts at.
    """

    def __init__(self):
        self.texts: list[str] = []
        self.weights = _Weights()
        self.recent = self.weights.recent
        self.plain: list[str] = []
        self.round_: list[int] = []
        self.square: list[int] = []

    def _check_depth(self) -> None:
        if len(self.round_) + len(self.square) > MAX_DEPTH:
            _too_deep(len(self.round_) + len(self.square))

    def add(self, piece: str, weight: float) -> None:
        self._check_depth()
        self.texts.append(piece)
        self.recent.append(weight)

    def flush(self) -> None:
        self._check_depth()
        plain = self.plain
        self.texts.append(plain[0] if len(plain) == 1 else "".join(plain))
        self.recent.append(1.0)
        plain.clear()

    def take(self, piece: str) -> None:
        if "BREAK" not in piece:
            self.plain.append(piece)
            return
        pieces = _split_breaks(piece)  # text, BREAK, text, ..., BREAK, text
        self.plain.append(pieces[0][0])
        for i in range(1, len(pieces), 2):
            self.flush()
            self.add(*pieces[i])
            self.plain.append(pieces[i + 1][0])

    def close(self, start: int, factor: float) -> None:
        recent, first = self.recent, start - self.weights.stored
        if 0 <= first and len(recent) - first <= self.weights.FEW:  # the usual case, done here
            recent[first:] = [weight * factor for weight in recent[first:]]
        elif start < len(self.texts):
            self.weights.multiply(start, factor)

    def brackets(self, run: str) -> None:
        round_, square, plain = self.round_, self.square, self.plain
        if len(run) > 1 and not (round_ or square) and "(" not in run and "[" not in run:
            plain.append(run)  # closers with nothing open are text
            return
        for char in run:
            if char == "(" or char == "[":
                if plain:
                    self.flush()
                (round_ if char == "(" else square).append(len(self.texts))
                continue
            stack = round_ if char == ")" else square
            if not stack:
                plain.append(char)  # a closer with nothing of its kind open is text
                continue
            if plain:
                self.flush()
            self.close(stack.pop(), ROUND if char == ")" else SQUARE)

    def special(self, special: str) -> None:
        """One bracket run, escape or ``:weight)`` from :data:`_SPECIAL`."""
        if special[0] in "()[]":
            self.brackets(special)
        elif special[0] == "\\":
            self.plain.append(special[1::2])  # each is "\" + the character, or a lone "\"
        elif special[0] == ":":
            number = special[1:-1]
            if not _is_float(number):  # "1.2.3": A1111 would crash; we read a stray ":" and go on
                self.plain.append(special[:-1])
                self.brackets(")")
            elif self.round_:
                if self.plain:
                    self.flush()
                self.close(self.round_.pop(), float(number))  # inf is fine as long as it weighs no text
            else:  # a weight with no "(" open is text
                self.plain.append(special)

    def finish(self) -> tuple[list[str], np.ndarray]:
        if self.plain:
            self.flush()
        # Unclosed brackets count to the end: all "(" first, outermost first, then all "[".
        for stack, factor in ((self.round_, ROUND), (self.square, SQUARE)):
            for start, same in itertools.groupby(stack):
                if start < len(self.texts):
                    self.weights.multiply(start, factor, len(list(same)))
        values = self.weights.values()
        if not np.isfinite(values).all():  # an overflow, or inf from "(x:999...9)"; nan from 0 * inf
            _check_finite(values.tolist())
        return self.texts, values


def _read(text: str) -> tuple[list[str], np.ndarray]:
    """A1111's fragments of ``text`` and their weights, before equal neighbours are merged.

    One pass with small steps on purpose: a megabyte can hold half a million brackets.
    """
    reader = _Reader()
    parts = _SPECIAL.split(text)  # text, special, text, ..., special, text
    for i in range(1, len(parts), 2):
        if parts[i - 1]:
            reader.take(parts[i - 1])
        reader.special(parts[i])
    if parts[-1]:
        reader.take(parts[-1])
    return reader.finish()


def _merge_equal_neighbours(texts: list[str], weights: np.ndarray) -> list[tuple[str, float]]:
    """Join adjacent fragments whose weights are exactly equal (float ``==``), as A1111 does;
    a run keeps its first fragment's weight (``0.0`` and ``-0.0`` join as ``0.0``)."""
    starts = [0, *(np.flatnonzero(weights[1:] != weights[:-1]) + 1).tolist(), len(texts)]
    first = weights.tolist()
    return [
        (texts[a] if b == a + 1 else "".join(texts[a:b]), first[a]) for a, b in zip(starts, starts[1:])
    ]


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
    * Unlike A1111, text inside more than :data:`MAX_DEPTH` brackets, and a weight that comes to
      inf or nan (``(x:1e400)`` written out), raise :class:`~gouache.errors.InvalidArgument`.

    Linear in the length of ``text``: a megabyte takes well under a second.

    >>> attention("(unnecessary)(parens)")
    [('unnecessaryparens', 1.1)]
    >>> attention("a BREAK b")
    [('a', 1.0), ('BREAK', -1.0), ('b', 1.0)]
    >>> attention("\\\\(literal\\\\]")
    [('(literal]', 1.0)]
    """
    with np.errstate(all="ignore"):  # overflow is checked for at the end, whatever numpy is set to
        texts, weights = _read(text)
    if not texts:
        return [("", 1.0)]
    return _merge_equal_neighbours(texts, weights)
