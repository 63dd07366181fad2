"""Preprocessors: an image → the control map a ControlNet reads (white on black, RGB, same size).

An explicit name → :class:`Preprocessor` table (:data:`PREPROCESSORS`); unknown names raise and list
the valid ones. The names follow the ControlNet extension of AUTOMATIC1111 where it has the same thing.

Needing no downloaded weights:

* ``canny`` — Canny edges (Canny, 1986), as OpenCV's ``cv2.Canny(image, low, high)`` with a 3×3
  Sobel and the L1 gradient (what the A1111 extension calls), written with numpy and scipy so
  gouache needs no OpenCV: Sobel gradients (the strongest colour channel per pixel, as OpenCV on a
  colour image), non-maximum suppression in 4 directions, double threshold, hysteresis by connected
  components. Thresholds are on OpenCV's scale (100/200 by default).
* ``softedge`` — the gradient magnitude of a Gaussian-smoothed image, normalised (a weight-free
  stand-in for HED/PiDiNet's soft edges).
* ``scribble`` — the A1111 extension's ``scribble_xdog``: a thresholded difference of Gaussians.
* ``threshold`` — white where the grey level is above a threshold (A1111's ``threshold``).
* ``tile`` — the image down-sampled and up again (A1111's ``tile_resample``): a blurred map for
  ControlNet Tile when upscaling.
* ``grayscale`` — a depth map the user supplies (white = near), as grey RGB; ``none`` — as is.

Needing weights on disk (:mod:`gouache.control.annotators`): ``depth`` — a transformers
``DPTForDepthEstimation`` folder in ``$GOUACHE_HOME/controlnet/annotators/depth``.

>>> from PIL import Image
>>> run_preprocessor("canny", Image.new("RGB", (64, 64))).getbbox() is None    # no edges in a flat image
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

from gouache.errors import InvalidArgument, UnknownName


def _rgb(arr: np.ndarray) -> Image.Image:
    """A 2-D uint8 map as an RGB image (ControlNets read 3 channels)."""
    return Image.fromarray(np.repeat(arr[..., None], 3, axis=2))


def _sobel(channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # OpenCV's Sobel with aperture 3 on a reflect-101 border ("mirror" in scipy)
    return ndimage.sobel(channel, axis=1, mode="mirror"), ndimage.sobel(channel, axis=0, mode="mirror")


def canny_edges(image: Image.Image, low: float = 100, high: float = 200) -> np.ndarray:
    """Boolean edge map of ``image`` by Canny's method, as ``cv2.Canny(image, low, high)``.

    >>> im = Image.new("RGB", (32, 32)); im.paste((255, 255, 255), (8, 8, 24, 24))
    >>> e = canny_edges(im); bool(e[8, 16] or e[7, 16]), bool(e[16, 16])
    (True, False)
    """
    if not 0 <= low <= high:
        raise InvalidArgument(f"Canny thresholds must satisfy 0 <= low <= high, got low={low}, high={high}")
    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    best_gx = best_gy = best = None
    for c in range(3):  # OpenCV on colour images: the channel with the largest gradient, per pixel
        gx, gy = _sobel(arr[..., c])
        mag = np.abs(gx) + np.abs(gy)
        if best is None:
            best_gx, best_gy, best = gx, gy, mag
        else:
            take = mag > best
            best_gx, best_gy, best = np.where(take, gx, best_gx), np.where(take, gy, best_gy), np.maximum(mag, best)
    thin = _non_max_suppression(best, best_gx, best_gy)
    strong = thin > high
    weak = thin > low
    # hysteresis: keep every weak-edge component (8-connected) that touches a strong pixel
    labels, n = ndimage.label(weak, structure=np.ones((3, 3), dtype=bool))
    keep = np.zeros(n + 1, dtype=bool)
    keep[np.unique(labels[strong])] = True
    keep[0] = False
    return keep[labels]


def _non_max_suppression(mag: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """``mag`` where it is a maximum along its gradient direction (rounded to 0/45/90/135°), else 0."""
    p = np.pad(mag, 1)
    h, w = mag.shape
    at = lambda dy, dx: p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]  # noqa: E731
    ax, ay = np.abs(gx), np.abs(gy)
    tan22 = 0.4142135623730951
    horizontal = ay <= tan22 * ax  # gradient along x: compare left and right
    vertical = ax <= tan22 * ay
    same_sign = (gx * gy) > 0  # image rows grow downwards: +x+y points down-right
    n1 = np.where(horizontal, at(0, -1), np.where(vertical, at(-1, 0), np.where(same_sign, at(-1, -1), at(-1, 1))))
    n2 = np.where(horizontal, at(0, 1), np.where(vertical, at(1, 0), np.where(same_sign, at(1, 1), at(1, -1))))
    # OpenCV keeps a pixel greater than one neighbour and not less than the other
    keep = (mag > n1) & (mag >= n2)
    return np.where(keep, mag, 0.0)


def canny(image: Image.Image, low: float = 100, high: float = 200) -> Image.Image:
    """Canny edges as a white-on-black RGB image (see :func:`canny_edges`)."""
    return _rgb(canny_edges(image, low, high).astype(np.uint8) * 255)


def softedge(image: Image.Image, sigma: float = 1.5) -> Image.Image:
    """Soft edges: the Gaussian-smoothed image's gradient magnitude, scaled to 0–255."""
    grey = np.asarray(image.convert("L"), dtype=np.float32)
    mag = ndimage.gaussian_gradient_magnitude(grey, sigma=sigma, mode="nearest")
    top = mag.max()
    out = np.zeros_like(mag) if top < 1e-6 else mag / top * 255
    return _rgb(np.clip(np.round(out), 0, 255).astype(np.uint8))


