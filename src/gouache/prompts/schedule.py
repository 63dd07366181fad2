"""AUTOMATIC1111's prompt editing: ``[from:to:when]``, ``[to:when]``, ``[from::when]`` and ``[a|b|c]``.

This matches A1111's ``prompt_parser.get_learned_conditioning_prompt_schedules`` (v1.6 to v1.10) for
one prompt. A1111 parses with a lark Earley grammar; this is a hand-written equivalent:

* ``[`` and ``(`` open a *group*. Inside a group everything must nest: ``(x)``, ``(x:y)`` and ``[x]``
  stay literal text (emphasis is read later, by :mod:`gouache.prompts.attention`), ``[x:N]`` and
  ``[x:y:N]`` are scheduled, ``[x|y|...]`` alternates.
* At the top level a bracket or colon that cannot belong to a group is plain text, so
  ``a [unbalanced`` and ``((a][:b:c [d:3]`` still parse.
* Only two things make a prompt unparseable: a ``|`` outside any ``[...|...]``, and a backslash at
  the very end or before a newline (``\\x`` escapes any other character). Then the whole prompt is
  one entry, verbatim, as A1111 does when lark raises.
* Where the grammar is ambiguous, a top-level group beside stray brackets (``[a:3])``), lark's
  pick depends on Python's string hash seed, so A1111 itself answers differently from one run to
  the next. We always read the group, as A1111's doctests do (``((a][:b:c [d:3]``).

>>> schedules("a [cat:dog:0.5] in a field", 10)
[(5, 'a cat in a field'), (10, 'a dog in a field')]
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from gouache.errors import InvalidArgument

# lark's common.SIGNED_NUMBER, with its alternatives in the order lark tries them (floats before
# integers), so "1.5", ".5", "5.", "1e3" and "-2" are read exactly as A1111 reads them.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+[eE][+-]?[0-9]+|(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+)")
_SPACE = re.compile(r"\s*")
# The grammar's `plain` terminal: anything but []():| and backslash, or a backslash and any
# character but a newline (lark compiles without DOTALL).
_PLAIN = re.compile(r"(?:[^\\\[\]():|]|\\.)+")
_CLOSERS = "])|:"  # end a text run inside a group
_OPENERS = "[("


@dataclass(frozen=True, eq=False)  # identity hash: trees can be deep
class _Group:
    """Text and subtrees that are always there: emphasis brackets, or a whole parsed prompt."""

    parts: tuple


@dataclass(frozen=True, eq=False)  # identity hash: trees can be deep
class _Scheduled:
    """``[before:after:number]``; ``before`` is empty for ``[after:number]``."""

    before: _Group
    after: _Group
    number: str


@dataclass(frozen=True, eq=False)  # identity hash: trees can be deep
class _Alternate:
    """``[a|b|...]``; an empty alternative is an empty group."""

    options: tuple[_Group, ...]


class _Parser:
    """Parses one prompt; ``parse()`` gives the tree, or None where A1111's grammar fails.

    Every ``[`` or ``(`` can be read as a group in exactly one way or not at all, and that depends
    only on the text after it. So groups are parsed right to left, each once, and a text run
    inside a group jumps over the groups it contains. No recursion: a prompt nested 5,000 deep
    cannot overflow the stack.
    """

    def __init__(self, text: str):
        self.text = text
        self.groups: dict[int, tuple[object, int]] = {}  # opening position -> (node, end)

    def parse(self) -> _Group | None:
        for pos in range(len(self.text) - 1, -1, -1):
            if self.text[pos] in _OPENERS:
                found = self._group_at(pos)
                if found is not None:
                    self.groups[pos] = found
        return self._top_level()

    def _top_level(self) -> _Group | None:
        """The whole prompt: groups where they parse, stray ``[]():`` as text, ``|`` never."""
        text, parts, pos = self.text, [], 0
        while pos < len(text):
            char = text[pos]
            if pos in self.groups:
                node, pos = self.groups[pos]
                parts.append(node)
            elif char in "[]():":
                parts.append(char)
                pos += 1
            elif char == "|":
                return None
            else:
                end = self._text_run(pos)
                if end is None:
                    return None
                parts.append(text[pos:end])
                pos = end
        return _Group(tuple(parts))

    def _text_run(self, pos: int) -> int | None:
        """End of the plain text starting at ``pos``; None for a backslash that escapes nothing."""
        run = _PLAIN.match(self.text, pos)
        return None if run is None else run.end()

    def _inside(self, pos: int) -> tuple[_Group, int] | None:
        """The nested content of a group from ``pos`` up to the next ``] ) | :`` at this depth."""
        text, parts = self.text, []
        while pos < len(text) and text[pos] not in _CLOSERS:
            if text[pos] in _OPENERS:
                if pos not in self.groups:  # a group that does not close spoils its parent
                    return None
                node, pos = self.groups[pos]
                parts.append(node)
            else:
                end = self._text_run(pos)
                if end is None:
                    return None
                parts.append(text[pos:end])
                pos = end
        return _Group(tuple(parts)), pos

    def _group_at(self, pos: int) -> tuple[object, int] | None:
        if self.text[pos] == "(":
            return self._round(pos)
        return self._square(pos)

    def _round(self, pos: int) -> tuple[_Group, int] | None:
        """``(x)`` or ``(x:y)``: emphasis, kept as literal text with its brackets."""
        first = self._inside(pos + 1)
        if first is None:
            return None
        body, pos = first
        if self._char(pos) == ")":
            return _Group(("(", body, ")")), pos + 1
        if self._char(pos) != ":":
            return None
        second = self._inside(pos + 1)
        if second is None or self._char(second[1]) != ")":
            return None
        return _Group(("(", body, ":", second[0], ")")), second[1] + 1

    def _square(self, pos: int) -> tuple[object, int] | None:
        """``[x]`` (emphasis, literal), ``[x|y|...]``, ``[x:N]`` or ``[x:y:N]``."""
        first = self._inside(pos + 1)
        if first is None:
            return None
        body, pos = first
        closer = self._char(pos)
        if closer == "]":
            return _Group(("[", body, "]")), pos + 1
        if closer == "|":
            return self._alternate(body, pos)
        if closer == ":":
            return self._scheduled(body, pos + 1)
        return None

    def _alternate(self, first: _Group, pos: int) -> tuple[_Alternate, int] | None:
        options = [first]
        while self._char(pos) == "|":
            found = self._inside(pos + 1)
            if found is None:
                return None
            option, pos = found
            options.append(option)
        if self._char(pos) != "]":
            return None
        return _Alternate(tuple(options)), pos + 1

    def _scheduled(self, first: _Group, pos: int) -> tuple[_Scheduled, int] | None:
        """After the first colon: either ``N]`` (``first`` is the "to" part) or ``to:N]``."""
        tail = self._number_tail(pos)
        if tail is not None:
            return _Scheduled(_Group(()), first, tail[0]), tail[1]
        second = self._inside(pos)
        if second is None or self._char(second[1]) != ":":
            return None
        tail = self._number_tail(second[1] + 1)
        if tail is None:
            return None
        return _Scheduled(first, second[0], tail[0]), tail[1]

    def _number_tail(self, pos: int) -> tuple[str, int] | None:
        """``[WHITESPACE] NUMBER [WHITESPACE] "]"`` at ``pos``: the number's text and the end."""
        pos = _SPACE.match(self.text, pos).end()
        number = _NUMBER.match(self.text, pos)
        if number is None:
            return None
        end = _SPACE.match(self.text, number.end()).end()
        if self._char(end) != "]":
            return None
        return number.group(), end + 1

    def _char(self, pos: int) -> str:
        return self.text[pos] if pos < len(self.text) else ""


