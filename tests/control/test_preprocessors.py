"""Preprocessors: what each makes of an image, the registry's errors, the DPT depth estimator."""

import numpy as np
import pytest
from PIL import Image

from gouache.control.preprocessors import PREPROCESSORS, canny_edges, run_preprocessor
from gouache.errors import InvalidArgument, UnknownName


def test_canny_finds_the_edges_of_a_drawn_square(square):
    edges = canny_edges(square)
    ys, xs = np.nonzero(edges)
    # every edge pixel is on the square's border (x 16/43, y 20/47, give or take a pixel) ...
    on_border = (np.abs(xs[:, None] - [15, 16, 43, 44]).min(1) == 0) | (np.abs(ys[:, None] - [19, 20, 47, 48]).min(1) == 0)
    assert on_border.all()
    assert not edges[24:44, 20:40].any() and not edges[:10].any()
    # ... and all four sides are found
    for side in (edges[20:48, 15:17], edges[20:48, 43:45], edges[19:21, 16:44], edges[47:49, 16:44]):
        assert side.any(axis=0 if side.shape[0] < side.shape[1] else 1).mean() > 0.8


def test_canny_thresholds_drop_weak_edges():
    im = Image.new("RGB", (32, 32), (100, 100, 100))
    im.paste((110, 110, 110), (8, 8, 24, 24))  # a step of 10: Sobel L1 gradient about 40-80
    assert canny_edges(im, 20, 40).any()
    assert not canny_edges(im, 100, 200).any()
    with pytest.raises(InvalidArgument, match="low <= high"):
        canny_edges(im, 200, 100)


@pytest.mark.parametrize("name", [n for n, p in PREPROCESSORS.items() if not p.needs_weights])
def test_every_weightless_preprocessor_gives_an_rgb_map_of_the_image_size(name, square):
    out = run_preprocessor(name, square.resize((72, 64)))
    assert out.mode == "RGB" and out.size == (72, 64)


@pytest.mark.parametrize("name, inside, outside", [
    ("canny", 0, 0), ("threshold", 255, 0), ("grayscale", 255, 0), ("none", 255, 0),
])
def test_maps_of_the_square(name, inside, outside, square):
    out = np.asarray(run_preprocessor(name, square))
    assert out[34, 30, 0] == inside and out[2, 2, 0] == outside


def test_soft_edges_peak_at_the_border_and_scribble_draws_lines(square):
    soft = np.asarray(run_preprocessor("softedge", square))[..., 0]
    assert soft[34, 16] > 128 and soft[34, 30] < 20
    lines = np.asarray(run_preprocessor("scribble", square))[..., 0]
    assert lines.max() == 255 and lines[34, 30] == 0


def test_tile_blurs():
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    assert np.asarray(run_preprocessor("tile", noise)).std() < 0.5 * np.asarray(noise).std()


def test_unknown_preprocessor_and_option_say_what_exists(square):
    with pytest.raises(UnknownName, match="unknown preprocessor 'cany'; choose one of canny, softedge"):
        run_preprocessor("cany", square)
    with pytest.raises(InvalidArgument, match="takes low, high, not sigma"):
        run_preprocessor("canny", square, sigma=2)


def test_depth_needs_weights_on_disk(square, gouache_home):
    with pytest.raises(InvalidArgument, match="needs DPT weights in .*annotators/depth"):
        run_preprocessor("depth", square)


def test_depth_with_tiny_random_dpt_weights(square, gouache_home):
    # only random weights are tested: the map's numbers mean nothing, its form does
    import shutil

    import torch
    from transformers import DPTConfig, DPTForDepthEstimation

    torch.manual_seed(0)
    cfg = DPTConfig(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32, image_size=32,
                    patch_size=8, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 8, 8],
                    fusion_hidden_size=8, head_in_index=-1)
    folder = gouache_home / "controlnet" / "annotators" / "depth"
    DPTForDepthEstimation(cfg).save_pretrained(folder)
    try:
        out = run_preprocessor("depth", square)
        arr = np.asarray(out)
        assert out.size == (64, 64) and out.mode == "RGB"
        assert (arr[..., 0] == arr[..., 1]).all()  # grey; min-max scaled (a flat prediction is black)
        assert arr.max() in (0, 255) and arr.min() == 0
    finally:
        shutil.rmtree(folder.parent)


def test_openpose_needs_weights_on_disk(square, gouache_home):
    with pytest.raises(InvalidArgument, match="needs VitPose weights in .*annotators/pose"):
        run_preprocessor("openpose", square)


def test_pose_is_drawn_as_openposes_skeleton():
    from gouache.control.annotators import OPENPOSE_COLOURS, draw_pose, openpose_points

    coco = np.array([[32, 10], [34, 8], [30, 8], [36, 9], [28, 9], [40, 20], [24, 20], [44, 30], [20, 30],
                     [46, 40], [18, 40], [38, 44], [26, 44], [38, 54], [26, 54], [38, 62], [26, 62]], np.float32)
    scores = np.ones(17, np.float32)
    scores[9] = 0.1  # the left wrist is not sure: left out
    points, conf = openpose_points(coco, scores)
    assert tuple(points[1]) == (32, 20) and conf[7] == np.float32(0.1)  # neck between the shoulders; OpenPose 7 = left wrist
    arr = np.asarray(draw_pose(points, conf, (64, 64)))
    assert tuple(arr[20, 32]) == OPENPOSE_COLOURS[1]  # the neck's dot
    assert tuple(arr[20, 24]) == OPENPOSE_COLOURS[2]  # right shoulder (COCO 6)
    assert tuple(arr[40, 46]) == (0, 0, 0)  # the unsure left wrist
    assert arr[5:63, 15:50].any() and not arr[:, 55:].any()


def test_openpose_with_tiny_random_vitpose_weights(square, gouache_home):
    # only random weights are tested: where the points land means nothing, that a map comes out does
    import shutil

    import torch
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation

    torch.manual_seed(0)
    backbone = VitPoseBackboneConfig(image_size=[64, 48], patch_size=[16, 16], hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, out_indices=[2])
    folder = gouache_home / "controlnet" / "annotators" / "pose"
    VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, num_labels=17)).save_pretrained(folder)
    try:
        out = run_preprocessor("openpose", square, threshold=0.0)
        arr = np.asarray(out)
        assert out.size == (64, 64) and out.mode == "RGB" and arr.any()
    finally:
        shutil.rmtree(folder.parent)
