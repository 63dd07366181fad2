"""The axes of an X/Y/Z plot: what each one changes in a request, and how its values are written.

An axis is given as ``"LABEL: VALUES"`` (``"Sampler: Euler, DPM++ 2M"``, ``"CFG scale: 3-9 (+2)"``).
The labels are the infotext keys of the field table (:data:`gouache.pipelines.fields.FIELDS`:
``Steps``, ``CFG scale``, ``Seed``, ``Hires steps``, ...) and a few of their own (``Prompt S/R``,
``Prompt order``, ``Size``, ``Checkpoint name``, ``LoRA weight``, ``ControlNet weight``); AUTOMATIC1111's
labels (``CFG Scale``, ``Var. seed``, ``Denoising``) name the same axes, case does not matter. The
values follow A1111's ``scripts/xyz_grid.py``: comma-separated, CSV-quoted when a value holds a
comma (``"a, b", c``), and for numbers the ranges ``1-5``, ``1-10 (+2)``, ``10-1 (-3)``, ``1-10 [4]``
(four values from 1 to 10) and ``3.5-7.5 (+1.5)``. Unlike A1111, a range never passes its end
(``3.5-7.5 (+1.5)`` is 3.5, 5, 6.5) and ``5-1`` counts down.

Each value is applied with :meth:`Axis.apply`, which returns a copy of the request with that one
change (:func:`dataclasses.replace`); the ranges are read by a hand-written scanner, linear in
the text.

>>> axis, values = parse_axis("CFG scale: 3-9 (+2)")
>>> axis.label, values
('CFG scale', [3.0, 5.0, 7.0, 9.0])
>>> parse_axis('Prompt S/R: red, "green, bright", blue')[1]
['red', 'green, bright', 'blue']
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import math
import os
import random
from dataclasses import dataclass, replace
from typing import Any, Callable

from gouache.errors import InvalidArgument, UnknownName
from gouache.pipelines.fields import FIELDS
from gouache.pipelines.request import MAX_SEED, GenerationRequest, Img2ImgRequest

MAX_VALUES = 400  # values of one axis (and images of one plot: gouache.pipelines.xyz.MAX_IMAGES)
MAX_AXIS_CHARS = 10_000  # the text of one axis's values
MAX_ORDER_ITEMS = 5  # Prompt order plots every permutation: 5! = 120


@dataclass(frozen=True)
class Axis:
    """One kind of axis: ``kind`` types its values (int, float, str); ``change(request, value,
    values)`` gives the request with the value applied; ``bare`` labels a cell with the value
    alone (A1111's ``format_value``), else ``"LABEL: value"``."""

    label: str
    kind: type
    change: Callable[[Any, Any, list], Any]
    bare: bool = False
    aliases: tuple[str, ...] = ()
    permutations: bool = False  # Prompt order: the values are every order of the items given
    random_seeds: bool = False  # Seed, Variation seed: -1 picks a seed, once for the whole plot

    @property
    def is_nothing(self) -> bool:
        return self.label == "Nothing"

    def apply(self, request, value, values: list):
        """``request`` with ``value`` applied, validated later with the whole cell."""
        return self.change(request, value, values)

    def cell_label(self, value) -> str:
        """The legend of a column or row, as A1111 writes it (floats to 8 decimals)."""
        if self.is_nothing:
            return ""
        if self.permutations:
            text = ", ".join(value)
        elif isinstance(value, float):
            text = str(round(value, 8))
        elif self.label == "Checkpoint name" and isinstance(value, str):
            text = os.path.basename(value)
        else:
            text = str(value)
        return text if self.bare else f"{self.label}: {text}"


# -- what each axis changes -----------------------------------------------------------------------


def _set(attr: str, sets: dict | None = None, needs: Callable | None = None, mode: type = GenerationRequest):
    """An axis over one request attribute (and the attributes its option turns on, e.g. the hires
    fix for ``Hires upscale``); ``needs(request)`` says in words why it would have no effect."""
    def change(req, value, values):
        if not isinstance(req, mode):
            raise InvalidArgument(f"the axis of `{attr}` is for {mode.__name__} requests, not {type(req).__name__}")
        if needs is not None:
            why = needs(req)
            if why:
                raise InvalidArgument(why)
        return replace(req, **{attr: value}, **(sets or {}))

    return change


def _needs_hires(req) -> str | None:
    return None if req.enable_hr else "the hires fix is off, so a hires axis changes nothing: turn it on (--hires-scale)"


def _needs_strength(req) -> str | None:
    if isinstance(req, Img2ImgRequest) or req.enable_hr:
        return None
    return ("`denoising_strength` changes only img2img and the hires fix's second pass; turn the hires fix on "
            "(--hires-scale) or plot img2img")


def _nothing(req, value, values):
    return req


def _prompt_sr(req, value: str, values: list):
    """A1111's Prompt S/R: the first value is searched in the prompt and the negative prompt, and
    every occurrence is replaced by each value in turn (the first value's cell keeps the prompt)."""
    search = values[0]
    if not search or (search not in req.prompt and search not in req.negative_prompt):
        raise InvalidArgument(f"Prompt S/R: the first value {search!r} is not in the prompt or the negative "
                              "prompt; the first value is the text to replace, e.g. \"Prompt S/R: red, green\" "
                              "for a prompt with \"red\"")
    return replace(req, prompt=req.prompt.replace(search, value),
                   negative_prompt=req.negative_prompt.replace(search, value))


def _prompt_order(req, order: tuple, values: list):
    """A1111's Prompt order: the items, each found in the prompt, put back in this order."""
    prompt = req.prompt
    found = sorted((prompt.find(item), item) for item in order)
    missing = [item for at, item in found if at < 0]
    if missing:
        raise InvalidArgument(f"Prompt order: {missing[0]!r} is not in the prompt")
    parts = []
    for _, item in found:  # the text before each item, in the prompt's order
        at = prompt.find(item)
        parts.append(prompt[:at])
        prompt = prompt[at + len(item):]
    return replace(req, prompt="".join(part + item for part, item in zip(parts, order)) + prompt)


def _size(req, value: str, values: list):
    """``WxH`` (A1111's Size axis)."""
    width, sep, height = value.lower().partition("x")
    try:
        if not sep:
            raise ValueError
        return replace(req, width=int(width.strip()), height=int(height.strip()))
    except ValueError:
        raise InvalidArgument(f"Size: {value[:40]!r} is not WIDTHxHEIGHT, e.g. 64x96") from None


def _checkpoint(req, value: str, values: list):
    return replace(req, model=value)


def _lora_weight(req, value: float, values: list):
    """Every ``<lora:NAME...>`` tag of the prompt at this weight (text encoder and UNet)."""
    out, rest, changed = [], req.prompt, 0
    while True:
        start = rest.find("<lora:")
        end = rest.find(">", start) if start >= 0 else -1
        if start < 0 or end < 0:
            break
        name = rest[start + len("<lora:"):end].split(":")[0]
        out.append(f"{rest[:start]}<lora:{name}:{value:g}>")
        rest, changed = rest[end + 1:], changed + 1
    if not changed:
        raise InvalidArgument("LoRA weight: the prompt has no <lora:NAME:WEIGHT> tag (or --lora) to weigh")
    return replace(req, prompt="".join(out) + rest)


def _control_weight(req, value: float, values: list):
    if not req.controls:
        raise InvalidArgument("ControlNet weight: the request has no ControlNet unit (--control) to weigh")
    return replace(req, controls=[replace(unit, weight=value) for unit in req.controls])


# -- the table ----------------------------------------------------------------------------------------

# A1111's labels of the same axes (its ``axis_options``), where they differ from gouache's
A1111_LABELS = {"CFG Scale": "CFG scale", "Var. seed": "Variation seed", "Var. strength": "Variation seed strength",
                "Denoising": "Denoising strength", "Model": "Checkpoint name"}
# the field table's keys that are no axis: how the request is drawn, not one value (Size, Model have
# their own axes; a refiner must be loaded beside the model; Masked content is written as a name)
_NOT_AXES = {"Size", "Model", "Refiner", "Old prompt editing timelines", "Masked content", "Inpaint area",
             "Mask invert", "Segmenter", "Mask prompt"}
_NEEDS = {"hr_second_pass_steps": _needs_hires, "hr_upscaler": _needs_hires, "denoising_strength": _needs_strength}
_BARE = {"sampler"}  # A1111 labels a sampler column by its name alone


def _kind(mode: type, attr: str) -> type | None:
    """int, float or str from the request field's default or annotation; None for other types."""
    f = next((f for f in dataclasses.fields(mode) if f.name == attr), None)
    if f is None:
        return None
    if f.default is not dataclasses.MISSING and f.default is not None:
        kind = type(f.default)
        return kind if kind in (int, float, str) else None
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    return next((k for k in (int, float, str) if text.startswith(k.__name__)), None)


def _field_axes() -> list[Axis]:
    """One axis per request field that the field table writes to the infotext as one value."""
    out = []
    for f in FIELDS:
        if f.key is None or f.attr is None or f.key in _NOT_AXES:
            continue
        kind = _kind(f.mode, f.attr)
        if kind is None:
            continue
        sets = next((flag.sets for flag in f.flags if flag.sets), None)
        out.append(Axis(f.key, kind, _set(f.attr, sets, _NEEDS.get(f.attr), f.mode), bare=f.attr in _BARE,
                        random_seeds=f.attr in ("seed", "subseed")))
    return out


def _axes() -> dict[str, Axis]:
    own = [
        Axis("Nothing", str, _nothing),
        Axis("Prompt S/R", str, _prompt_sr, bare=True),
        Axis("Prompt order", str, _prompt_order, bare=True, permutations=True),
        Axis("Size", str, _size),
        Axis("Checkpoint name", str, _checkpoint, bare=True, aliases=("Model",)),
        Axis("LoRA weight", float, _lora_weight),
        Axis("ControlNet weight", float, _control_weight),
    ]
    table = {axis.label: axis for axis in own[:1] + _field_axes() + own[1:]}
    for a1111, ours in A1111_LABELS.items():
        if ours in table and a1111 not in table:
            table[ours] = replace(table[ours], aliases=table[ours].aliases + (a1111,))
    return table


_TABLE: dict[str, Axis] | None = None


def axes() -> dict[str, Axis]:
    """Every axis by label, built once from the field table."""
    global _TABLE
    if _TABLE is None:
        _TABLE = _axes()
    return _TABLE


# AUTOMATIC1111 1.10's axis options, in order, as its txt2img and img2img tabs list them (an API
# body's ``script_args`` names the axis types by index into these). gouache has those in ``axes()``.
A1111_TXT2IMG = (
    "Nothing", "Seed", "Var. seed", "Var. strength", "Steps", "Hires steps", "CFG Scale", "Prompt S/R",
    "Prompt order", "Sampler", "Hires sampler", "Checkpoint name", "Negative Guidance minimum sigma",
    "Sigma Churn", "Sigma min", "Sigma max", "Sigma noise", "Schedule type", "Schedule min sigma",
    "Schedule max sigma", "Schedule rho", "Beta schedule alpha", "Beta schedule beta", "Eta", "Clip skip",
    "Denoising", "Initial noise multiplier", "Extra noise", "Hires upscaler", "VAE", "Styles", "UniPC Order",
    "Face restore", "Token merging ratio", "Token merging ratio high-res", "Always discard next-to-last sigma",
    "SGM noise multiplier", "Refiner checkpoint", "Refiner switch at", "RNG source", "FP8 mode", "Size",
)
A1111_IMG2IMG = (
    "Nothing", "Seed", "Var. seed", "Var. strength", "Steps", "CFG Scale", "Image CFG Scale", "Prompt S/R",
    "Prompt order", "Sampler", "Checkpoint name", "Negative Guidance minimum sigma", "Sigma Churn", "Sigma min",
    "Sigma max", "Sigma noise", "Schedule type", "Schedule min sigma", "Schedule max sigma", "Schedule rho",
    "Beta schedule alpha", "Beta schedule beta", "Eta", "Clip skip", "Denoising", "Initial noise multiplier",
    "Extra noise", "Cond. Image Mask Weight", "VAE", "Styles", "UniPC Order", "Face restore", "Token merging ratio",
    "Token merging ratio high-res", "Always discard next-to-last sigma", "SGM noise multiplier",
    "Refiner checkpoint", "Refiner switch at", "RNG source", "FP8 mode", "Size",
)


def find_axis(name: str) -> Axis:
    """The axis a label names (gouache's or A1111's, any case); an unknown one lists them all."""
    if not isinstance(name, str):
        raise InvalidArgument(f"an axis is named by its label, e.g. \"Sampler\", got {type(name).__name__}")
    key = name.strip().casefold()
    for axis in axes().values():
        if key in (axis.label.casefold(), *(a.casefold() for a in axis.aliases)):
            return axis
    known = ", ".join(axes())
    if key in (label.casefold() for label in A1111_TXT2IMG + A1111_IMG2IMG):
        raise UnknownName(f"the axis {name.strip()!r} is A1111's, which gouache does not have; gouache's axes: {known}")
    raise UnknownName(f"unknown axis {name.strip()[:60]!r}; one of: {known}")


def a1111_axis(index, img2img: bool = False) -> Axis:
    """The axis of an A1111 ``script_args`` axis type: an index into its txt2img (or img2img) list,
    or a label."""
    if isinstance(index, str) and not index.strip().lstrip("-").isdigit():
        return find_axis(index)
    labels = A1111_IMG2IMG if img2img else A1111_TXT2IMG
    try:
        if isinstance(index, bool) or isinstance(index, float) and not index.is_integer():
            raise ValueError
        i = int(index)
        if not 0 <= i < len(labels):
            raise ValueError
    except (TypeError, ValueError):
        tab = "img2img" if img2img else "txt2img"
        raise InvalidArgument(f"axis type {str(index)[:40]!r} is not an index of A1111's {tab} axis list "
                              f"(0 to {len(labels) - 1}) or an axis label") from None
    return find_axis(labels[i])


# -- values -------------------------------------------------------------------------------------------


def parse_axis(text: str) -> tuple[Axis, list]:
    """``"LABEL: VALUES"`` as its axis and typed values (see the module's docstring)."""
    if not isinstance(text, str):
        raise InvalidArgument(f"an axis is \"LABEL: VALUES\", e.g. \"Steps: 10, 20\", got {type(text).__name__}")
    label, sep, values = text.partition(":")
    if not sep:
        raise InvalidArgument(f"axis {text[:60]!r} is not \"LABEL: VALUES\", e.g. \"Sampler: Euler, DPM++ 2M\"")
    axis = find_axis(label)
    return axis, axis_values(axis, values)


def split_values(text: str) -> list[str]:
    """Comma-separated values, CSV-quoted where a value holds a comma; each stripped (A1111's
    ``csv_string_to_list_strip``, with spaces before a quote allowed)."""
    if len(text) > MAX_AXIS_CHARS:
        raise InvalidArgument(f"the axis's values are {len(text)} characters, over the limit of {MAX_AXIS_CHARS}")
    try:
        rows = list(csv.reader(io.StringIO(text), skipinitialspace=True))
    except csv.Error as err:
        raise InvalidArgument(f"the axis's values are not comma-separated values: {err}") from None
    return [value.strip() for value in itertools.chain.from_iterable(rows)]


def axis_values(axis: Axis, text: str) -> list:
    """The typed values of ``text`` for ``axis``: number ranges expanded, at most :data:`MAX_VALUES`."""
    if axis.is_nothing:
        return [None]
    raw = split_values(text) if isinstance(text, str) else None
    if raw is None:
        raise InvalidArgument(f"{axis.label}: the values must be text, e.g. \"1, 2, 3\"")
    if not any(raw):
        raise InvalidArgument(f"{axis.label}: the axis has no values; give them comma-separated, e.g. "
                              f"\"{axis.label}: {_example(axis)}\"")
    if axis.permutations:
        if len(raw) > MAX_ORDER_ITEMS:
            raise InvalidArgument(f"Prompt order: {len(raw)} items make {math.factorial(len(raw))} orders; "
                                  f"give at most {MAX_ORDER_ITEMS}")
        return list(itertools.permutations(raw))
    out: list = []
    for value in raw:
        if axis.kind in (int, float):
            out.extend(_numbers(axis, value, MAX_VALUES - len(out)))
        else:
            out.append(value)
        if len(out) > MAX_VALUES:
            break
    if len(out) > MAX_VALUES:
        raise InvalidArgument(f"{axis.label}: more than {MAX_VALUES} values on one axis")
    return out


def fixed_seeds(axis: Axis, values: list) -> list:
    """A Seed or Variation seed axis with -1 picks a seed for that value, once (A1111's ``fix_axis_seeds``)."""
    if not axis.random_seeds:
        return values
    return [random.randrange(MAX_SEED) if v == -1 else v for v in values]


def _example(axis: Axis) -> str:
    return {int: "1-5", float: "3.5-7.5 (+1.5)"}.get(axis.kind, "a, b")


def _numbers(axis: Axis, text: str, room: int) -> list:
    """One value or an A1111 range of ``axis``'s kind; ``room`` bounds how many a range may make."""
    found = _scan_range(text)
    if found is None:
        return [_typed(axis, text)]
    start, end, step, count = found
    if axis.kind is int and any(isinstance(v, float) and not v.is_integer() for v in (start, end, step) if v is not None):
        raise InvalidArgument(f"{axis.label}: {text[:40]!r} is a range of whole numbers, e.g. 1-10 (+2)")
    if count is not None:
        if count < 1 or count > room:
            raise InvalidArgument(f"{axis.label}: {text[:40]!r} asks for {count:g} values; give 1 to {max(room, 1)}")
        values = [start + (end - start) * i / (count - 1) for i in range(int(count))] if count > 1 else [start]
    else:
        step = step if step is not None else (1 if end >= start else -1)
        if step == 0 or (end - start) * step < 0:
            raise InvalidArgument(f"{axis.label}: {text[:40]!r} never reaches its end: the step must go from "
                                  "start to end, e.g. 1-10 (+2) or 10-1 (-3)")
        n = math.floor((end - start) / step + 1e-9) + 1
        if n > room:
            raise InvalidArgument(f"{axis.label}: {text[:40]!r} makes {n} values, over the limit of {MAX_VALUES}")
        values = [start + i * step for i in range(n)]
    if axis.kind is int:
        return [int(v) for v in values]
    return [round(float(v), 8) for v in values]


def _typed(axis: Axis, text: str):
    try:
        if len(text) > 40:
            raise ValueError
        value = axis.kind(text)
        if axis.kind is float and not math.isfinite(value):
            raise ValueError
        return value
    except ValueError:
        what = "a whole number" if axis.kind is int else "a number"
        raise InvalidArgument(f"{axis.label}: {text[:40]!r} is not {what} or a range like {_example(axis)}") from None


def _scan_range(text: str) -> tuple[float, float, float | None, float | None] | None:
    """``START-END``, ``START-END (STEP)`` or ``START-END [COUNT]`` as numbers, or None when the text
    is no range (a plain value, e.g. ``-1``). One pass, no backtracking."""
    pos = 0
    start, pos = _scan_number(text, pos)
    if start is None:
        return None
    pos = _skip_spaces(text, pos)
    if pos >= len(text) or text[pos] != "-":
        return None
    end, pos = _scan_number(text, pos + 1)
    if end is None:
        return None
    pos = _skip_spaces(text, pos)
    step = count = None
    if pos < len(text) and text[pos] in "([":
        close = ")" if text[pos] == "(" else "]"
        number, after = _scan_number(text, pos + 1)
        after = _skip_spaces(text, after)
        if number is None or after >= len(text) or text[after] != close:
            return None
        if close == ")":
            step = number
        else:
            count = number
        pos = _skip_spaces(text, after + 1)
    return (start, end, step, count) if pos == len(text) else None


def _skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _scan_number(text: str, pos: int) -> tuple[float | None, int]:
    """A signed decimal number at ``pos`` (spaces around it and after the sign allowed)."""
    pos = _skip_spaces(text, pos)
    sign = 1.0
    if pos < len(text) and text[pos] in "+-":
        sign = -1.0 if text[pos] == "-" else 1.0
        pos = _skip_spaces(text, pos + 1)
    begin = pos
    while pos < len(text) and (text[pos].isdigit() and text[pos].isascii()):
        pos += 1
    if pos == begin:
        return None, pos
    if pos < len(text) and text[pos] == ".":
        pos += 1
        while pos < len(text) and (text[pos].isdigit() and text[pos].isascii()):
            pos += 1
    digits = text[begin:pos]
    if len(digits) > 30:
        return None, pos
    return sign * float(digits), pos