def _walk(root: _Group, pick) -> Iterator[str]:
    """The text of ``root``; ``pick(node)`` chooses which child group a schedule/alternation shows.

    An explicit stack instead of recursion, so deep nesting is safe.
    """
    stack: list[Iterator] = [iter(root.parts)]
    while stack:
        for part in stack[-1]:
            if isinstance(part, str):
                yield part
            else:
                stack.append(iter(part.parts if isinstance(part, _Group) else pick(part).parts))
                break
        else:
            stack.pop()


def _nodes(root: _Group) -> Iterator[object]:
    """Every schedule and alternation in the tree, also inside branches not currently shown."""
    stack: list[object] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, _Group):
            stack.extend(part for part in node.parts if not isinstance(part, str))
        elif isinstance(node, _Scheduled):
            yield node
            stack.extend((node.before, node.after))
        else:
            yield node
            stack.extend(node.options)


def _when(number: str, steps: int, old_scheduling: bool) -> int:
    """The step a ``[...:number]`` switches after, by A1111's ``collect_steps``.

    New rule (A1111 >= 1.6): a number with a "." is a fraction of ``steps`` (even ``1.0`` or
    ``1.5``), anything else an absolute step. Old rule: below 1 a fraction, otherwise a step.
    ``int()`` truncates toward zero, then the result is capped at ``steps``.
    """
    value = float(number)
    if old_scheduling:
        value = value * steps if value < 1 else value
    elif "." in number:
        value = value * steps
    if math.isinf(value):  # "1e999": A1111 crashes in int(); treat it as "never" / "from the start"
        return steps if value > 0 else 0
    return min(steps, int(value))


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidArgument(
            f"`steps` must be a whole number of sampling steps, at least 1, but is {steps!r}."
        )


