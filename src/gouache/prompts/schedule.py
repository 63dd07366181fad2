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

import bisect
import contextlib
import gc
import math
import re
from collections.abc import Iterator, Sequence

from gouache.errors import InvalidArgument

# lark's common.SIGNED_NUMBER, with its alternatives in the order lark tries them (floats before
# integers), so "1.5", ".5", "5.", "1e3" and "-2" are read exactly as A1111 reads them.
_NUMBER = r"[+-]?(?:[0-9]+[eE][+-]?[0-9]+|(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+)"
# `[WHITESPACE] NUMBER [WHITESPACE] "]"`, the end of a schedule. A shorter match of NUMBER would
# end before a digit, ".", "e" or sign, never before whitespace or "]", so backtracking into it
# finds nothing that lark's longest-match tokens would not.
_NUMBER_TAIL = re.compile(rf"\s*({_NUMBER})\s*\]")
_NUMBER_STARTS = frozenset("+-.0123456789")  # what can start _NUMBER_TAIL, besides whitespace
# What the parser looks at; the text between is plain. "\" and the character after it (any but a
# newline) are text too, read in runs; a "\" that escapes nothing makes the prompt unreadable.
_TOKEN = re.compile(r"(?:\\.)+|\\|[\[\]():|]")


class _Group:
    """Text and subtrees that are always there, around at least one schedule or alternation.

    A part is a string or a schedule, alternation or group. Text with neither in it (plain text,
    emphasis like ``((a))``) is never made into nodes: it is sliced out of the prompt once.
    """

    __slots__ = ("parts",)  # plain classes, not dataclasses: a prompt can make 100,000 of them

    def __init__(self, parts: tuple) -> None:
        self.parts = parts


class _Scheduled:
    """``[before:after:number]``; ``before`` is empty for ``[after:number]``."""

    __slots__ = ("before", "after", "number")

    def __init__(self, before: _Group | str, after: _Group | str, number: str) -> None:
        self.before, self.after, self.number = before, after, number


class _Alternate:
    """``[a|b|...]``; an empty alternative is an empty string."""

    __slots__ = ("options",)

    def __init__(self, options: tuple[_Group | str, ...]) -> None:
        self.options = options


class _Frame:
    """A ``[`` or ``(`` being read."""

    __slots__ = ("opener", "start", "children", "marks", "alternate")

    def __init__(self, opener: str, start: int) -> None:
        self.opener, self.start = opener, start
        # (start, end, node) of the groups inside that hold a schedule or alternation; the rest
        # of the content is text, read off the prompt when the frame closes.
        self.children: list[tuple[int, int, object]] = []
        self.marks: list[int] = []  # where each ":" or "|" that separates parts is
        self.alternate = False  # a "|" has been read: this is [a|b...]


