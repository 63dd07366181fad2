"""`gouache train captioner`: a few steps of a tiny BLIP resume, validate and save a folder transformers loads."""

import json

import pytest
import torch

from gouache.errors import InvalidArgument
from gouache.tiny.pairs import every_caption
from gouache.train.captioner import CaptionerTrainConfig, SPECIALS, train_captioner, words

TINY = dict(vision_width=32, vision_layers=1, text_width=32, text_layers=1, batch_size=4, warmup_steps=1,
            checkpoint_every=1, eval_n=2)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("captioner-run")
    logs = []
    train_captioner(CaptionerTrainConfig("shapes", out, steps=2, **TINY), log=logs.append)
    (out / "gouache-tiny-captioner").rename(out / "first")
    path = train_captioner(CaptionerTrainConfig("shapes", out, steps=3, validation_every=3, **TINY), log=logs.append)
    return out, path, logs


def test_resumes_from_its_checkpoint(run):
    out, _, logs = run
    assert any("resumed from" in line and "step 2" in line for line in logs)
    rows = [json.loads(line) for line in (out / "loss.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "step" in row] == [1, 2, 3]


def test_the_tokenizer_reads_and_writes_every_caption(run):
    from transformers import BlipProcessor

    _, path, _ = run
    processor = BlipProcessor.from_pretrained(path)
    assert (path / "vocab.txt").read_text().split() == [*SPECIALS, *words()]
    unk = processor.tokenizer.unk_token_id
    for caption in every_caption():
        ids = processor.tokenizer(caption).input_ids
        assert unk not in ids and ids[0] == processor.tokenizer.cls_token_id and ids[-1] == processor.tokenizer.sep_token_id
        assert processor.decode(ids, skip_special_tokens=True) == caption


def test_saves_an_fp16_folder_that_generates(run):
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from gouache.tiny.pairs import evaluation_items

    _, path, _ = run
    assert json.loads((path / "config.json").read_text())["dtype"] == "float16"
    model = BlipForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
    processor = BlipProcessor.from_pretrained(path)
    tok = processor.tokenizer
    assert (model.config.text_config.bos_token_id, model.config.text_config.sep_token_id) == (tok.cls_token_id,
                                                                                             tok.sep_token_id)
    pixels = processor(images=[evaluation_items(False, 1)[0].image], return_tensors="pt")["pixel_values"]
    ids = model.generate(pixel_values=pixels, max_new_tokens=5)
    assert ids.shape[0] == 1 and ids[0, 0] == tok.cls_token_id


def test_validation_writes_the_exact_caption_figures(run):
    out, _, logs = run
    rows = [json.loads(line) for line in (out / "validation" / "figures.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 3 and set(rows[-1]) == {"step", "seen", "held_out"}
    assert any(line.startswith("[captioner] validation figures") for line in logs)


def test_settings_are_checked(tmp_path):
    with pytest.raises(InvalidArgument, match="vision_layers"):
        CaptionerTrainConfig("shapes", tmp_path, vision_layers=0).validate()
    with pytest.raises(InvalidArgument, match="save_dtype"):
        CaptionerTrainConfig("shapes", tmp_path, save_dtype="int8").validate()


def test_word_noise_swaps_colours_for_colours_and_shapes_for_shapes_by_index(tmp_path):
    from gouache.tiny.shapes import COLOURS, SHAPES
    from gouache.train.captioner import CaptionerTrainer

    cfg = CaptionerTrainConfig("shapes", tmp_path, word_noise=0.5, **TINY)
    trainer = CaptionerTrainer(cfg, None, CaptionerTrainer.load_data(cfg, None))
    tok = trainer.processor.tokenizer
    ids = tok(every_caption()[:64], padding=True, return_tensors="pt").input_ids
    swapped = trainer.swap_words(ids, 5)
    for kind in (COLOURS, SHAPES):
        kind_ids = torch.tensor(tok.convert_tokens_to_ids(list(kind)))
        assert torch.equal(torch.isin(ids, kind_ids), torch.isin(swapped, kind_ids))
    changed = swapped != ids
    content = torch.isin(ids, torch.tensor(tok.convert_tokens_to_ids([*COLOURS, *SHAPES])))
    assert not (changed & ~content).any()
    assert 0.25 < changed.sum() / content.sum() < 0.6  # half are drawn, and some draw the word they had
    assert torch.equal(trainer.swap_words(ids, 5), swapped) and not torch.equal(trainer.swap_words(ids, 6), swapped)


def test_round_trip_shows_half_the_batch_as_gouache_tinys_vae_returns_it(tmp_path):
    import numpy as np

    from gouache.train.captioner import CaptionerTrainer

    plain = CaptionerTrainer.load_data(CaptionerTrainConfig("shapes", tmp_path, **TINY), None)
    cfg = CaptionerTrainConfig("shapes", tmp_path, round_trip=0.5, **{**TINY, "batch_size": 8})
    cfg.validate()
    passed = CaptionerTrainer.load_data(cfg, None)
    a = CaptionerTrainer.load_data(CaptionerTrainConfig("shapes", tmp_path, **{**TINY, "batch_size": 8}), None)(3)
    b = passed(3)
    assert [x.caption for x in a] == [x.caption for x in b]  # the same items, only their pixels differ
    diff = [np.abs(np.asarray(x.image, dtype=float) - np.asarray(y.image, dtype=float)).mean() for x, y in zip(a, b)]
    assert all(0 < d < 20 for d in diff[:4]) and diff[4:] == [0.0] * 4  # softened, not another picture
    assert all(np.array_equal(np.asarray(x.image), np.asarray(y.image)) for x, y in zip(b, passed(3)))
    assert len(plain(3)) == 4
    with pytest.raises(InvalidArgument, match="round_trip"):
        CaptionerTrainConfig("shapes", tmp_path, round_trip=2).validate()


def test_grey_images_teach_no_colour_words(tmp_path):
    import numpy as np

    from gouache.tiny.shapes import COLOURS
    from gouache.train.captioner import CaptionerTrainer

    cfg = CaptionerTrainConfig("shapes", tmp_path, grey=0.25, **{**TINY, "batch_size": 8})
    cfg.validate()
    trainer = CaptionerTrainer(cfg, None, CaptionerTrainer.load_data(cfg, None))
    items = trainer.dataset(2)
    tok = trainer.processor.tokenizer
    text = tok([it.caption for it in items], padding=True, return_tensors="pt")
    labels = text["input_ids"].masked_fill(text["attention_mask"] == 0, -100)
    out, taught = trainer.grey_items(items, labels, 2)
    colours = torch.isin(labels, torch.tensor(tok.convert_tokens_to_ids(list(COLOURS))))
    assert colours[6:].any() and not torch.isin(taught[6:], labels[6:][colours[6:]]).any()  # 2 of 8 greyed
    assert torch.equal(taught[:6], labels[:6]) and out[:6] == items[:6]
    for it in out[6:]:
        px = np.asarray(it.image, dtype=int)
        assert (px[..., 0] == px[..., 2]).all() and 50 <= px.min() and px.max() <= 205
    again, _ = trainer.grey_items(items, labels, 2)
    assert all(np.array_equal(np.asarray(a.image), np.asarray(b.image)) for a, b in zip(out, again))
    with pytest.raises(InvalidArgument, match="grey"):
        CaptionerTrainConfig("shapes", tmp_path, grey=-1).validate()