def schedules(prompt: str, steps: int, *, old_scheduling: bool = False) -> list[tuple[int, str]]:
    """The texts ``prompt`` shows over ``steps`` steps: ``[(end_step, text), ...]``, A1111's way.

    Each entry holds from the previous entry's end (exclusive) to ``end_step`` (inclusive); use
    :func:`text_at` to look one up. The last ``end_step`` is always ``steps``. Emphasis such as
    ``(x:1.2)`` is kept as literal text for :func:`gouache.prompts.attention`.

    * ``[to:N]`` adds ``to`` after step N, ``[from::N]`` removes ``from``, ``[from:to:N]`` switches;
      they nest. Whitespace inside the parts is kept verbatim.
    * N with a decimal point is a fraction of ``steps``; without one it is a step number.
      ``old_scheduling=True`` is A1111 before 1.6 ("Old prompt editing timelines"): N < 1 is a
      fraction, anything else a step number. N is truncated toward zero and capped at ``steps``;
      a result below 1 adds no boundary and shows ``to`` from the start.
    * ``[a|b|c]`` alternates every step: step t shows option ``(t - 1) % 3``; options may be empty.
    * A prompt the grammar cannot read (a stray ``|``) comes back whole: ``[(steps, prompt)]``.

    >>> schedules("a [b:3]", 10)
    [(3, 'a '), (10, 'a b')]
    >>> schedules("a [b:c:1.0]", 10), schedules("a [b:c:1.0]", 10, old_scheduling=True)
    ([(10, 'a b')], [(1, 'a b'), (10, 'a c')])
    >>> schedules("[fe|]male", 4)
    [(1, 'female'), (2, 'male'), (3, 'female'), (4, 'male')]
    >>> schedules("a [{b|d{:.5] c", 10)
    [(10, 'a [{b|d{:.5] c')]
    """
    _check_steps(steps)
    if not isinstance(prompt, str):
        raise InvalidArgument(f"`prompt` must be a string, not {type(prompt).__name__}: {prompt!r}.")
    tree = _Parser(prompt).parse()
    if tree is None:
        return [(steps, prompt)]

    whens: dict[_Scheduled, int] = {}
    boundaries = {steps}
    for node in _nodes(tree):
        if isinstance(node, _Scheduled):
            whens[node] = when = _when(node.number, steps, old_scheduling)
            if when >= 1:
                boundaries.add(when)
        else:
            boundaries.update(range(1, steps + 1))

    def text_for(step: int) -> str:
        def pick(node):
            if isinstance(node, _Scheduled):
                return node.before if step <= whens[node] else node.after
            return node.options[(step - 1) % len(node.options)]

        return "".join(_walk(tree, pick))

    return [(step, text_for(step)) for step in sorted(boundaries)]


def text_at(schedule: Sequence[tuple[int, str]], step: int) -> str:
    """The text A1111 conditions on at sampler step ``step`` (0-based: the first model call is 0).

    A1111 (``reconstruct_cond_batch``) takes the first entry whose ``end_step >= step``, with
    ``step`` counting model calls from 0 (``CFGDenoiser.step``). The ``end_step`` values count from 1,
    so ``[a:b:3]`` over 10 steps is ``[(3, 'a'), (10, 'b')]`` and shows ``a`` for four calls
    (0, 1, 2, 3), and ``[a|b]`` shows a, a, b, a, b, ... . A step past the last entry falls back to
    the first entry, as in A1111.

    >>> plan = schedules("[a:b:3]", 10)
    >>> [text_at(plan, step) for step in range(6)]
    ['a', 'a', 'a', 'a', 'b', 'b']
    """
    if not schedule:
        raise InvalidArgument("`schedule` is empty; build one with gouache.prompts.schedules(prompt, steps).")
    return next((text for end, text in schedule if step <= end), schedule[0][1])

