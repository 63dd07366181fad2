"""`gouache train clipseg`: a few steps from the built-in CLIP resume, validate and save a CLIPSeg folder."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gouache.errors import InvalidArgument
from gouache.train.clipseg import ClipSegTrainConfig, train_clipseg

TINY = dict(batch_size=4, warmup_steps=1, checkpoint_every=1, eval_n=2, reduce_dim=16, extract_layers="2,3")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("clipseg-run")
    logs = []
    train_clipseg(ClipSegTrainConfig("shapes", out, steps=2, **TINY), log=logs.append)
    (out / "gouache-tiny-clipseg").rename(out / "first")
    path = train_clipseg(ClipSegTrainConfig("shapes", out, steps=3, validation_every=3, **TINY), log=logs.append)
    return out, path, logs


def test_resumes_from_its_checkpoint(run):
    out, _, logs = run
    assert any("resumed from" in line and "step 2" in line for line in logs)
    assert [row["step"] for row in map(json.loads, (out / "loss.jsonl").read_text().splitlines()) if "step" in row] \
        == [1, 2, 3]


def test_saves_a_clipseg_folder_that_starts_from_the_clip(run):
    from transformers import CLIPModel, CLIPSegForImageSegmentation

    from gouache.vision.clip import builtin_clip_dir

    _, path, _ = run
    model = CLIPSegForImageSegmentation.from_pretrained(path, dtype=torch.float32)
    assert model.config.extract_layers == [2, 3] and model.config.reduce_dim == 16
    assert json.loads((path / "config.json").read_text())["dtype"] == "float16"
    clip = CLIPModel.from_pretrained(builtin_clip_dir(), dtype=torch.float32)
    # the text tower trained for 3 small steps: still the CLIP's, near enough; the vocabulary is the CLIP's
    a, b = model.clip.text_model.embeddings.token_embedding.weight, clip.text_model.embeddings.token_embedding.weight
    assert a.shape == b.shape and torch.allclose(a, b, atol=0.05)


def test_the_folder_is_a_segmenter_gouache_loads(run):
    from gouache.vision.segment import load_segmenter

    _, path, _ = run
    with load_segmenter(str(path)) as seg:
        p = seg.probabilities(Image.new("RGB", (80, 48), (220, 30, 30)), "the circle")
    assert p.shape == (48, 80) and np.isfinite(p).all()


def test_validation_writes_the_iou_figures(run):
    out, _, logs = run
    row = json.loads((out / "validation" / "figures.jsonl").read_text().splitlines()[-1])
    assert row["step"] == 3
    assert set(row) == {"step", "seen_shape", "seen_background", "seen_none", "held_out_shape", "held_out_background",
                        "held_out_none"}
    assert all(0 <= v <= 1 for k, v in row.items() if k != "step")


def test_a_resume_with_another_decoder_is_refused(run):
    out, _, _ = run
    with pytest.raises(InvalidArgument, match="--reduce-dim 16"):
        train_clipseg(ClipSegTrainConfig("shapes", out, steps=4, overwrite=True, **{**TINY, "reduce_dim": 32}))


@pytest.mark.parametrize("field,value,match", [("extract_layers", "3,1", "increasing layer indices"),
                                               ("extract_layers", "a", "increasing layer indices"),
                                               ("reduce_dim", 40, "multiple of 16"),
                                               ("vision_width", 64, "does not apply")])
def test_settings_are_checked(tmp_path, field, value, match):
    with pytest.raises(InvalidArgument, match=match):
        ClipSegTrainConfig("shapes", tmp_path, **{field: value}).validate()


def test_a_layer_past_the_clips_depth_is_refused(tmp_path):
    with pytest.raises(InvalidArgument, match="has 4 layers"):
        train_clipseg(ClipSegTrainConfig("shapes", tmp_path, steps=1, **{**TINY, "extract_layers": "1,4"}))
