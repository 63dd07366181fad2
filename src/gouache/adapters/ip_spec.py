"""What a request asks of IP-Adapter: one :class:`IPAdapterSpec` per adapter, and its infotext.

An adapter takes one or more image prompts (their tokens are joined, as diffusers joins the
images of one adapter), a scale, and whether it acts on the style blocks only (InstantStyle,
:func:`gouache.adapters.ip_attention.style_scales`). The infotext has one key per unit, in the
form of the ControlNet units beside it::

    IP-Adapter 0: "Model: gouache-tiny-ip-adapter [1a2b3c4d], Weight: 0.8, Style: True, Image 1: /abs/red-circle.png"

The image cannot travel in the infotext: ``Image N`` is the path of an image prompt that came from
a file, so that ``gouache generate --from`` can make the image again while the file is there. A
unit without them (images given as pixels, or over the API) reads back without images, and the
request then asks for ``--ip-image``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from gouache.errors import InvalidArgument, check_number
from gouache.models.names import without_title

INFOTEXT_KEY = re.compile(r"^IP-Adapter (\d{1,4})$")
IMAGE_KEY = re.compile(r"^Image (\d{1,4})$")
MAX_SCALE = 2.0  # sd-webui-controlnet's weight range
MAX_IMAGES = 16  # image prompts of one adapter


@dataclass
class IPAdapterSpec:
    """One IP-Adapter: ``model`` (a name in ``$GOUACHE_HOME/ip-adapter``, a path, or a loaded
    :class:`~gouache.adapters.ip_adapter.LoadedIPAdapter`), its image prompts (PIL images or paths),
    ``scale`` (0 leaves the image as without the adapter, bit for bit) and ``style`` (the style
    blocks only, InstantStyle).

    >>> IPAdapterSpec("gouache-tiny-ip-adapter", [Image.new("RGB", (64, 64))], scale=0.8).validate()  # doctest: +SKIP
    """

    model: object = "gouache-tiny-ip-adapter"
    images: list = field(default_factory=list)
    scale: float = 1.0
    style: bool = False

    def validate(self, index: int = 0) -> None:
        """Raise :class:`InvalidArgument` (or ``UnknownName``) naming the unit, the field and the fix."""
        from gouache.adapters.ip_adapter import LoadedIPAdapter, resolve_ip_adapter

        where = f"`ip_adapters[{index}]`"
        if isinstance(self.model, str) or isinstance(self.model, Path):
            resolve_ip_adapter(self.model)
        elif not isinstance(self.model, LoadedIPAdapter):
            raise InvalidArgument(f"{where}.model must be an IP-Adapter name or path, or a LoadedIPAdapter, "
                                  f"got {type(self.model).__name__}")
        check_number(f"ip_adapters[{index}].scale", self.scale, 0, MAX_SCALE, " (0 is off, 1 the adapter's full effect)")
        if not isinstance(self.style, bool):
            raise InvalidArgument(f"{where}.style must be True or False, got {self.style!r}")
        if not isinstance(self.images, (list, tuple)) or not self.images:
            raise InvalidArgument(f"{where} ({self.label}) has no image prompt; pass --ip-image IMAGE "
                                  "(Python: IPAdapterSpec(images=[...]); the infotext cannot hold the image)")
        if len(self.images) > MAX_IMAGES:
            raise InvalidArgument(f"{where} has {len(self.images)} image prompts; at most {MAX_IMAGES} per adapter")
        for k, image in enumerate(self.images):
            if isinstance(image, (str, Path)):
                _check_image_file(where, Path(image).expanduser())
            elif not isinstance(image, Image.Image):
                raise InvalidArgument(f"{where}.images[{k}] must be a PIL image or a path, got {type(image).__name__}")

    @property
    def label(self) -> str:
        """The adapter's name as messages show it."""
        return getattr(self.model, "name", None) or str(self.model)

    def load_images(self) -> list[Image.Image]:
        """The image prompts as RGB (paths are opened)."""
        from gouache.images import flatten, load_image

        return [flatten(load_image(im, "image prompt") if isinstance(im, (str, Path)) else im) for im in self.images]

    def infotext(self, title: str) -> str:
        """This unit as the value of its ``IP-Adapter N`` key."""
        from gouache.metadata.infotext import quote

        parts = [f"Model: {title}", f"Weight: {float(self.scale):g}"] + (["Style: True"] if self.style else [])
        for k, image in enumerate(self.images, 1):
            if isinstance(image, (str, Path)):
                parts.append(f"Image {k}: {quote(str(Path(image).expanduser().resolve()))}")
        return ", ".join(parts)


def _check_image_file(where: str, path: Path) -> None:
    """A path image prompt must be an image file (its header is read, not its pixels)."""
    from PIL import UnidentifiedImageError

    if not path.is_file():
        raise InvalidArgument(f"{where}: image prompt {str(path)!r} does not exist; pass --ip-image IMAGE")
    try:
        with Image.open(path):
            pass
    except (UnidentifiedImageError, OSError):
        raise InvalidArgument(f"{where}: image prompt {str(path)!r} is not an image (PNG, JPEG, WebP, ...)") from None