def scribble(image: Image.Image, threshold: float = 32) -> Image.Image:
    """The A1111 extension's ``scribble_xdog``: white where ``2·(g₂ − g₁)`` exceeds ``threshold``, with
    ``g₁``/``g₂`` the image blurred with σ 0.5 and 5 (a difference of Gaussians), darkest channel."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    g1 = ndimage.gaussian_filter(arr, sigma=(0.5, 0.5, 0), mode="mirror")
    g2 = ndimage.gaussian_filter(arr, sigma=(5.0, 5.0, 0), mode="mirror")
    dog = np.clip(255 - np.min(g2 - g1, axis=2), 0, 255).astype(np.uint8)
    return _rgb(np.where(2 * (255 - dog.astype(np.int32)) > threshold, 255, 0).astype(np.uint8))


def threshold(image: Image.Image, level: float = 127) -> Image.Image:
    """White where the grey level is above ``level``, black elsewhere (A1111's ``threshold``)."""
    grey = np.asarray(image.convert("L"))
    return _rgb(np.where(grey > level, 255, 0).astype(np.uint8))


def tile(image: Image.Image, down: float = 4.0) -> Image.Image:
    """The image ``down`` times smaller and back (area, then bicubic): ControlNet Tile's blurred input
    (A1111's ``tile_resample``)."""
    if down < 1:
        raise InvalidArgument(f"the tile preprocessor's down-sampling must be at least 1, got {down}")
    rgb = image.convert("RGB")
    small = rgb.resize((max(round(rgb.width / down), 1), max(round(rgb.height / down), 1)), Image.Resampling.BOX)
    return small.resize(rgb.size, Image.Resampling.BICUBIC)


def grayscale(image: Image.Image) -> Image.Image:
    """A depth (or other single-channel) map the user made, as grey RGB: white = near."""
    return image.convert("L").convert("RGB")


def none(image: Image.Image) -> Image.Image:
    """The image as it is: already a control map."""
    return image.convert("RGB")


def depth(image: Image.Image) -> Image.Image:
    """Estimated depth (white = near) by the DPT weights in ``$GOUACHE_HOME/controlnet/annotators/depth``."""
    from gouache.control.annotators import estimate_depth

    return estimate_depth(image)


def openpose(image: Image.Image, threshold: float = 0.3) -> Image.Image:
    """One person's pose as OpenPose's skeleton, by the VitPose weights in
    ``$GOUACHE_HOME/controlnet/annotators/pose`` (keypoints scoring below ``threshold`` are left out)."""
    from gouache.control.annotators import estimate_pose

    return estimate_pose(image, threshold=threshold)


@dataclass(frozen=True)
class Preprocessor:
    fn: Callable[..., Image.Image]
    help: str
    options: dict = field(default_factory=dict)  # A1111's "Threshold A"/"Threshold B" for this one, by keyword
    needs_weights: bool = False


PREPROCESSORS: dict[str, Preprocessor] = {
    "canny": Preprocessor(canny, "Canny edges (thresholds 100/200 as OpenCV)", {"low": 100, "high": 200}),
    "softedge": Preprocessor(softedge, "soft edges: smoothed gradient magnitude", {"sigma": 1.5}),
    "scribble": Preprocessor(scribble, "scribble lines: thresholded difference of Gaussians", {"threshold": 32}),
    "threshold": Preprocessor(threshold, "white above a grey level", {"level": 127}),
    "tile": Preprocessor(tile, "a blurred copy for ControlNet Tile (upscaling)", {"down": 4.0}),
    "grayscale": Preprocessor(grayscale, "a depth map you supply (white = near) as grey"),
    "none": Preprocessor(none, "the image as is: already a control map"),
    "depth": Preprocessor(depth, "estimated depth; needs DPT weights in $GOUACHE_HOME/controlnet/annotators/depth",
                          needs_weights=True),
    "openpose": Preprocessor(openpose, "one person's pose as OpenPose's skeleton; needs VitPose weights in "
                             "$GOUACHE_HOME/controlnet/annotators/pose", {"threshold": 0.3}, needs_weights=True),
}


def get_preprocessor(name: str) -> Preprocessor:
    """The registered preprocessor ``name``; unknown names raise :class:`UnknownName` listing the others."""
    try:
        return PREPROCESSORS[name]
    except (KeyError, TypeError):
        raise UnknownName(f"unknown preprocessor {name!r}; choose one of {', '.join(PREPROCESSORS)}") from None


def run_preprocessor(name: str, image: Image.Image, **options) -> Image.Image:
    """The control map of ``image`` by preprocessor ``name`` (RGB, the image's size).

    >>> run_preprocessor("threshold", Image.new("L", (8, 8), 200)).getpixel((0, 0))
    (255, 255, 255)
    """
    pre = get_preprocessor(name)
    unknown = set(options) - set(pre.options)
    if unknown:
        raise InvalidArgument(f"preprocessor {name!r} takes {', '.join(pre.options) or 'no options'}, "
                              f"not {', '.join(sorted(unknown))}")
    out = pre.fn(image, **options)
    return out if out.size == image.size else out.resize(image.size, Image.Resampling.BILINEAR)
