"""Inpainting masks as AUTOMATIC1111 prepares them (``modules/masking.py``, ``processing.py``).

White is repainted, black is kept. The mask is made binary, blurred (so the repainted area blends
in), cropped to a region for "Only masked", and finally used to paste the result back over the
original, so every pixel the blurred mask leaves at 0 is exactly the input's.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps

from gouache.images import resize_image


def binary_mask(mask: Image.Image) -> Image.Image:
    """Black/white ``L`` mask (A1111's ``create_binary_mask`` with "mask round"): a transparent
    RGBA image's alpha is the mask, anything else is read as grey and thresholded at half."""
    if mask.mode == "RGBA" and mask.getextrema()[-1] != (255, 255):
        mask = mask.split()[-1]
    return mask.convert("L").point(lambda x: 255 if x > 128 else 0)


def request_mask(request, image: Image.Image) -> Image.Image:
    """The mask of an :class:`~gouache.pipelines.request.InpaintRequest`: its ``mask``, or the mask of
    its ``mask_prompt`` on ``image`` by its segmenter (loaded for this and released after)."""
    if not request.mask_prompt:
        return request.mask
    from gouache.vision.segment import MaskOptions, mask_image

    options = MaskOptions(request.mask_threshold, request.mask_dilate, 0, request.mask_invert, request.mask_refine)
    return mask_image(image, request.mask_prompt, options, request.segmenter)


def blur_radius(blur: int) -> int:
    """How far :func:`blur_mask` spreads the mask, in pixels (cv2's kernel size for ``sigma``)."""
    return int(2.5 * blur + 0.5) if blur > 0 else 0


def blur_mask(mask: Image.Image, blur: int) -> Image.Image:
    """A1111's "Mask blur": a Gaussian of ``sigma = blur`` pixels along x then y.

    The kernel is cv2's for that sigma, ``2·round(2.5σ)+1`` wide, with cv2's mirrored border, so
    the blurred mask reaches exactly :func:`blur_radius` pixels past the mask and no farther.
    """
    k = blur_radius(blur)
    if k == 0:
        return mask
    x = np.arange(-k, k + 1, dtype=np.float64)
    kernel = np.exp(-(x ** 2) / (2.0 * blur ** 2))
    kernel /= kernel.sum()
    a = np.asarray(mask, dtype=np.float64)
    for axis in (1, 0):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (k, k)
        padded = np.pad(a, pad, mode="reflect")  # cv2's BORDER_REFLECT_101
        n = a.shape[axis]
        a = sum(w * np.take(padded, np.arange(j, j + n), axis=axis) for j, w in enumerate(kernel))
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def crop_region(mask: Image.Image, padding: int) -> tuple[int, int, int, int] | None:
    """The box around the mask's white pixels, grown by ``padding`` (A1111's ``get_crop_region_v2``)."""
    box = mask.getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, mask.width), min(y2 + padding, mask.height)


def expand_crop_region(region, width: int, height: int, image_width: int, image_height: int):
    """Grow ``region`` to the ``width``:``height`` ratio it will be worked at, staying inside the
    image (A1111's ``expand_crop_region``: a 128×32 region worked at 512×512 becomes 128×128)."""
    x1, y1, x2, y2 = region
    if (x2 - x1) / (y2 - y1) > width / height:
        y1, y2 = _grow(y1, y2, int((x2 - x1) * height / width - (y2 - y1)), image_height)
    else:
        x1, x2 = _grow(x1, x2, int((y2 - y1) * width / height - (x2 - x1)), image_width)
    return x1, y1, x2, y2


def _grow(lo: int, hi: int, diff: int, size: int) -> tuple[int, int]:
    lo, hi = lo - diff // 2, hi + diff - diff // 2
    if hi >= size:
        lo, hi = lo - (hi - size), size
    if lo < 0:
        lo, hi = 0, hi - lo
    return lo, min(hi, size)


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's "fill" masked content: the masked area takes the colours around it, by repeated blurs
    of the unmasked image at shrinking radii (``modules/masking.fill``)."""
    out = Image.new("RGBA", image.size)
    masked = Image.new("RGBa", image.size)
    masked.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    for radius, repeats in [(256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)]:
        blurred = masked.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            out.alpha_composite(blurred)
    return out.convert("RGB")


def latent_mask(mask: Image.Image, factor: int) -> torch.Tensor:
    """The mask at latent size, ``(1, 1, H/f, W/f)``, 1 = repaint: a latent pixel is repainted when
    any image pixel it covers is more than half masked, so small masks are never lost."""
    binary = torch.from_numpy((np.asarray(mask.convert("L")) > 127).astype(np.float32))[None, None]
    return torch.nn.functional.max_pool2d(binary, factor)


def masked_pixels(pixels: torch.Tensor, mask: Image.Image) -> torch.Tensor:
    """``pixels`` in [-1, 1] with the repainted area set to 0 (grey), what 9-channel UNets are shown
    (A1111's ``inpainting_image_conditioning``, diffusers' ``masked_image``)."""
    keep = torch.from_numpy((np.asarray(mask.convert("L")) <= 127).astype(np.float32))[None, None]
    return pixels * keep


def paste_back(generated: Image.Image, original: Image.Image, mask: Image.Image,
               box: tuple[int, int, int, int] | None = None) -> Image.Image:
    """``generated`` over ``original`` through ``mask`` (A1111's overlay): the original shows where
    the mask is 0, unchanged. With ``box`` (Only masked), ``generated`` is the crop, scaled to it."""
    base = generated.convert("RGB")
    if box is not None:
        x1, y1, x2, y2 = box
        base = original.convert("RGB")
        base.paste(resize_image(1, generated, x2 - x1, y2 - y1), (x1, y1))
    overlay = original.convert("RGBA")
    overlay.putalpha(ImageOps.invert(mask.convert("L")))
    out = base.convert("RGBA")
    out.alpha_composite(overlay)
    return out.convert("RGB")