def specs_from_params(params: dict[str, str]) -> list[IPAdapterSpec]:
    """The units of an infotext (``IP-Adapter 0``, ``IP-Adapter 1``, ...), in order; a unit's
    images are its recorded paths (none: the request asks for ``--ip-image``). Malformed values
    raise :class:`InvalidArgument` naming the unit.

    >>> [s.scale for s in specs_from_params({"IP-Adapter 0": "Model: x [12345678], Weight: 0.5"})]
    [0.5]
    """
    from gouache.metadata.infotext import parse_params

    units = sorted((int(m.group(1)), v) for k, v in params.items() if (m := INFOTEXT_KEY.match(k)) is not None)
    out = []
    for n, value in units:
        fields, where = parse_params(value), f"`IP-Adapter {n}` in the image's parameters"
        model = _path_text(where, "Model", fields.get("Model", ""))
        if not model or model == "None":
            raise InvalidArgument(f"{where} is malformed: it names no Model")
        images = sorted((int(m.group(1)), _path_text(where, k, v)) for k, v in fields.items()
                        if (m := IMAGE_KEY.match(k)) is not None)
        out.append(IPAdapterSpec(without_title(model), [path for _, path in images],
                                 _finite(where, "Weight", fields.get("Weight", "1")), fields.get("Style") == "True"))
    return out


MAX_PATH_CHARS = 4096  # PATH_MAX: no file system holds a longer path


def _path_text(where: str, name: str, text: str) -> str:
    if len(text) > MAX_PATH_CHARS:
        raise InvalidArgument(f"{where} is malformed: {name} is {len(text)} characters, no file name or path")
    return text


def _finite(where: str, name: str, text: str) -> float:
    import math

    try:
        value = float(text) if len(text) <= 32 else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidArgument(f"{where} is malformed: {name} must be a number like 0.8, got {text[:40]!r}")
    return value


def parse_adapter(text: str) -> tuple[str, float]:
    """``NAME[:SCALE]`` (``--ip-adapter``) as ``(name, scale)``; the scale is the trailing number, so a
    path may hold ``:``.

    >>> parse_adapter("gouache-tiny-ip-adapter:0.6")
    ('gouache-tiny-ip-adapter', 0.6)
    """
    head, sep, last = text.rpartition(":")
    if sep:
        try:
            return head.strip(), float(last)
        except ValueError:
            pass
    return text.strip(), 1.0


def pair_images(adapters: list[tuple[str, float]], images: list, style: bool = False) -> list[IPAdapterSpec]:
    """The units of ``--ip-adapter`` options and ``--ip-image`` images: one adapter takes every
    image; several adapters take one image each, in order.

    >>> [len(s.images) for s in pair_images([("a", 1.0)], ["x.png", "y.png"])]
    [2]
    """
    if len(adapters) > 1 and len(images) not in (0, len(adapters)):
        raise InvalidArgument(f"{len(adapters)} --ip-adapter and {len(images)} --ip-image: give one image per adapter, "
                              "in order (or one adapter with several images)")
    if len(adapters) == 1:
        return [IPAdapterSpec(adapters[0][0], list(images), adapters[0][1], style)]
    return [IPAdapterSpec(name, [images[k]] if images else [], scale, style) for k, (name, scale) in enumerate(adapters)]


def specs_from_option(ip_adapter, ip_image=None, style: bool = False) -> list[IPAdapterSpec]:
    """The Python API's ``ip_adapter=`` as units: an :class:`IPAdapterSpec`, a ``"NAME[:SCALE]"``
    (its images from ``ip_image``: one image or path, or a list), or a list of either; the same
    pairing as the command line's (:func:`pair_images`).

    >>> [(s.model, s.scale) for s in specs_from_option("gouache-tiny-ip-adapter:0.5", "shape.png")]
    [('gouache-tiny-ip-adapter', 0.5)]
    """
    items = ip_adapter if isinstance(ip_adapter, (list, tuple)) else [ip_adapter]
    images = [] if ip_image is None else list(ip_image) if isinstance(ip_image, (list, tuple)) else [ip_image]
    given = [i for i in items if isinstance(i, IPAdapterSpec)]
    names = [i for i in items if isinstance(i, (str, Path))]
    if len(given) + len(names) != len(items):
        wrong = next(i for i in items if not isinstance(i, (IPAdapterSpec, str, Path)))
        raise InvalidArgument(f"`ip_adapter` must be a name (\"NAME[:SCALE]\"), a path or an IPAdapterSpec, or a list of "
                              f"them, got {type(wrong).__name__}")
    if given and (names or images):
        raise InvalidArgument("`ip_adapter`: give IPAdapterSpec units (with their images) or names with `ip_image`, "
                              "not both")
    if given:
        return [replace(s, style=s.style or bool(style)) for s in given]
    return pair_images([parse_adapter(str(n)) for n in names], images, bool(style))
