"""`gouache train clip`: a few steps of a tiny CLIP resume, validate and save a folder transformers loads."""

import json

import pytest
import torch
from PIL import Image

from gouache.errors import InvalidArgument
from gouache.train.clip import ClipTrainConfig, train_clip

TINY = dict(vision_width=32, vision_layers=1, text_width=32, text_layers=1, projection_dim=16, batch_size=4,
            warmup_steps=1, checkpoint_every=1, eval_n=2)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("clip-run")
    logs = []
    train_clip(ClipTrainConfig("shapes", out, steps=2, **TINY), log=logs.append)
    (out / "gouache-tiny-clip").rename(out / "first")
    path = train_clip(ClipTrainConfig("shapes", out, steps=3, validation_every=3, **TINY), log=logs.append)
    return out, path, logs


def test_resumes_from_its_checkpoint(run):
    out, _, logs = run
    assert any("resumed from" in line and "step 2" in line for line in logs)
    assert [row["step"] for row in map(json.loads, (out / "loss.jsonl").read_text().splitlines()) if "step" in row] \
        == [1, 2, 3]


def test_saves_an_fp16_folder_transformers_loads(run):
    from transformers import CLIPModel, CLIPProcessor

    _, path, _ = run
    model = CLIPModel.from_pretrained(path)
    processor = CLIPProcessor.from_pretrained(path)
    assert model.config.vision_config.image_size == 64 and model.config.text_config.vocab_size == 49408
    assert json.loads((path / "config.json").read_text())["dtype"] == "float16"
    assert torch.float16 == next(CLIPModel.from_pretrained(path, dtype="auto").parameters()).dtype
    assert processor.tokenizer("a red circle").input_ids == [49406, 320, 736, 7117, 49407]
    image = Image.new("RGB", (64, 64))
    assert processor(images=[image], return_tensors="pt")["pixel_values"].shape == (1, 3, 64, 64)


def test_validation_writes_the_rank1_figures(run):
    out, _, logs = run
    rows = [json.loads(line) for line in (out / "validation" / "figures.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 3 and 0 <= rows[-1]["seen"] <= 1 and 0 <= rows[-1]["held_out"] <= 1
    assert any(line.startswith("[clip] validation figures") for line in logs)


def test_a_resume_with_other_sizes_is_refused(run):
    out, _, _ = run
    with pytest.raises(InvalidArgument, match="--vision-width 32"):
        train_clip(ClipTrainConfig("shapes", out, steps=4, overwrite=True, **{**TINY, "vision_width": 64}))


@pytest.mark.parametrize("field,value,match", [("dataset", "data/x", "procedural dataset `shapes`"),
                                               ("batch_size", 300, "batch_size"), ("text_width", 48, "multiple of 32"),
                                               ("base", "sd15", "does not apply")])
def test_settings_are_checked(tmp_path, field, value, match):
    cfg = ClipTrainConfig("shapes", tmp_path, **{field: value} if field != "dataset" else {})
    if field == "dataset":
        cfg.dataset = value
    with pytest.raises(InvalidArgument, match=match):
        cfg.validate()
