"""Small image helpers shared by the commands."""

from __future__ import annotations

import math

from PIL import Image


def image_grid(images: list[Image.Image], cols: int | None = None) -> Image.Image:
    """Lay images out in a grid, as AUTOMATIC1111's grids: about square, row by row.

    >>> image_grid([Image.new("RGB", (64, 64))] * 6).size
    (192, 128)
    """
    if not images:
        raise ValueError("image_grid needs at least one image")
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h), "white")
    for i, im in enumerate(images):
        grid.paste(im.convert("RGB").resize((w, h)), ((i % cols) * w, (i // cols) * h))
    return grid


RESIZE_MODES = {0: "Just resize", 1: "Crop and resize", 2: "Resize and fill"}  # A1111's resize_mode


def load_image(path, what: str = "image") -> Image.Image:
    """Open an image file for use as ``what`` (named in the error), fully read.

    Raises InvalidArgument in one line when the file is missing or is not an image.
    """
    from pathlib import Path

    from PIL import UnidentifiedImageError

    from gouache.errors import InvalidArgument

    path = Path(path)
    if not path.is_file():
        raise InvalidArgument(f"{what} {path} is not a file; give the path of a PNG, JPEG or WebP image")
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except UnidentifiedImageError:
        raise InvalidArgument(f"{what} {path} is not an image (Pillow cannot identify it)") from None
    except (OSError, SyntaxError) as err:
        raise InvalidArgument(f"{what} {path} cannot be read as an image: {err}") from None


def flatten(image: Image.Image, background: str = "#ffffff") -> Image.Image:
    """RGB, with any transparency composited onto ``background`` (A1111's ``images.flatten``)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        base = Image.new("RGBA", rgba.size, background)
        base.alpha_composite(rgba)
        return base.convert("RGB")
    return image.convert("RGB")


def resize_image(mode: int, image: Image.Image, width: int, height: int) -> Image.Image:
    """``image`` at ``width``×``height`` by A1111's ``resize_mode`` (``modules/images.resize_image``).

    0 "Just resize": stretch. 1 "Crop and resize": scale to cover, centre-crop the overflow.
    2 "Resize and fill": scale to fit, fill the bars by stretching the image's edge rows/columns.
    Lanczos resampling; an image already at the size comes back unchanged (a copy).

    >>> resize_image(1, Image.new("RGB", (128, 64)), 64, 64).size
    (64, 64)
    """
    def resize(im: Image.Image, w: int, h: int) -> Image.Image:
        return im.resize((w, h), resample=Image.Resampling.LANCZOS)

    if mode == 0:
        return resize(image, width, height)
    ratio, src_ratio = width / height, image.width / image.height
    if (ratio > src_ratio if mode == 1 else ratio < src_ratio):  # fit the width
        src_w, src_h = width, image.height * width // image.width
    else:  # fit the height
        src_w, src_h = image.width * height // image.height, height
    resized = resize(image, src_w, src_h)
    out = Image.new(image.mode, (width, height))
    out.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    if mode == 2 and ratio < src_ratio:  # bars above and below
        fill = height // 2 - src_h // 2
        if fill > 0:
            out.paste(resized.resize((width, fill), box=(0, 0, width, 0)), box=(0, 0))
            out.paste(resized.resize((width, fill), box=(0, resized.height, width, resized.height)),
                      box=(0, fill + src_h))
    elif mode == 2 and ratio > src_ratio:  # bars left and right
        fill = width // 2 - src_w // 2
        if fill > 0:
            out.paste(resized.resize((fill, height), box=(0, 0, 0, height)), box=(0, 0))
            out.paste(resized.resize((fill, height), box=(resized.width, 0, resized.width, height)),
                      box=(fill + src_w, 0))
    return out
