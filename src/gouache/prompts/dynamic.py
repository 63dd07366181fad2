"""Dynamic prompts: ``{a|b}`` variants and ``__name__`` wildcards, each image's pick drawn from its seed.

The syntax is that of the Dynamic Prompts extension for AUTOMATIC1111 (adieyal/sd-dynamic-prompts,
``docs/SYNTAX.md``), in its random mode:

* ``{red|green|blue}``: one of the options; ``{0.5::red|2::blue}``: weighted (an option's weight is 1
  unless it starts with ``W::``).
* ``{2$$a|b|c}``: two different options, joined by ``", "``; ``{1-3$$a|b|c}``: one to three;
  ``{2-$$…}``: two or more; ``{-2$$…}``: one or two. ``{2$$ and $$a|b|c}``: joined by ``" and "``.
* ``__colours__``: one line of ``colours.txt`` in the wildcards folder (``$GOUACHE_HOME/wildcards``),
  ``__colours/warm__`` one of ``colours/warm.txt``. A line is a template itself (variants and
  wildcards in it are resolved too); blank lines and lines starting with ``#`` are skipped.
* ``\\{``, ``\\}`` and ``\\|`` are the characters themselves; any other backslash is kept as written
  (A1111's ``\\(``).

Everything else is text, A1111's own syntax included: ``[cat|dog]`` alternation, ``(word:1.2)``,
``<lora:name:0.8>``. A wildcard is a *name* in the folder, never a path: ``__../x__`` is an error.

The parser reads a template in one left-to-right pass; resolving is bounded (nesting depth, work,
output length), and the wildcards a template can reach are checked before any image is made
(:func:`check`): an unknown name, a cycle (``__a__`` → ``__b__`` → ``__a__``) or unbalanced braces
is one :class:`~gouache.errors.InvalidArgument` naming it.

>>> resolve("a {red|green|blue} circle", seed=7) == resolve("a {red|green|blue} circle", seed=7)
True
>>> resolve("a {2$$ and $$red|green|blue} circle", seed=7).count(" and ")
1
"""

from __future__ import annotations

import difflib
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from gouache.errors import InvalidArgument, UnknownName

MAX_TEMPLATE_CHARS = 200_000  # a template or a wildcard file's line
MAX_DEPTH = 32  # braces within braces, plus wildcards within wildcards
MAX_STEPS = 200_000  # options and nodes visited while resolving one prompt
MAX_OUTPUT_CHARS = 50_000  # of one resolved prompt
MAX_FILE_BYTES = 4 * 2**20  # one wildcard file
MAX_LIBRARY_BYTES = 32 * 2**20  # every wildcard file one check or resolution reads
SEPARATOR = ", "  # between the picks of {2$$a|b|c} (Dynamic Prompts' default)

_PLAIN = re.compile(r"[^{}|\\_]+")
_NAME = re.compile(r"[\w\-./*]+")  # what may stand between __ and __; checked further by _check_name
_WEIGHT = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*::")
_COUNT = re.compile(r"\s*([0-9]{1,6})?\s*(-)?\s*([0-9]{1,6})?\s*\$\$")


@dataclass(frozen=True)
class Variant:
    """``{…}``: ``low`` to ``high`` different options, each ``(weight, nodes)``, joined by ``separator``."""

    options: tuple[tuple[float, tuple], ...]
    low: int = 1
    high: int = 1
    separator: str = SEPARATOR


@dataclass(frozen=True)
class Wildcard:
    """``__name__``: one line of the wildcard file ``name``."""

    name: str


