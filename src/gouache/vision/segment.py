"""Masks from words: where in an image the words point, as probabilities, then as a mask.

A segmenter answers ``probabilities(image, words)``: an (H, W) array in [0, 1] at the image's size,
high where the words match. Three kinds (:data:`KINDS`), named like the captioners and CLIP models:

- **CLIPSeg** (transformers ``CLIPSegForImageSegmentation``, e.g. CIDAS' ``clipseg-rd64-refined`` or
  the built-in ``gouache-tiny-clipseg``): any words. The image is resized to the model's input size
  (its processor's), the logits scaled back to the image's size before the sigmoid.
- **any other transformers image-segmentation model** (``model_type`` with an ``id2label``: SegFormer,
  Mask2Former, DETR panoptic...): the words pick labels: every label named in them (``the cat`` →
  ``cat``); ``background`` → everything no other label covers, so "the background" means the same
  for every kind.
- **rembg** (``rembg:MODEL``, when the user has the ``rembg`` package and the model's ``.onnx`` file in
  ``$U2NET_HOME`` or ``~/.u2net``; gouache never lets it download): the salient object; ``background``
  → the rest.

Names: a folder under ``$GOUACHE_HOME/segmenters/``, a path, ``rembg:MODEL``, or no name for the
built-in. :func:`words_mask` turns probabilities into the mask ``gouache mask`` writes (threshold,
invert, dilate, blur), and refuses a mask that covers nothing.

>>> with load_segmenter() as seg:                                   # doctest: +SKIP
...     words_mask(seg.probabilities(image, "the background"), "the background").save("mask.png")
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from gouache.errors import InvalidArgument, ModelLoadError, check_int, check_number
from gouache.vision.folders import ModelFolders, Released

BUILTIN = "gouache-tiny-clipseg"
KINDS = ("clipseg", "image-segmentation", "rembg")
MAX_WORDS = 300  # characters of a query: a phrase, not a document
MAX_DILATE = 256
# the guided filter's radius a mask gets unless told otherwise: a CLIPSeg's mask is coarse (its
# patches: 8 pixels for the built-in at 64², 16 for CIDAS' at 352²) and snapping it to the image's
# edges is what makes it follow an outline (the built-in's IoU: docs/gouache-tiny.md)
DEFAULT_REFINE = 4
MAX_BLUR = 64
BACKGROUND = re.compile(r"\bbackground\b", re.IGNORECASE)


SEGMENTERS = ModelFolders("segmenter", BUILTIN, "clipseg", "segmenters", "--segmenter",
                          "segmentation model folders", "CLIPSeg")


def builtin_segmenter_dir() -> Path:
    """Where the built-in CLIPSeg ships: ``gouache/models/weights/clipseg/gouache-tiny-clipseg/``."""
    return SEGMENTERS.builtin_dir()


def segmenters_dir() -> Path:
    """The user's segmentation models: ``$GOUACHE_HOME/segmenters/`` (one folder per model)."""
    return SEGMENTERS.user_dir()


def listed_segmenters() -> dict[str, Path]:
    """Every folder a name can pick: the built-in (when installed), then ``$GOUACHE_HOME/segmenters/*``."""
    return SEGMENTERS.listed()


def find_segmenter(name_or_path: str | os.PathLike | None = None) -> Path:
    """The folder of a transformers segmentation model: a path, a listed name, or the built-in (None)."""
    return SEGMENTERS.find(name_or_path, f" (put model folders in {segmenters_dir()}, or use rembg:MODEL)")


@dataclass
class Segmenter(Released):
    """A loaded segmenter; a context manager whose exit (or :meth:`close`) releases it."""

    kind: str  # one of KINDS
    name: str
    model: Any
    processor: Any = None
    device: str = "cpu"

    def probabilities(self, image: Image.Image, words: str) -> np.ndarray:
        """Where ``words`` match in ``image``: (H, W) float32 in [0, 1], the image's size."""
        words = check_words(words)
        if self.model is None:
            raise InvalidArgument(f"the segmenter {self.name!r} was closed; load it again")
        image = image.convert("RGB")
        return {"clipseg": _clipseg, "image-segmentation": _labelled, "rembg": _rembg}[self.kind](self, image, words)


