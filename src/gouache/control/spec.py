"""What a request asks of ControlNet: one :class:`ControlSpec` per net, and its infotext.

The infotext follows the ControlNet extension of AUTOMATIC1111, one key per unit::

    ControlNet 0: "Module: canny, Model: gouache-tiny-edges [1a2b3c4d], Weight: 1.0, Resize Mode: Crop and Resize,
                   Guidance Start: 0.0, Guidance End: 1.0, Image: edges.png"

``Image`` is gouache's own addition: the control image's path when it came from a file, so that
``gouache generate --from`` can make the image again (the PNG cannot hold the control image; an
image given as pixels in Python is written without it, and ``--from`` then needs ``--control``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from gouache.errors import InvalidArgument, check_number

INFOTEXT_KEY = re.compile(r"^ControlNet (\d+)$")
RESIZE_MODE = "Crop and Resize"  # the extension's default; gouache crops and resizes control images the same way


@dataclass
class ControlSpec:
    """One ControlNet unit: the control image, how it is preprocessed, which net, how strongly, when.

    ``image``: a PIL image or a path; None uses the request's init image (img2img, inpainting, and
    each tile when upscaling). ``model``: a ControlNet name or path
    (:func:`~gouache.control.models.resolve_controlnet`), a loaded
    :class:`~gouache.control.models.LoadedControlNet`, or None for the model's default for this
    preprocessor (gouache-tiny + canny: the built-in ``gouache-tiny-edges``). ``weight`` multiplies
    the net's residuals; it acts from fraction ``start`` to ``end`` of the steps.

    >>> ControlSpec("canny", Image.new("RGB", (64, 64)), weight=0.8, end=0.5).validate()
    """

    preprocessor: str = "none"
    image: Image.Image | str | Path | None = None
    model: object | None = None
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0

    def validate(self, index: int = 0, needs_image: bool = True) -> None:
        """Raise :class:`InvalidArgument` (or ``UnknownName``) naming the unit, the field and the fix."""
        from gouache.control.models import LoadedControlNet, resolve_controlnet
        from gouache.control.preprocessors import get_preprocessor

        where = f"`controls[{index}]`"
        get_preprocessor(self.preprocessor)
        if self.image is None:
            if needs_image:
                raise InvalidArgument(f"{where} has no image; give the image to take the {self.preprocessor} map from")
        elif isinstance(self.image, (str, Path)):
            if not Path(self.image).expanduser().is_file():
                raise InvalidArgument(f"{where}: control image {str(self.image)!r} does not exist")
        elif not isinstance(self.image, Image.Image):
            raise InvalidArgument(f"{where}.image must be a PIL image or a path, got {type(self.image).__name__}")
        check_number(f"{where}.weight", self.weight, 0, 2)
        for name in ("start", "end"):
            check_number(f"{where}.{name}", getattr(self, name), 0, 1, " (a fraction of the steps)")
        if not 0 <= self.start < self.end <= 1:
            raise InvalidArgument(f"{where}: start and end are fractions of the steps with 0 <= start < end <= 1, "
                                  f"got start={self.start}, end={self.end}")
        if isinstance(self.model, str):
            resolve_controlnet(self.model)
        elif self.model is not None and not isinstance(self.model, LoadedControlNet):
            raise InvalidArgument(f"{where}.model must be a ControlNet name or path, a LoadedControlNet or None, "
                                  f"got {type(self.model).__name__}")

    def load_image(self) -> Image.Image | None:
        """The control image as RGB (a path is opened)."""
        from gouache.images import flatten, load_image

        if self.image is None:
            return None
        image = load_image(self.image, "control image") if isinstance(self.image, (str, Path)) else self.image
        return flatten(image)

    def infotext(self, model_title: str) -> str:
        """This unit as the A1111 extension writes it (the value of ``ControlNet N``)."""
        from gouache.metadata.infotext import quote

        parts = [f"Module: {self.preprocessor}", f"Model: {model_title}", f"Weight: {float(self.weight):g}",
                 f"Resize Mode: {RESIZE_MODE}", f"Guidance Start: {float(self.start):g}",
                 f"Guidance End: {float(self.end):g}"]
        if isinstance(self.image, (str, Path)):
            parts.append(f"Image: {quote(str(Path(self.image).expanduser().resolve()))}")
        return ", ".join(parts)


def controls_from_params(params: dict[str, str]) -> list[ControlSpec]:
    """The units of an infotext (``ControlNet 0``, ``ControlNet 1``, ...), in order.

    A unit without ``Image`` gets no image, so the request fails validation until one is given.
    Anything malformed (a number that is not a finite number, a name no file system can hold)
    raises :class:`InvalidArgument` naming the unit.

    >>> [c.preprocessor for c in controls_from_params({"ControlNet 0": "Module: canny, Model: x [12345678], "
    ...                                                 "Weight: 0.5, Guidance Start: 0, Guidance End: 1"})]
    ['canny']
    """
    from gouache.metadata.infotext import parse_params

    units = []
    for key, value in params.items():
        if (m := INFOTEXT_KEY.match(key)) is not None:
            if len(m.group(1)) > _MAX_UNIT_DIGITS:  # int() would refuse past 4,300 digits
                raise InvalidArgument(f"{_shown(key)} in the image's parameters is not a ControlNet unit number")
            units.append((int(m.group(1)), value))
    out = []
    for n, value in sorted(units):
        fields = parse_params(value)
        where = f"`ControlNet {n}` in the image's parameters"
        out.append(ControlSpec(
            preprocessor=fields.get("Module", "none"),
            image=_path_text(where, "Image", fields.get("Image")),
            model=_path_text(where, "Model", _model_name(fields.get("Model"))),
            weight=_finite(where, "Weight", fields.get("Weight", "1.0")),
            start=_finite(where, "Guidance Start", fields.get("Guidance Start", "0.0")),
            end=_finite(where, "Guidance End", fields.get("Guidance End", "1.0")),
        ))
    return out


_MAX_UNIT_DIGITS = 4  # "ControlNet 12345" and up is no unit the extension writes
_HASH = re.compile(r"[0-9a-fA-F]{8,10}")
_MAX_PATH_CHARS = 4096  # PATH_MAX, and NAME_MAX bytes for each part: longer, and the OS refuses
_MAX_NAME_BYTES = 255


def _finite(where: str, field: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # also "inf", "nan" and "1e999"
        raise InvalidArgument(f"{where} is malformed: {field} must be a number like 1.0, got {_shown(text)}")
    return value


def _path_text(where: str, field: str, text: str | None) -> str | None:
    """``text``, a file name or path, if a file system could hold it."""
    if text is not None and (
        len(text) > _MAX_PATH_CHARS
        or any(len(part.encode("utf-8", "replace")) > _MAX_NAME_BYTES for part in re.split(r"[/\\]", text))
    ):
        raise InvalidArgument(f"{where} is malformed: {field} is no file name or path, got {_shown(text)}")
    return text


def _shown(text: str, limit: int = 80) -> str:
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def _model_name(title: str | None) -> str | None:
    """The name in an A1111 model title ``name [hash]``, by ``A1111_TITLE``'s rule, in linear time
    (that regex restarts its lazy ``(.*?)`` at each character of a long run of spaces)."""
    if not title or title == "None":
        return None
    body = title[:-1] if title.endswith("]\n") else title  # `$` also matches before a final newline
    bracket = body.rfind("[")
    if body.endswith("]") and bracket != -1 and _HASH.fullmatch(body, bracket + 1, len(body) - 1):
        name = body[:bracket].rstrip()  # str.isspace() is `\s`
        if "\n" not in name:  # `.` does not match a newline
            return name
    return title