def parse(text: str, where: str = "the prompt") -> tuple:
    """The nodes of a template: text, :class:`Variant` and :class:`Wildcard`, in one pass.
    >>> parse("a {red|2::blue} __shape__")
    ('a ', Variant(options=((1.0, ('red',)), (2.0, ('blue',))), low=1, high=1, separator=', '), ' ', Wildcard(name='shape'))
    """
    _check_text(text, where)
    frames: list[tuple[int, list, list]] = []  # (where the brace opened, options so far, the enclosing nodes)
    current: list = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            current.append("".join(buf))
            buf.clear()

    i, n = 0, len(text)
    while i < n:
        plain = _PLAIN.match(text, i)
        if plain is not None:
            buf.append(plain.group())
            i = plain.end()
            continue
        c = text[i]
        if c == "\\":
            nxt = text[i + 1 : i + 2]
            buf.append(nxt if nxt and nxt in "{}|" else c + nxt)
            i += 1 + len(nxt)
        elif c == "{":
            if len(frames) >= MAX_DEPTH:
                raise InvalidArgument(f"{where} nests braces more than {MAX_DEPTH} deep (at character {i + 1})")
            flush()
            frames.append((i, [], current))
            current = []
            i += 1
        elif c == "|" and frames:
            flush()
            frames[-1][1].append(current)
            current = []
            i += 1
        elif c == "}":
            if not frames:
                raise InvalidArgument(f"{where} has a '}}' at character {i + 1} that closes no '{{' "
                                      "(write \\} for the character itself)")
            flush()
            start, options, parent = frames.pop()
            options.append(current)
            parent.append(_variant(options, text, start, where))
            current = parent
            i += 1
        elif (wildcard := _wildcard_at(text, i)) is not None:
            flush()
            current.append(wildcard)
            i += len(wildcard.name) + 4
        else:  # "|" outside braces, or a "_" that starts no wildcard
            buf.append(c)
            i += 1
    if frames:
        raise _unclosed(text, frames[-1][0], where)
    flush()
    return tuple(current)


def _check_text(text, where: str) -> None:
    if not isinstance(text, str):
        raise InvalidArgument(f"{where} must be text, got {type(text).__name__}")
    if len(text) > MAX_TEMPLATE_CHARS:
        raise InvalidArgument(f"{where} is {len(text)} characters, over the {MAX_TEMPLATE_CHARS} a template may have")


def _unclosed(text: str, start: int, where: str) -> InvalidArgument:
    return InvalidArgument(f"{where} has a '{{' at character {start + 1} that is never closed: "
                           f"{_excerpt(text, start)} (write \\{{ for the character itself)")


def _wildcard_at(text: str, i: int) -> Wildcard | None:
    """The ``__name__`` that starts at ``i``, if one does (the name ends at the next ``__``)."""
    if not text.startswith("__", i):
        return None
    end = text.find("__", i + 2)
    name = text[i + 2 : end] if end > i + 2 else ""
    return Wildcard(_check_name(name)) if name and _NAME.fullmatch(name) else None


def _excerpt(text: str, at: int, width: int = 30) -> str:
    return repr(text[at : at + width] + ("…" if len(text) > at + width else ""))


def _check_name(name: str) -> str:
    """A wildcard name: folder names and a file stem, never a path out of the folder."""
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidArgument(f"wildcard __{name[:100]}__: a wildcard is a name in the wildcards folder (like "
                              "colours or colours/warm), not a path; '..', '.' and empty folder names are not allowed")
    if "*" in name:
        raise InvalidArgument(f"wildcard __{name[:100]}__: globs are not supported; name one wildcard file")
    return name


def _variant(options: list[list], text: str, start: int, where: str) -> Variant:
    """A ``{…}``'s options, with the count (``N$$``, ``N-M$$``), separator and weights read off."""
    low = high = 1
    separator = SEPARATOR
    first = options[0]
    if first and isinstance(first[0], str):
        count = _COUNT.match(first[0])
        if count is not None and (count.group(1) or count.group(3)):
            a, dash, b = count.groups()
            low = int(a) if a else 1
            high = (int(b) if b else MAX_STEPS) if dash else low
            if high < low:
                raise InvalidArgument(f"{where}: the count {count.group().strip()!r} at character {start + 2} "
                                      f"goes from {low} down to {high}; write the smaller number first")
            rest = first[0][count.end() :]
            if "$$" in rest:
                separator, rest = rest.split("$$", 1)
            first = ([rest] if rest else []) + first[1:]
            options = [first] + options[1:]
    weighted = []
    for nodes in options:
        weight = 1.0
        if nodes and isinstance(nodes[0], str):
            m = _WEIGHT.match(nodes[0])
            if m is not None:
                weight = float(m.group(1))
                rest = nodes[0][m.end() :]
                nodes = ([rest] if rest else []) + nodes[1:]
        weighted.append((weight, tuple(nodes)))
    return Variant(tuple(weighted), low, high, separator)