def check_words(words) -> str:
    """Words of a query: a non-empty phrase of at most :data:`MAX_WORDS` characters."""
    if not isinstance(words, str) or not words.strip():
        raise InvalidArgument("the words of a mask must name something in the image, e.g. \"the background\"")
    if len(words) > MAX_WORDS:
        raise InvalidArgument(f"the words of a mask are at most {MAX_WORDS} characters, got {len(words)}")
    return words.strip()


def _clipseg(seg: Segmenter, image: Image.Image, words: str) -> np.ndarray:
    import torch

    text = seg.processor.tokenizer([words], padding=True, truncation=True, return_tensors="pt")
    px = seg.processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        out = seg.model(input_ids=text["input_ids"].to(seg.device), attention_mask=text["attention_mask"].to(seg.device),
                        pixel_values=px.to(seg.device, seg.model.dtype)).logits
    logits = out.float().reshape(1, 1, *out.shape[-2:])
    logits = torch.nn.functional.interpolate(logits, size=(image.height, image.width), mode="bilinear",
                                             align_corners=False)
    return torch.sigmoid(logits)[0, 0].cpu().numpy()


def _labelled(seg: Segmenter, image: Image.Image, words: str) -> np.ndarray:
    segments = seg.model(image)
    wanted = set(re.findall(r"[a-z0-9]+", words.lower()))
    named = [s for s in segments if set(re.findall(r"[a-z0-9]+", str(s["label"]).lower())) & wanted
             and "background" not in str(s["label"]).lower()]
    out = np.zeros((image.height, image.width), np.float32)
    for s in named:
        out = np.maximum(out, np.asarray(s["mask"].convert("L"), np.float32) / 255.0)
    if BACKGROUND.search(words):
        covered = np.zeros_like(out)
        for s in segments:
            if "background" not in str(s["label"]).lower():
                covered = np.maximum(covered, np.asarray(s["mask"].convert("L"), np.float32) / 255.0)
        out = np.maximum(out, 1.0 - covered)
    return out


def _rembg(seg: Segmenter, image: Image.Image, words: str) -> np.ndarray:
    from rembg import remove  # the user's package: checked when the segmenter loaded

    mask = remove(image, session=seg.model, only_mask=True)
    out = np.asarray(mask.convert("L").resize(image.size), np.float32) / 255.0
    return 1.0 - out if BACKGROUND.search(words) else out


