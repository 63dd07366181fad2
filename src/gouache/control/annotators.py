"""Preprocessors that need weights, run only from weights already on disk (never downloaded).

``$GOUACHE_HOME/controlnet/annotators/depth``: a transformers ``DPTForDepthEstimation`` folder
(``config.json`` + weights, optionally ``preprocessor_config.json``; e.g. Intel/dpt-hybrid-midas
saved with ``save_pretrained``). Only tiny random-weight DPT models have been tested with gouache
(tests/control); the code is the same for real weights.

``$GOUACHE_HOME/controlnet/annotators/pose``: a transformers ``VitPoseForPoseEstimation`` folder
(COCO's 17 keypoints, e.g. usyd-community/vitpose-base-simple with its ``preprocessor_config.json``).
VitPose is a top-down estimator and gouache ships no person detector, so the whole image is taken
as one person's box: it suits images of one person. The keypoints are drawn as OpenPose's 18-point
skeleton (the neck is the shoulders' midpoint) in OpenPose's colours on black, the map the
``openpose`` ControlNets were trained on. Tested only with tiny random-weight VitPose models.
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


# OpenPose's 18 keypoints (nose, neck, right shoulder/elbow/wrist, left shoulder/elbow/wrist, right
# hip/knee/ankle, left hip/knee/ankle, right eye, left eye, right ear, left ear) from COCO's 17;
# None is the neck, the midpoint of the shoulders.
COCO_TO_OPENPOSE = (0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
OPENPOSE_LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
                  (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
OPENPOSE_COLOURS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
                    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
                    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))


def load_pose_estimator(folder: Path | None = None):
    """``(VitPoseForPoseEstimation, VitPoseImageProcessor)`` from ``folder`` (default: ``annotators/pose``), offline."""
    folder = Path(folder) if folder is not None else annotator_dir("pose")
    if not (folder / "config.json").is_file():
        raise InvalidArgument(f"the openpose preprocessor needs VitPose weights in {folder} (a transformers "
                              "VitPoseForPoseEstimation folder); put them there, or draw the pose map yourself "
                              "and use the none preprocessor")
    from transformers import VitPoseForPoseEstimation, VitPoseImageProcessor

    try:
        model = VitPoseForPoseEstimation.from_pretrained(folder, local_files_only=True).eval()
        if (folder / "preprocessor_config.json").is_file():
            processor = VitPoseImageProcessor.from_pretrained(folder, local_files_only=True)
        else:
            h, w = model.config.backbone_config.image_size
            processor = VitPoseImageProcessor(size={"height": h, "width": w})
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{folder}: cannot load the VitPose estimator: {e}") from e
    return model, processor


def openpose_points(keypoints: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO's 17 (x, y) and scores → OpenPose's 18, the neck from the two shoulders."""
    points, conf = np.zeros((18, 2), np.float32), np.zeros(18, np.float32)
    for i, c in enumerate(COCO_TO_OPENPOSE):
        if c is None:
            points[i] = (keypoints[5] + keypoints[6]) / 2
            conf[i] = min(scores[5], scores[6])
        else:
            points[i], conf[i] = keypoints[c], scores[c]
    return points, conf


def draw_pose(points: np.ndarray, conf: np.ndarray, size: tuple[int, int], threshold: float = 0.3) -> Image.Image:
    """OpenPose's skeleton of 18 points on black: limbs, then joints, those above ``threshold`` only."""
    from PIL import ImageDraw

    w, h = size
    image = Image.new("RGB", size, (0, 0, 0))
    d = ImageDraw.Draw(image)
    width = max(2, round(max(w, h) / 128))
    for k, (a, b) in enumerate(OPENPOSE_LIMBS):
        if conf[a] >= threshold and conf[b] >= threshold:
            colour = tuple(int(c * 0.6) for c in OPENPOSE_COLOURS[k])  # OpenPose draws limbs at 60 %
            d.line([tuple(points[a]), tuple(points[b])], fill=colour, width=width)
    for i in range(18):
        if conf[i] >= threshold:
            x, y = points[i]
            d.ellipse([x - width, y - width, x + width, y + width], fill=OPENPOSE_COLOURS[i])
    return image


def estimate_pose(image: Image.Image, folder: Path | None = None, threshold: float = 0.3) -> Image.Image:
    """The pose of the one person in ``image`` as an OpenPose map at the image's size."""
    import torch

    model, processor = load_pose_estimator(folder)
    box = [0.0, 0.0, float(image.width), float(image.height)]  # COCO (x, y, w, h): the whole image
    inputs = processor(images=image.convert("RGB"), boxes=[[box]], return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    person = processor.post_process_pose_estimation(out, boxes=[[box]])[0][0]
    points, conf = openpose_points(person["keypoints"].float().numpy(), person["scores"].float().numpy())
    return draw_pose(points, conf, image.size, threshold)