def is_dynamic(text: str) -> bool:
    """Whether ``text`` has variants, wildcards or escapes: whether resolving it can change it.

    >>> is_dynamic("a [cat|dog] (fur:1.2)"), is_dynamic("a {cat|dog}")
    (False, True)
    """
    return parse(text) != ((text,) if text else ())


# -- the wildcards folder ---------------------------------------------------------------------------


@dataclass
class WildcardLibrary:
    """The wildcard files under ``folder`` (default ``$GOUACHE_HOME/wildcards``), each read once.

    A name is looked up among the ``.txt`` files of the folder and its subfolders; nothing outside
    it is opened. ``lines(name)`` are the file's options: blank lines and ``#`` comments skipped.
    """

    folder: Path | None = None
    _lines: dict = field(default_factory=dict, repr=False)
    _parsed: dict = field(default_factory=dict, repr=False)
    _bytes: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.folder is None:
            from gouache.models.home import gouache_home

            self.folder = gouache_home() / "wildcards"
        self.folder = Path(self.folder)

    def names(self) -> list[str]:
        """Every wildcard's name, sorted: ``colours``, ``colours/warm``, ..."""
        if not self.folder.is_dir():
            return []
        return sorted(p.relative_to(self.folder).with_suffix("").as_posix()
                      for p in self.folder.rglob("*.txt") if p.is_file())

    def lines(self, name: str, used_in: str | None = None) -> tuple[str, ...]:
        """The options of wildcard ``name``; an unknown name lists the closest ones."""
        if name in self._lines:
            return self._lines[name]
        path = self.folder / f"{_check_name(name)}.txt"
        if not path.is_file():
            raise self._unknown(name, used_in)
        size = path.stat().st_size
        self._bytes += size
        if size > MAX_FILE_BYTES or self._bytes > MAX_LIBRARY_BYTES:
            raise InvalidArgument(f"wildcard __{name}__ ({path}) is {size} bytes; the wildcards one prompt reads may "
                                  f"have {MAX_FILE_BYTES} bytes per file and {MAX_LIBRARY_BYTES} in all")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidArgument(f"wildcard __{name}__ ({path}) cannot be read as UTF-8 text: {e}") from None
        found = tuple(s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#"))
        if not found:
            raise InvalidArgument(f"wildcard __{name}__ ({path}) has no options: every line is blank or a # comment")
        self._lines[name] = found
        return found

    def option(self, name: str, k: int) -> tuple:
        """The nodes of option ``k`` of wildcard ``name``, parsed once."""
        key = (name, k)
        if key not in self._parsed:
            self._parsed[key] = parse(self._lines[name][k], f"wildcard __{name}__, line {k + 1}")
        return self._parsed[key]

    def _unknown(self, name: str, used_in: str | None) -> UnknownName:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        guess = f" (did you mean {' or '.join(f'__{c}__' for c in close)}?)" if close else ""
        where = f" in __{used_in}__" if used_in else ""
        shown = ", ".join(names[:20]) + (f", … ({len(names)} in all)" if len(names) > 20 else "")
        listed = f"it has {shown}" if names else "it has none"
        return UnknownName(f"unknown wildcard __{name}__{where}{guess}; wildcards are the .txt files in "
                           f"{self.folder}: {listed}")


# -- checking and resolving -------------------------------------------------------------------------


def check(template: str, library: WildcardLibrary | None = None, where: str = "the prompt") -> None:
    """Raise :class:`InvalidArgument` if ``template`` cannot be resolved whatever the seed: unbalanced
    braces, a wildcard that does not exist (anywhere it can reach), or a cycle of wildcards."""
    nodes = parse(template, where)
    library = library or WildcardLibrary()
    done: set[str] = set()
    for name in _wildcards(nodes):
        _check_wildcard(name, library, (), done, None)


def _wildcards(nodes: tuple):
    """The wildcard names in ``nodes``, in variants too."""
    todo = [nodes]
    while todo:
        for node in todo.pop():
            if isinstance(node, Wildcard):
                yield node.name
            elif isinstance(node, Variant):
                todo.extend(option for _, option in node.options)


def _check_wildcard(name: str, library: WildcardLibrary, stack: tuple[str, ...], done: set[str],
                    used_in: str | None) -> None:
    if name in stack:
        raise InvalidArgument(_cycle(stack[stack.index(name):] + (name,)))
    if name in done:
        return
    if len(stack) >= MAX_DEPTH:
        raise InvalidArgument(f"wildcards nest more than {MAX_DEPTH} deep: __{stack[0]}__ → … → __{name}__")
    lines = library.lines(name, used_in)
    for k in range(len(lines)):
        for inner in _wildcards(library.option(name, k)):
            _check_wildcard(inner, library, stack + (name,), done, name)
    done.add(name)


def _cycle(names: tuple[str, ...]) -> str:
    return "wildcards form a cycle: " + " → ".join(f"__{n}__" for n in names) + "; one of these files must stop naming the next"


@dataclass
class _Resolver:
    library: WildcardLibrary
    rng: random.Random
    steps: int = 0
    chars: int = 0

    def nodes(self, nodes: tuple, out: list[str], stack: tuple[str, ...], depth: int) -> None:
        if depth > MAX_DEPTH:
            raise InvalidArgument(f"the prompt nests variants and wildcards more than {MAX_DEPTH} deep")
        for node in nodes:
            self._count(1)
            if isinstance(node, str):
                self.chars += len(node)
                if self.chars > MAX_OUTPUT_CHARS:
                    raise InvalidArgument(f"the resolved prompt would be over {MAX_OUTPUT_CHARS} characters; "
                                          "use fewer or shorter wildcards")
                out.append(node)
            elif isinstance(node, Variant):
                self.variant(node, out, stack, depth)
            else:
                self.wildcard(node.name, out, stack, depth)

    def variant(self, node: Variant, out: list[str], stack: tuple[str, ...], depth: int) -> None:
        n = len(node.options)
        low, high = min(node.low, n), min(node.high, n)
        k = low if low == high else self.rng.randint(low, high)
        pool = list(node.options)
        for j in range(k):
            self._count(len(pool))
            total = sum(w for w, _ in pool)
            if total > 0:
                r, index = self.rng.random() * total, 0
                while index < len(pool) - 1 and r >= pool[index][0]:
                    r -= pool[index][0]
                    index += 1
            else:  # every weight 0: as if all were equal
                index = self.rng.randrange(len(pool))
            if j:
                out.append(node.separator)
            self.nodes(pool.pop(index)[1], out, stack, depth + 1)

    def wildcard(self, name: str, out: list[str], stack: tuple[str, ...], depth: int) -> None:
        if name in stack:
            raise InvalidArgument(_cycle(stack[stack.index(name):] + (name,)))
        lines = self.library.lines(name, stack[-1] if stack else None)
        k = self.rng.randrange(len(lines))
        self.nodes(self.library.option(name, k), out, stack + (name,), depth + 1)

    def _count(self, n: int) -> None:
        self.steps += n
        if self.steps > MAX_STEPS:
            raise InvalidArgument(f"resolving the prompt takes over {MAX_STEPS} steps; use fewer or smaller variants")


def resolve(template: str, seed: int, library: WildcardLibrary | None = None, part: str = "prompt") -> str:
    """``template`` with each variant and wildcard replaced by a pick drawn from ``seed``: the same
    seed gives the same text. ``part`` keeps the negative prompt's picks apart from the prompt's.

    >>> resolve("a {red|blue} circle", 3) in ("a red circle", "a blue circle")
    True
    """
    nodes = parse(template, f"the {part}".replace("negative_prompt", "negative prompt"))
    if all(isinstance(node, str) for node in nodes):
        return "".join(nodes)
    rng = random.Random(seed if part == "prompt" else f"{seed}:{part}")
    out: list[str] = []
    _Resolver(library or WildcardLibrary(), rng).nodes(nodes, out, (), 0)
    return "".join(out)