def load_segmenter(name_or_path: str | os.PathLike | None = None, device: str = "cpu") -> Segmenter:
    """A segmenter by name or path (``rembg:MODEL`` for rembg; None: the built-in CLIPSeg), offline."""
    if str(name_or_path or "").startswith("rembg:"):
        return _load_rembg(str(name_or_path)[len("rembg:"):])
    folder = find_segmenter(name_or_path)
    kind = _model_type(folder)
    label = str(name_or_path or BUILTIN)
    import torch

    try:
        if kind == "clipseg":
            from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

            model = CLIPSegForImageSegmentation.from_pretrained(folder, local_files_only=True)
            model = model.to(device=device, dtype=torch.float32).eval()  # shipped in fp16, run in fp32
            return Segmenter("clipseg", label, model, CLIPSegProcessor.from_pretrained(folder, local_files_only=True),
                             device)
        from transformers import pipeline

        pipe = pipeline("image-segmentation", model=str(folder), device=device, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as err:
        raise ModelLoadError(f"{folder}: not a loadable segmentation model ({_first_line(err)})") from None
    return Segmenter("image-segmentation", label, pipe, device=device)


def _model_type(folder: Path) -> str:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ModelLoadError(f"{folder}: not a loadable segmentation model (config.json: {_first_line(err)})") from None
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind != "clipseg" and not (isinstance(config, dict) and config.get("id2label")):
        raise ModelLoadError(f"{folder}: config.json describes {kind or 'no model_type'!r}, neither a CLIPSeg "
                             "(model_type 'clipseg') nor a segmentation model with labels (id2label)")
    return kind


def rembg_home() -> Path:
    """Where rembg keeps its models (``$U2NET_HOME``, else ``~/.u2net``): ``rembg:MODEL`` needs ``MODEL.onnx`` there."""
    return Path(os.environ.get("U2NET_HOME", Path.home() / ".u2net")).expanduser()


def _load_rembg(model_name: str) -> Segmenter:
    if not re.fullmatch(r"[\w.\-]+", model_name):
        raise InvalidArgument(f"rembg:MODEL takes the name of one of rembg's models (u2net, isnet-general-use, "
                              f"...), got {model_name!r}")
    try:
        from rembg import new_session
    except ImportError:
        raise ModelLoadError("the rembg segmenter needs the rembg package: pip install rembg") from None
    home = rembg_home()
    if not (home / f"{model_name}.onnx").is_file():
        raise ModelLoadError(f"rembg's model {model_name!r} is not on disk ({home / (model_name + '.onnx')}); "
                             "gouache never downloads it: put the .onnx file there")
    try:
        session = new_session(model_name)
    except Exception as err:  # noqa: BLE001 - rembg and onnxruntime raise many kinds
        raise ModelLoadError(f"rembg could not load {model_name!r} ({_first_line(err)})") from None
    return Segmenter("rembg", f"rembg:{model_name}", session)


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def _box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """The mean of each pixel's (2r+1)² window (fewer pixels at the borders), by summed-area tables:
    linear in the pixels whatever ``r``."""
    h, w = x.shape[:2]
    s = np.pad(x, ((1, 0), (1, 0)) + ((0, 0),) * (x.ndim - 2)).cumsum(0).cumsum(1)
    y0, y1 = np.clip(np.arange(h) - r, 0, h), np.clip(np.arange(h) + r + 1, 0, h)
    x0, x1 = np.clip(np.arange(w) - r, 0, w), np.clip(np.arange(w) + r + 1, 0, w)
    total = s[y1][:, x1] - s[y0][:, x1] - s[y1][:, x0] + s[y0][:, x0]
    count = ((y1 - y0)[:, None] * (x1 - x0)[None, :]).reshape((h, w) + (1,) * (x.ndim - 2))
    return total / count


def refine(image: Image.Image, probabilities: np.ndarray, radius: int, eps: float = 1e-3) -> np.ndarray:
    """``probabilities`` with their edges moved onto the image's own edges: the colour guided filter
    (He, Sun & Tang, 2010) with ``image`` as the guide. Within each window the output is an affine
    function of the pixel's colour fitted to the probabilities, so a coarse mask (a CLIPSeg's, made
    at a few hundred pixels or, for the built-in, 64) snaps to the object's outline. Linear time."""
    guide = np.asarray(image.convert("RGB"), np.float64) / 255.0
    p = probabilities.astype(np.float64)
    mean_i, mean_p = _box_mean(guide, radius), _box_mean(p, radius)
    cov = _box_mean(guide * p[..., None], radius) - mean_i * mean_p[..., None]
    var = _box_mean(guide[..., :, None] * guide[..., None, :], radius) - mean_i[..., :, None] * mean_i[..., None, :]
    a = np.linalg.solve(var + eps * np.eye(3), cov[..., None])[..., 0]
    b = mean_p - (a * mean_i).sum(-1)
    out = (_box_mean(a, radius) * guide).sum(-1) + _box_mean(b, radius)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class MaskOptions:
    """How probabilities become a mask: ``threshold`` (a pixel matches above it), ``invert`` (the
    rest of the image instead), ``dilate`` (grow the mask by that many pixels), ``blur`` (a Gaussian
    of that radius over the edge); ``refine``: the radius of :func:`refine`, which snaps the mask's
    edge to the image's (0: off; :data:`DEFAULT_REFINE` unless told)."""

    threshold: float = 0.5
    dilate: int = 0
    blur: int = 0
    invert: bool = False
    refine: int = DEFAULT_REFINE

    def validate(self, prefix: str = "") -> "MaskOptions":
        """Each option in range; ``prefix`` is how the caller's fields are named (``mask_`` for a request's)."""
        check_number(prefix + "threshold", self.threshold, 0.0, 0.999, " (a pixel matches above it)")
        check_int(prefix + "dilate", self.dilate, 0, MAX_DILATE)
        check_int(prefix + "blur", self.blur, 0, MAX_BLUR)
        check_int(prefix + "refine", self.refine, 0, MAX_BLUR)
        if not isinstance(self.invert, bool):
            raise InvalidArgument(f"`{prefix}invert` must be True or False, got {self.invert!r}")
        return self


def words_mask(probabilities: np.ndarray, words: str, options: MaskOptions = MaskOptions()) -> Image.Image:
    """The ``L`` mask of ``probabilities`` (white where the words match): thresholded, inverted,
    dilated, then blurred, as ``options`` say. A mask with nothing white is an error that says how
    far the best pixel was from the threshold."""
    options.validate()
    matched = probabilities > options.threshold
    if options.invert:
        matched = ~matched
    if not matched.any():
        best = float(probabilities.max()) if probabilities.size else 0.0
        if options.invert:
            raise InvalidArgument(f"{words!r} matches the whole image (lowest score {float(probabilities.min()):.2f}), "
                                  "so its inverse is empty; try other words or a higher threshold")
        raise InvalidArgument(f"nothing in the image matches {words!r} (best score {best:.2f}, threshold "
                              f"{options.threshold:g}); try other words or a lower threshold")
    if options.dilate:  # every pixel within `dilate` of the mask (Euclidean): linear in the pixels
        from scipy.ndimage import distance_transform_edt

        matched = distance_transform_edt(~matched) <= options.dilate
    mask = Image.fromarray(matched.astype(np.uint8) * 255, "L")
    if options.blur:
        mask = mask.filter(ImageFilter.GaussianBlur(options.blur))
    return mask


def alpha_matte(probabilities: np.ndarray, background: bool = True) -> Image.Image:
    """An ``L`` alpha from a background's probabilities (``background`` True) or an object's: 255 on
    the object, 0 on the background, the probabilities' own softness at the edge."""
    alpha = 1.0 - probabilities if background else probabilities
    return Image.fromarray(np.clip(np.rint(alpha * 255.0), 0, 255).astype(np.uint8), "L")


def _check_image(image) -> None:
    if not isinstance(image, Image.Image):
        raise InvalidArgument(f"the image must be a PIL image, got {type(image).__name__}; open a file with "
                              "gouache.images.load_image(path)")


def _segmenter(segmenter, device: str):
    """``(segmenter, owned)``: a loaded :class:`Segmenter` as given, or one loaded by name (to close after)."""
    if isinstance(segmenter, Segmenter):
        return segmenter, False
    return load_segmenter(segmenter, device), True


def mask_image(image: Image.Image, words: str, options: MaskOptions = MaskOptions(),
               segmenter: Segmenter | str | None = None, device: str = "cpu") -> Image.Image:
    """The ``L`` mask (the image's size, white where ``words`` match) by ``segmenter`` (a loaded one,
    a name, or None for the built-in, loaded for this and released after)."""
    options.validate()
    words = check_words(words)
    _check_image(image)
    seg, owned = _segmenter(segmenter, device)
    try:
        probabilities = seg.probabilities(image, words)
    finally:
        if owned:
            seg.close()
    if options.refine:
        probabilities = refine(image, probabilities, options.refine)
    return words_mask(probabilities, words, options)


def remove_background(image: Image.Image, segmenter: Segmenter | str | None = None, device: str = "cpu",
                      refine_radius: int = DEFAULT_REFINE) -> Image.Image:
    """``image`` as RGBA with its background transparent: the alpha is the segmenter's "not the
    background", soft at the edges as its probabilities are. A picture that is all background is an error."""
    _check_image(image)
    seg, owned = _segmenter(segmenter, device)
    try:
        probabilities = seg.probabilities(image, "the background")
    finally:
        if owned:
            seg.close()
    check_int("refine", refine_radius, 0, MAX_BLUR)
    if refine_radius:
        probabilities = refine(image, probabilities, refine_radius)
    alpha = alpha_matte(probabilities)
    if alpha.getextrema()[1] <= 127:
        raise InvalidArgument("the segmenter finds no object in front of the background (every pixel is background); "
                              "nothing would be left")
    out = image.convert("RGBA")
    out.putalpha(alpha)
    return out
