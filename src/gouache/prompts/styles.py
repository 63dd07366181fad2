"""Prompt styles: AUTOMATIC1111's ``styles.csv``, saved prompt fragments applied by name.

A style is a row ``name,prompt,negative_prompt`` (A1111's ``modules/styles.py``; an old file's
``text`` column is read as ``prompt``). Applying one to a prompt (A1111's ``merge_prompts``): a style
text holding ``{prompt}`` has it replaced by the prompt; any other is appended after ``", "`` (empty
parts left out). Several styles apply in order, to the prompt and the negative prompt alike.

Styles are read from ``$GOUACHE_HOME/styles.csv``, then every ``$GOUACHE_HOME/styles/*.csv`` in name
order; a later row with the same name replaces an earlier one, as in A1111.

>>> merge("oil painting, {prompt}, masterpiece", "a cat"), merge("oil painting", "a cat")
('oil painting, a cat, masterpiece', 'a cat, oil painting')
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from gouache.errors import InvalidArgument

MAX_STYLES_BYTES = 4 * 2**20  # one styles file


@dataclass(frozen=True)
class Style:
    """One row of a styles file."""

    name: str
    prompt: str = ""
    negative_prompt: str = ""


def style_files(home: Path | None = None) -> list[Path]:
    """The styles files that exist: ``styles.csv``, then ``styles/*.csv`` in name order."""
    if home is None:
        from gouache.models.home import gouache_home

        home = gouache_home()
    folder = home / "styles"
    extra = sorted(p for p in folder.glob("*.csv") if p.is_file()) if folder.is_dir() else []
    return [p for p in [home / "styles.csv"] if p.is_file()] + extra


def load_styles(home: Path | None = None) -> dict[str, Style]:
    """Every style by name, from :func:`style_files`; a malformed file is one :class:`InvalidArgument`."""
    styles: dict[str, Style] = {}
    for path in style_files(home):
        for style in read_styles(path):
            styles[style.name] = style
    return styles


def read_styles(path: Path) -> list[Style]:
    """The rows of one styles file (UTF-8, a BOM allowed, A1111's columns)."""
    if path.stat().st_size > MAX_STYLES_BYTES:
        raise InvalidArgument(f"{path} is over {MAX_STYLES_BYTES} bytes, too big for a styles file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"{path} cannot be read as UTF-8 text: {e}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True)
    columns = reader.fieldnames or []
    if "name" not in columns or not ({"prompt", "text"} & set(columns)):
        raise InvalidArgument(f"{path} must have the columns name,prompt,negative_prompt (A1111's styles.csv); "
                              f"its first line has {', '.join(columns) or 'nothing'}")
    try:
        return [Style(row["name"], row.get("prompt", row.get("text")) or "", row.get("negative_prompt") or "")
                for row in reader if row.get("name")]
    except csv.Error as e:
        raise InvalidArgument(f"{path}, line {reader.line_num}: {e}") from None


def find_styles(names, styles: dict[str, Style] | None = None) -> list[Style]:
    """The styles ``names`` name, in order; an unknown one raises :class:`~gouache.errors.UnknownName`
    listing the styles there are."""
    from gouache.models.names import Names

    styles = load_styles() if styles is None else styles
    table = Names("style", [list(styles)], lambda name: [[name]], str)
    hint = "" if styles else " (styles are the rows of $GOUACHE_HOME/styles.csv: name,prompt,negative_prompt)"
    return [styles[table.lookup(name, hint)] for name in names]


def merge(style_text: str, prompt: str) -> str:
    """``prompt`` with one style text applied (A1111's ``merge_prompts``)."""
    if "{prompt}" in style_text:
        return style_text.replace("{prompt}", prompt)
    return ", ".join(part for part in (prompt.strip(), style_text.strip()) if part)


def apply_styles(prompt: str, negative_prompt: str, styles: list[Style]) -> tuple[str, str]:
    """The prompt and negative prompt with ``styles`` applied in order.

    >>> apply_styles("a cat", "", [Style("Oil", "oil painting, {prompt}", "photo")])
    ('oil painting, a cat', 'photo')
    """
    for style in styles:
        prompt, negative_prompt = merge(style.prompt, prompt), merge(style.negative_prompt, negative_prompt)
    return prompt, negative_prompt


def extract_styles(prompt: str, negative_prompt: str, styles: dict[str, Style]) -> tuple[list[str], str, str]:
    """The styles an infotext's prompts were made with, and the prompts without them (A1111's
    ``extract_styles_from_prompt``, which fills an infotext's ``Styles array``): styles are peeled off
    the outside in while one fits; a style counts only when applying it again gives the text back.

    >>> oil = Style("Oil", "oil painting, {prompt}", "photo")
    >>> extract_styles("oil painting, a cat", "photo", {"Oil": oil})
    (['Oil'], 'a cat', '')
    """
    found: list[str] = []
    left = dict(styles)
    while True:
        for name, style in left.items():
            if not (style.prompt or style.negative_prompt):
                continue
            inner = _unmerge(style.prompt, prompt), _unmerge(style.negative_prompt, negative_prompt)
            if None not in inner:
                prompt, negative_prompt = inner
                found.append(name)
                del left[name]
                break
        else:
            return found[::-1], prompt, negative_prompt


def _unmerge(style_text: str, text: str) -> str | None:
    """The text that :func:`merge` turns into ``text`` with this style, or None."""
    if "{prompt}" in style_text:
        left, _, right = style_text.partition("{prompt}")
        if text.startswith(left) and text.endswith(right) and len(text) >= len(left) + len(right):
            inner = text[len(left) : len(text) - len(right)]
            return inner if merge(style_text, inner) == text else None
        return None
    style = style_text.strip()
    if not style:
        return text if merge(style_text, text) == text else None
    if text == style:
        return ""
    if text.endswith(", " + style):
        inner = text[: -len(style) - 2]
        return inner if merge(style_text, inner) == text else None
    return None