class _Parser:
    """Parses one prompt; ``parse()`` gives the tree, or None where A1111's grammar fails.

    One pass over the tokens, left to right, with a stack of the brackets being read. Whether a
    ``[`` or ``(`` is a group depends only on the text after it, and a bracket that cannot be a
    group spoils every bracket around it (their content would hold it). So when the top bracket
    meets a token it cannot take, or the text ends, every bracket on the stack is plain text
    and what they held is top-level text: groups inside stay groups, a ``|`` that separated
    alternatives makes the prompt unreadable. Linear, and no recursion: a prompt nested 100,000
    deep cannot overflow the stack.
    """

    def __init__(self, text: str):
        self.text = text

    def parse(self) -> _Group | None:
        """The prompt as a group; an empty group if it holds no schedule or alternation."""
        top: list[tuple[int, int, object]] = []
        stack: list[_Frame] = []
        skip = 0  # the end of a "N]" already read
        text = self.text
        for token in _TOKEN.finditer(text):
            pos = token.start()
            char = text[pos]
            if pos < skip:
                continue
            if char == "\\":
                if token.end() - pos == 1:
                    return None  # a backslash before a newline or at the end escapes nothing
            elif char == "(" or char == "[":
                stack.append(_Frame(char, pos))
            elif not stack:  # top level: stray brackets and colons are text, a "|" is an error
                if char == "|":
                    return None
            else:
                done = self._take(stack[-1], char, pos)
                if done is None:  # the top bracket cannot take it: all of them are text
                    if char == "|" or not self._unwind(stack, top):
                        return None
                elif done:
                    end, node = done
                    frame = stack.pop()
                    skip = end
                    if node is not None:
                        (stack[-1].children if stack else top).append((frame.start, end, node))
        if stack and not self._unwind(stack, top):
            return None
        return _Group(tuple(self._parts(0, len(self.text), top))) if top else _Group(())

    def _take(self, frame: _Frame, char: str, pos: int):
        """``frame`` reads ``char`` (one of ``]):|``) at ``pos``.

        ``(end, node)`` when that closes the frame (node None: plain text), ``()`` when the frame
        reads on, None when the frame cannot be a group.
        """
        marks = frame.marks
        if frame.opener == "(":
            if char == ")":
                return pos + 1, self._literal(frame, pos + 1)
            if char == ":" and not marks:
                marks.append(pos)
                return ()
            return None
        if char == "]" and (not marks or frame.alternate):
            if frame.alternate:
                return pos + 1, _Alternate(tuple(self._pieces(frame, pos)))
            return pos + 1, self._literal(frame, pos + 1)
        if char == "|" and (not marks or frame.alternate):
            frame.alternate = True
            marks.append(pos)
            return ()
        if char == ":" and not frame.alternate:
            # "[x:N]" or "[x:y:N]" ends here if a number and "]" follow (cheap test first)
            after = self.text[pos + 1 : pos + 2]
            maybe = after in _NUMBER_STARTS or after.isspace()  # str.isspace() is `\s`
            tail = _NUMBER_TAIL.match(self.text, pos + 1) if maybe else None
            if tail is not None:
                pieces = self._pieces(frame, pos)
                before, after = pieces if len(pieces) == 2 else ("", pieces[0])
                return tail.end(), _Scheduled(before, after, tail.group(1))
            if not marks:
                marks.append(pos)
                return ()
        return None

    def _unwind(self, stack: list[_Frame], top: list) -> bool:
        """Every bracket on the stack is text: the groups they hold go to the top level.

        False where a ``|`` would be left at the top level, which makes the prompt unreadable.
        """
        if any(frame.alternate for frame in stack):
            return False
        for frame in stack:  # each one's children come before the next one opened
            top.extend(frame.children)
        stack.clear()
        return True

    def _literal(self, frame: _Frame, end: int) -> _Group | None:
        """``(x)``, ``(x:y)`` or ``[x]``, kept as text with its brackets; None if it is all text."""
        if not frame.children:
            return None
        return _Group(tuple(self._parts(frame.start, end, frame.children)))

    def _pieces(self, frame: _Frame, end: int) -> list[_Group | str]:
        """The frame's parts between its separators, up to ``end``, each a string or a group."""
        bounds = [frame.start, *frame.marks, end]
        if not frame.children:
            return [self.text[begin + 1 : stop] for begin, stop in zip(bounds, bounds[1:])]
        children, pieces = iter(frame.children), []
        child = next(children, None)
        for begin, stop in zip(bounds, bounds[1:]):
            inside = []
            while child is not None and child[0] < stop:
                inside.append(child)
                child = next(children, None)
            if not inside:
                pieces.append(self.text[begin + 1 : stop])
            elif len(inside) == 1 and inside[0][0] == begin + 1 and inside[0][1] == stop:
                pieces.append(inside[0][2])  # exactly one group: no need to wrap it
            else:
                pieces.append(_Group(tuple(self._parts(begin + 1, stop, inside))))
        return pieces

    def _parts(self, start: int, end: int, children: list[tuple[int, int, object]]) -> list:
        """``text[start:end]`` as strings around the ``children``' nodes."""
        parts: list = []
        for child_start, child_end, node in children:
            if child_start > start:
                parts.append(self.text[start:child_start])
            parts.append(node)
            start = child_end
        if end > start:
            parts.append(self.text[start:end])
        return parts


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector paused: a long prompt makes a million small objects, and the
    collector would walk them over and over (half the time of a 1 MB prompt). Parsing and
    rendering make no reference cycles, so nothing is left for the collector to find."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _walk(root: _Group, pick) -> Iterator[str]:
    """The text of ``root``; ``pick(node)`` chooses which child a schedule/alternation shows.

    An explicit stack instead of recursion, so deep nesting is safe.
    """
    stack: list[Iterator] = [iter(root.parts)]
    while stack:
        for part in stack[-1]:
            while type(part) is _Scheduled or type(part) is _Alternate:  # a choice can be one too
                part = pick(part)
            if type(part) is str:
                yield part
            else:
                stack.append(iter(part.parts))
                break
        else:
            stack.pop()


def _nodes(root: _Group) -> Iterator[_Scheduled | _Alternate]:
    """Every schedule and alternation in the tree, also inside branches not currently shown."""
    stack: list[object] = [root]
    while stack:
        node = stack.pop()
        if type(node) is _Group:
            stack.extend(part for part in node.parts if type(part) is not str)
        elif type(node) is _Scheduled:
            yield node
            stack.extend((node.before, node.after))
        elif type(node) is _Alternate:
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

    Reading the prompt takes time linear in its length, nested or not; making the texts takes
    (length) x (distinct texts), and there are at most ``steps`` of those.

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
    if "[" not in prompt or (":" not in prompt and "|" not in prompt):
        return [(steps, prompt)]  # nothing can be scheduled: the parse would give the prompt back
    with _collector_paused():
        return _schedules(prompt, steps, old_scheduling)


def _schedules(prompt: str, steps: int, old_scheduling: bool) -> list[tuple[int, str]]:
    tree = _Parser(prompt).parse()
    if tree is None or not tree.parts:  # unreadable, or text only
        return [(steps, prompt)]

    whens: dict[_Scheduled, int] = {}
    periods: set[int] = set()  # option counts of the alternations
    for node in _nodes(tree):
        if type(node) is _Scheduled:
            whens[node] = _when(node.number, steps, old_scheduling)
        else:
            periods.add(len(node.options))
    boundaries = set(range(1, steps + 1)) if periods else {when for when in whens.values() if when >= 1}
    boundaries.add(steps)

    def text_for(step: int) -> str:
        def pick(node: _Scheduled | _Alternate) -> _Group | str:
            if type(node) is _Scheduled:
                return node.before if step <= whens[node] else node.after
            return node.options[(step - 1) % len(node.options)]

        return "".join(_walk(tree, pick))

    # Steps that agree on every schedule and alternation show the same text: make it once.
    # That keeps the work at (distinct texts) x (prompt), however many steps share them.
    cuts, cycles = sorted(set(whens.values())), sorted(periods)
    texts: dict[tuple, str] = {}
    out = []
    for step in sorted(boundaries):
        key = (bisect.bisect_left(cuts, step), *((step - 1) % cycle for cycle in cycles))
        if key not in texts:
            texts[key] = text_for(step)
        out.append((step, texts[key]))
    return out


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

