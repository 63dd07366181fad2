"""Grids with legends, as AUTOMATIC1111's ``images.draw_grid_annotations`` draws them: a band of
labels over the columns, one left of the rows, and a title over the whole grid.

A label is drawn black, or grey and struck through when it is inactive (the parts a prompt
matrix's cell leaves out). The font is Pillow's own scalable default (``ImageFont.load_default``,
shipped with Pillow), at a size that grows with the cells and never drops below
:data:`MIN_FONT_SIZE`, so a legend over 64×64 images stays readable; long labels wrap.

>>> grid = annotated_grid([Image.new("RGB", (64, 64))] * 4, 2, [[Label("a")], [Label("b")]],
...                       [[Label("c")], [Label("d")]])
>>> grid.size[0] > 128 and grid.size[1] > 128
True
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

MIN_FONT_SIZE = 14
PAD = 6  # pixels around a legend's text
INACTIVE = (153, 153, 153)  # A1111's colour of a prompt matrix's absent part


@dataclass(frozen=True)
class Label:
    """One line of a legend; ``active`` False draws it grey and struck through."""

    text: str
    active: bool = True


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def font_size(width: int, height: int) -> int:
    """A1111's ``(width + height) // 25``, at least :data:`MIN_FONT_SIZE`."""
    return max(MIN_FONT_SIZE, (width + height) // 25)


def wrap(text: str, width: int, face) -> list[str]:
    """``text`` broken at spaces (and inside words longer than a line) into lines at most ``width`` wide."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if face.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = ""
        for char in word:  # a word wider than the line: broken where it must be
            if line and face.getlength(line + char) > width:
                lines.append(line)
                line = ""
            line += char
    lines.append(line)
    return lines


def legend(labels: list[Label], width: int, height: int, size: int) -> Image.Image:
    """One column's or row's legend: its labels wrapped to ``width`` and centred in a white box."""
    face = font(size)
    box = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(box)
    lines = [(text, label.active) for label in labels for text in wrap(label.text, width - 2 * PAD, face)]
    line_height = _line_height(face)
    y = (height - line_height * len(lines)) // 2
    for text, active in lines:
        length = face.getlength(text)
        x = (width - length) / 2
        colour = (0, 0, 0) if active else INACTIVE
        draw.text((x, y), text, font=face, fill=colour)
        if not active:
            middle = y + line_height // 2
            draw.line((x, middle, x + length, middle), fill=colour, width=max(1, size // 10))
        y += line_height
    return box


def _line_height(face) -> int:
    top, bottom = face.getbbox("Ag")[1::2]
    return bottom + max(2, (bottom - top) // 4)


def _lines_height(labels: list[Label], width: int, face) -> int:
    count = sum(len(wrap(label.text, width - 2 * PAD, face)) for label in labels)
    return count * _line_height(face) + 2 * PAD


def _left_width(rows: list[list[Label]], cell: tuple[int, int], face) -> int:
    """The left band's width: its longest line, up to the cells' width or 160 pixels, whichever is more."""
    widest = max((face.getlength(label.text) for labels in rows for label in labels), default=0)
    return int(min(widest + 2 * PAD + 1, max(cell[0], 160)))


def annotated_grid(images: list[Image.Image], cols: int, top: list[list[Label]] | None,
                   left: list[list[Label]] | None, title: str | None = None) -> Image.Image:
    """``images`` row by row, ``cols`` to a row, with ``top[c]`` over column ``c``, ``left[r]`` left
    of row ``r`` and ``title`` over everything (each may be None or empty: no band). Cells take the
    first image's size."""
    w, h = images[0].size
    rows = -(-len(images) // cols)
    size = font_size(w, h)
    face = font(size)
    has_top = bool(top) and any(label.text for labels in top for label in labels)
    has_left = bool(left) and any(label.text for labels in left for label in labels)
    band_top = max(_lines_height(labels, w, face) for labels in top) if has_top else 0
    band_left = _left_width(left, (w, h), face) if has_left else 0
    band_title = _lines_height([Label(title)], band_left + cols * w, face) if title else 0
    grid = Image.new("RGB", (band_left + cols * w, band_title + band_top + rows * h), "white")
    if title:
        grid.paste(legend([Label(title)], grid.width, band_title, size), (0, 0))
    for c in range(cols if has_top else 0):
        grid.paste(legend(top[c], w, band_top, size), (band_left + c * w, band_title))
    for r in range(rows if has_left else 0):
        grid.paste(legend(left[r], band_left, h, size), (0, band_title + band_top + r * h))
    for i, image in enumerate(images):
        cell = image.convert("RGB").resize((w, h)) if image.size != (w, h) else image.convert("RGB")
        grid.paste(cell, (band_left + (i % cols) * w, band_title + band_top + (i // cols) * h))
    return grid


def side_by_side(grids: list[Image.Image]) -> Image.Image:
    """Grids in one row, tops aligned, on white (A1111's grid of the Z values' grids)."""
    width = sum(g.width for g in grids)
    out = Image.new("RGB", (width, max(g.height for g in grids)), "white")
    x = 0
    for g in grids:
        out.paste(g, (x, 0))
        x += g.width
    return out
