"""Preprocessors that need weights, run only from weights already on disk (never downloaded).

``$GOUACHE_HOME/controlnet/annotators/depth``: a transformers ``DPTForDepthEstimation`` folder
(``config.json`` + weights, optionally ``preprocessor_config.json``; e.g. Intel/dpt-hybrid-midas
saved with ``save_pretrained``). Only tiny random-weight DPT models have been tested with gouache
(tests/control); the code is the same for real weights. Pose estimation is not implemented yet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from gouache.errors import InvalidArgument, ModelLoadError
from gouache.models.home import models_dir


def annotator_dir(name: str) -> Path:
    return models_dir("controlnet") / "annotators" / name


def load_depth_estimator(folder: Path | None = None):
    """``(DPTForDepthEstimation, DPTImageProcessor)`` from ``folder`` (default: ``annotators/depth``), offline."""
    folder = Path(folder) if folder is not None else annotator_dir("depth")
    if not (folder / "config.json").is_file():
        raise InvalidArgument(f"the depth preprocessor needs DPT weights in {folder} (a transformers "
                              "DPTForDepthEstimation folder); put them there, or make the depth map yourself "
                              "and use the grayscale preprocessor")
    from transformers import DPTForDepthEstimation, DPTImageProcessor

    try:
        model = DPTForDepthEstimation.from_pretrained(folder, local_files_only=True).eval()
        if (folder / "preprocessor_config.json").is_file():
            processor = DPTImageProcessor.from_pretrained(folder, local_files_only=True)
        else:
            size = model.config.image_size
            processor = DPTImageProcessor(size={"height": size, "width": size}, keep_aspect_ratio=False)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{folder}: cannot load the DPT depth estimator: {e}") from e
    return model, processor


def estimate_depth(image: Image.Image, folder: Path | None = None) -> Image.Image:
    """Depth of ``image`` as grey RGB at its size, white = near (DPT predicts relative inverse depth),
    min–max normalised as the A1111 extension's ``depth_midas``."""
    import torch

    model, processor = load_depth_estimator(folder)
    pixels = processor(images=image.convert("RGB"), return_tensors="pt").pixel_values
    with torch.no_grad():
        depth = model(pixel_values=pixels).predicted_depth.float()  # (1, h, w)
    depth = torch.nn.functional.interpolate(depth[:, None], size=(image.height, image.width), mode="bicubic",
                                            align_corners=False)[0, 0].numpy()
    lo, hi = float(depth.min()), float(depth.max())
    grey = np.zeros_like(depth) if hi - lo < 1e-8 else (depth - lo) / (hi - lo) * 255
    return Image.fromarray(np.clip(np.round(grey), 0, 255).astype(np.uint8)).convert("RGB")
