"""AUTOMATIC1111's generation-parameters text ("infotext"): write it and read it back.

The format matches AUTOMATIC1111 webui 1.10 (``modules/processing.py`` ``create_infotext`` for the
writer, ``modules/infotext_utils.py`` ``parse_generation_parameters`` for the reader), so images
made by gouache paste into A1111 and the other way round::

    a cat, (masterpiece:1.2)
    Negative prompt: blurry
    Steps: 20, Sampler: Euler a, CFG scale: 7.0, Seed: 42, Size: 512x768

>>> text = format_infotext("a cat", "blurry", {"Steps": 20, "Sampler": "Euler a", "Seed": 42})
>>> parsed = parse_infotext(text)
>>> parsed.prompt, parsed.negative_prompt, parsed.steps, parsed.params["Sampler"]
('a cat', 'blurry', 20, 'Euler a')
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from gouache.errors import InvalidArgument

# Key order of A1111 1.10's ``create_infotext``. Extension and feature parameters
# (``p.extra_generation_params``: hires fix, LoRA hashes, inpainting, ...) come after the fixed
# keys in the order they were added; the ones listed here are the common ones, in their usual
# order. Version and User always close the line.
A1111_KEY_ORDER: tuple[str, ...] = (
    "Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed",
    "Face restoration", "Size", "Model hash", "Model", "Batch size", "Batch pos", "FP8 weight",
    "Cache FP16 weight for LoRA", "VAE hash", "VAE",
    "Variation seed", "Variation seed strength", "Seed resize from", "Denoising strength",
    "Conditional mask weight", "Clip skip", "ENSD", "Token merging ratio",
    "Token merging ratio hr", "Init image hash", "RNG", "Tiling",
    "Hires upscale", "Hires resize", "Hires steps", "Hires upscaler", "Hires sampler",
    "Hires prompt", "Lora hashes", "TI hashes", "Mask blur", "Inpaint area",
    "Masked area padding", "Masked content", "Emphasis", "Old prompt editing timelines",
    "Version", "User",
)  # fmt: skip
_RANK = {key: i for i, key in enumerate(A1111_KEY_ORDER)}
# Unknown keys are extra_generation_params to A1111: after everything known, before Version/User.
_UNKNOWN_RANK = _RANK["Version"] - 0.5

NEGATIVE_PREFIX = "Negative prompt:"

# A1111 (v1.7+) reads the parameters line with ``re.findall`` of
#     \s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)
# and takes it for a parameters line when that finds at least 3 pairs. Run by `re`, that regex
# restarts at every character of a long run of words or spaces without a colon and is quadratic
# (100 kB took 39 s), so :func:`_entries` finds the same matches in one left-to-right pass.
_MIN_PARAMS = 3
_RE_SPACES = re.compile(r"\s*")
_RE_WORD = re.compile(r"\w")
_RE_KEY_CHARS = re.compile(r"[\w \-/]*")
_RE_QUOTED_BODY = re.compile(r'[^\\"]*(?:\\.[^\\"]*)*')  # A1111's (?:\\.|[^\\"])*, unrolled
_RE_KEY = re.compile(r"\w[\w \-/]*[\w\-/]")
_RE_INT = re.compile(r"[+-]?[0-9]+")
_RE_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_RE_SIZE = re.compile(r"([0-9]+)x([0-9]+)")
# Longest number text a typed value may have: int() refuses over 4,300 digits with a ValueError,
# and no real seed, step count or size comes near these.
_MAX_INT_CHARS = 30
_MAX_FLOAT_CHARS = 64


@dataclass(frozen=True)
class ParsedInfotext:
    """What an infotext says: the prompts and every ``Key: value`` as written (strings).

    ``params`` keeps the text's keys and order. Unlike A1111's parser it does not split
    ``Size: 512x768`` into ``Size-1``/``Size-2`` or add defaults for absent keys; use the typed
    properties (``steps``, ``size``, ...) or :meth:`value` for converted values.

    >>> p = parse_infotext("a fox\\nSteps: 30, CFG scale: 6.5, Size: 640x480")
    >>> p.cfg_scale, p.size, p.seed
    (6.5, (640, 480), None)
    """

    prompt: str
    negative_prompt: str = ""
    params: dict[str, str] = field(default_factory=dict)

    def value(self, key: str) -> object | None:
        """``params[key]`` converted to its type for well-known keys (``Steps`` → int,
        ``Size`` → (width, height), ...), the string for others, None when absent.

        Raises InvalidArgument naming the key and value when a well-known value is malformed.
        """
        raw = self.params.get(key)
        if raw is None:
            return None
        return TYPED_KEYS.get(key, _as_str)(key, raw)

    def typed_params(self) -> dict[str, object]:
        """All params, with the well-known keys converted (see :data:`TYPED_KEYS`)."""
        return {key: self.value(key) for key in self.params}

    steps = property(lambda self: self.value("Steps"), doc="``Steps`` as int, or None.")
    sampler = property(lambda self: self.value("Sampler"), doc="``Sampler`` name, or None.")
    schedule_type = property(lambda self: self.value("Schedule type"), doc="or None.")
    cfg_scale = property(lambda self: self.value("CFG scale"), doc="``CFG scale`` as float.")
    seed = property(lambda self: self.value("Seed"), doc="``Seed`` as int, or None.")
    size = property(lambda self: self.value("Size"), doc="``Size`` as (width, height).")
    model = property(lambda self: self.value("Model"), doc="checkpoint name, or None.")
    model_hash = property(lambda self: self.value("Model hash"), doc="10 hex digits, or None.")
    denoising_strength = property(lambda self: self.value("Denoising strength"), doc="float.")
    clip_skip = property(lambda self: self.value("Clip skip"), doc="``Clip skip`` as int.")


# --------------------------------------------------------------------------------------------
# Writing


def format_infotext(prompt: str, negative_prompt: str, params: Mapping[str, object]) -> str:
    """The infotext A1111 would write for these prompts and parameters.

    ``params`` is written in its own order (pass it through :func:`ordered` for A1111's order).
    None values are left out, a value equal to its key is written as the bare key, a
    ``(width, height)`` tuple as ``WxH``, and values that A1111's parser would misread are
    JSON-quoted (see :func:`quote`).

    The text reads back with :func:`parse_infotext` as written when there are at least 3
    parameters (A1111's rule for telling the parameters line from the prompt) and no prompt
    line has surrounding whitespace or starts with ``Negative prompt:`` (A1111 strips lines).

    >>> format_infotext("a cat, (fur:1.2)", "", {"Steps": 20, "Seed": 1, "Lora hashes": "a: 1f"})
    'a cat, (fur:1.2)\\nSteps: 20, Seed: 1, Lora hashes: "a: 1f"'
    """
    _check_str("prompt", prompt)
    _check_str("negative_prompt", negative_prompt)
    params_line = format_params(params)
    negative_line = f"\n{NEGATIVE_PREFIX} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative_line}\n{params_line}".strip()


def format_params(params: Mapping[str, object]) -> str:
    """The last line of an infotext: ``Key: value`` pairs joined by ``", "``.

    >>> format_params({"Steps": 20, "VAE": None, "Tiling": "Tiling", "Size": (512, 768)})
    'Steps: 20, Tiling, Size: 512x768'
    """
    if not isinstance(params, Mapping):
        kind = type(params).__name__
        raise InvalidArgument(f"`params` must be a dict of key → value, got {kind}")
    entries = []
    for key, value in params.items():
        _check_key(key)
        if value is None:
            continue
        text = _value_text(key, value)
        entries.append(key if text == key else f"{key}: {quote(text)}")
    return ", ".join(entries)


def quote(text: str) -> str:
    """``text`` as A1111 writes a parameter value: raw, or JSON-quoted when it holds ``,``
    ``:`` or a newline (A1111's ``infotext_utils.quote``).

    Also quoted, so that the value reads back unchanged: empty text, text with surrounding
    whitespace, and text starting with ``"``. A1111's own writer leaves those raw and its parser
    then drops or alters them; its parser reads the quoted form correctly.

    >>> quote("Euler a"), quote("add_detail: 7c6bad76eb54"), quote('say "hi"')
    ('Euler a', '"add_detail: 7c6bad76eb54"', 'say "hi"')
    """
    needs_quotes = (
        any(c in text for c in ",:\n")
        or text != text.strip()
        or text.startswith('"')
        or text == ""
    )
    return json.dumps(text, ensure_ascii=False) if needs_quotes else text


def ordered(params: Mapping[str, object]) -> dict[str, object]:
    """``params`` sorted into :data:`A1111_KEY_ORDER`; unknown keys keep their relative order
    and go where A1111 puts extension parameters: after the known ones, before Version and User.

    >>> list(ordered({"Version": "v1", "My ext": 1, "Seed": 3, "Steps": 20}))
    ['Steps', 'Seed', 'My ext', 'Version']
    """
    # sorted() is stable, so equal ranks (all unknown keys) keep the caller's order.
    return dict(sorted(params.items(), key=lambda item: _RANK.get(item[0], _UNKNOWN_RANK)))


def _value_text(key: str, value: object) -> str:
    if isinstance(value, tuple) and len(value) == 2 and all(type(v) is int for v in value):
        return f"{value[0]}x{value[1]}"  # A1111 writes sizes as f"{width}x{height}"
    return str(value)


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not _RE_KEY.fullmatch(key):
        raise InvalidArgument(
            f"infotext key {key!r} cannot be read back by A1111: use letters, digits, spaces, "
            "'_', '-' or '/', at least 2 characters, starting with a letter or digit"
        )


def _check_str(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise InvalidArgument(f"`{name}` must be a str, got {type(value).__name__}: {value!r}")


# --------------------------------------------------------------------------------------------
# Reading


def parse_infotext(text: str) -> ParsedInfotext:
    """Read an infotext the way A1111's ``parse_generation_parameters`` does.

    The last line is the parameters line only if it holds at least 3 ``Key: value`` pairs;
    otherwise it belongs to the prompt. Lines are stripped; from the first line starting with
    ``Negative prompt:`` on, everything is negative prompt. Quoted values are unquoted. Bare
    keys (written for a value equal to its key) read back as ``{key: key}``; A1111 skips them.

    >>> parse_infotext('a cat\\nNegative prompt: dog\\nSteps: 20, Seed: 1, Note: "x, y"')
    ParsedInfotext(prompt='a cat', negative_prompt='dog', params={'Steps': '20', 'Seed': '1', 'Note': 'x, y'})
    """
    _check_str("text", text)
    *lines, last_line = text.strip().split("\n")
    entries = list(_entries(last_line))
    if sum(value is not None for _, value in entries) < _MIN_PARAMS:  # bare keys don't count
        lines.append(last_line)
        entries = []
    prompt, negative_prompt = _split_prompts(lines)
    return ParsedInfotext(prompt, negative_prompt, _params(entries))


def parse_params(line: str) -> dict[str, str]:
    """The ``Key: value`` pairs of a parameters line, values unquoted, all strings.

    >>> parse_params('Steps: 20, Size: 512x512, Lora hashes: "a: 1, b: 2", Tiling')
    {'Steps': '20', 'Size': '512x512', 'Lora hashes': 'a: 1, b: 2', 'Tiling': 'Tiling'}
    """
    _check_str("line", line)
    return _params(_entries(line))


def _params(entries: Iterable[tuple[str, str | None]]) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in entries:
        if value is None:
            params[key] = key
        elif value:  # A1111 drops empty values (its `v[0]` raises and the pair is skipped)
            params[key] = _unquote(value)
    return params


def _entries(line: str) -> Iterator[tuple[str, str | None]]:
    r"""``(key, value)`` for each match of A1111's parameter regex in ``line``, value None for a
    bare key: the matches ``re.finditer`` finds for ``\s*(\w[\w \-/]+)(?::\s*(VALUE))?(?:,|$)``,
    found in linear time.

    Why one pass is enough: a key is the whole run of key characters, since a shorter one would
    be followed by a key character, which is neither ``:`` nor ``,`` nor the end; and once there
    is a ``:``, the unquoted value ``[^,]*`` always matches. So where a match fails, every start
    before the end of that key run fails the same way, and the scan can jump past it.
    """
    pos = 0
    # A match can only start its key at a word character, and a start before it reaches the same
    # key (or fails) through `\s*`: so go from word character to word character.
    while (word := _RE_WORD.search(line, pos)) is not None:
        start = word.start()
        stop = _RE_KEY_CHARS.match(line, start).end()
        after = line[stop : stop + 1]
        if stop - start < 2:  # a key has at least 2 characters
            pos = stop
        elif after == ":":
            value, pos = _value(line, stop + 1)
            yield line[start:stop], value
        elif after == ",":
            yield line[start:stop], None
            pos = stop + 1
        elif _at_end(line, stop):
            yield line[start:stop], None
            pos = stop
        else:
            pos = stop


def _value(line: str, pos: int) -> tuple[str, int]:
    r"""The value after a key's ``:`` at ``pos`` (``\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)``), and
    where the match ends."""
    start = _RE_SPACES.match(line, pos).end()
    if line[start : start + 1] == '"':
        close = _RE_QUOTED_BODY.match(line, start + 1).end()
        if close > start + 1 and line[close : close + 1] == '"':
            if line[close + 1 : close + 2] == ",":
                return line[start : close + 1], close + 2
            if _at_end(line, close + 1):
                return line[start : close + 1], close + 1
    comma = line.find(",", start)
    if comma == -1:
        return line[start:], len(line)
    return line[start:comma], comma + 1


def _at_end(line: str, pos: int) -> bool:
    """Whether regex ``$`` matches at ``pos``: the end, or just before a final newline."""
    return pos == len(line) or (pos == len(line) - 1 and line[pos] == "\n")


def _split_prompts(lines: list[str]) -> tuple[str, str]:
    # Mirrors A1111's loop (`prompt += ("\n" if prompt else "") + line`), including its quirk that
    # empty lines before the first non-empty one add no "\n"; joined once, not line by line.
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith(NEGATIVE_PREFIX):
            in_negative = True
            line = line[len(NEGATIVE_PREFIX) :].strip()
        part = negative if in_negative else prompt
        if line or part:  # `part` never starts with an empty line
            part.append(line)
    return "\n".join(prompt), "\n".join(negative)


def _unquote(value: str) -> str:
    if not (value[0] == '"' and value[-1] == '"'):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value  # A1111 keeps text it cannot unquote as written


def _to_int(key: str, raw: str) -> int:
    text = raw.strip()
    if not _RE_INT.fullmatch(text):
        raise InvalidArgument(f"infotext {key!r} must be a whole number, got {_shown(raw)}")
    _check_length(key, text, _MAX_INT_CHARS, "digits")
    return int(text)


def _to_float(key: str, raw: str) -> float:
    text = raw.strip()
    if not _RE_FLOAT.fullmatch(text):  # float() would also take "nan", "inf" and "1_0"
        raise InvalidArgument(f"infotext {key!r} must be a number like 7.0, got {_shown(raw)}")
    _check_length(key, text, _MAX_FLOAT_CHARS, "characters")
    value = float(text)
    if not math.isfinite(value):  # "1e999"
        raise InvalidArgument(f"infotext {key!r} must be a finite number like 7.0, got {_shown(raw)}")
    return value


def _as_str(key: str, raw: str) -> str:
    return raw


def _to_size(key: str, raw: str) -> tuple[int, int]:
    match = _RE_SIZE.fullmatch(raw.strip())
    if match is None:
        raise InvalidArgument(f"infotext {key!r} must be WIDTHxHEIGHT like 512x768, got {_shown(raw)}")
    _check_length(key, match[1], _MAX_INT_CHARS, "digits")
    _check_length(key, match[2], _MAX_INT_CHARS, "digits")
    return int(match[1]), int(match[2])


def _check_length(key: str, number: str, limit: int, unit: str) -> None:
    if len(number) > limit:
        raise InvalidArgument(
            f"infotext {key!r} is a number of {len(number)} {unit}; at most {limit} are read, "
            f"got {_shown(number)}"
        )


def _shown(raw: str, limit: int = 80) -> str:
    """``raw`` for an error message, cut short: a 1 MB value should not make a 1 MB message."""
    return repr(raw) if len(raw) <= limit else f"{raw[:limit]!r}... ({len(raw)} characters)"


# Well-known keys and how :meth:`ParsedInfotext.value` converts them; others stay strings.
TYPED_KEYS: dict[str, Callable[[str, str], object]] = {
    "Steps": _to_int,
    "Seed": _to_int,
    "Variation seed": _to_int,
    "Clip skip": _to_int,
    "Hires steps": _to_int,
    "DeepCache interval": _to_int,
    "CFG scale": _to_float,
    "Image CFG scale": _to_float,
    "Hires upscale": _to_float,
    "Denoising strength": _to_float,
    "Variation seed strength": _to_float,
    "Token merging ratio": _to_float,
    "CFG truncation": _to_float,
    "Size": _to_size,
    "Seed resize from": _to_size,
    "Hires resize": _to_size,
    "SD upscale tile": _to_size,
    "Sampler": _as_str,
    "Schedule type": _as_str,
    "Model": _as_str,
    "Model hash": _as_str,
}
