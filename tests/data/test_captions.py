"""Caption sources: sidecar files, metadata tables, file names, and captioning models (tiny random-weight ones, offline)."""

import json
from pathlib import Path

import pytest
from PIL import Image

from gouache.data.captions import (MissingCaption, ModelCaptioner, filename_caption, make_captioner,
                                   read_metadata_captions, sidecar_caption)
from gouache.errors import InvalidArgument, ModelLoadError, UnknownName


@pytest.mark.parametrize("path, caption", [
    ("golden_retriever_003.jpg", "golden retriever"),
    ("red-fox (2).png", "red fox"),
    ("a  cat-on_the mat.webp", "a cat on the mat"),
    ("r2d2.png", "r2d2"),
    ("tabby cats/0001.jpg", "tabby cats"),
    ("dogs_01/12.jpg", "dogs"),
    ("0001.jpg", ""),  # the source folder's own name is no caption
])
def test_filename_caption(path, caption):
    assert filename_caption(Path("src") / path, root=Path("src")) == caption


@pytest.mark.parametrize("files, caption", [
    ({"cat.txt": "a tabby cat\nsecond line\n"}, "a tabby cat"),
    ({"cat.txt": "\n\n  spaced  \n"}, "spaced"),
    ({"cat.caption": "kohya's older extension"}, "kohya's older extension"),
    ({"cat.txt": "from txt", "cat.caption": "from caption"}, "from txt"),
    ({"cat.txt": "   \n", "cat.caption": "the .txt is blank"}, "the .txt is blank"),
    ({}, None),
])
def test_sidecar_caption(tmp_path, files, caption):
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert sidecar_caption(tmp_path / "cat.jpg") == caption


def test_sidecar_that_is_not_text_skips_the_image(tmp_path):
    (tmp_path / "cat.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(MissingCaption, match="cat.txt is not UTF-8 text"):
        sidecar_caption(tmp_path / "cat.jpg")


def test_metadata_tables_anywhere_in_the_tree(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "metadata.csv").write_text('file_name,caption\ntop.png,"a, b"\n', encoding="utf-8")
    (tmp_path / "a" / "b" / "metadata.jsonl").write_text(
        json.dumps({"file_name": "x.jpg", "text": "ünïcode"}, ensure_ascii=False) + "\n\n", encoding="utf-8")
    assert read_metadata_captions(tmp_path) == {"top.png": "a, b", "a/b/x.jpg": "ünïcode"}


@pytest.mark.parametrize("name, text, message", [
    ("metadata.jsonl", '{"file_name": "a.png", "text": "ok"}\n{oops\n', "line 2 is not JSON"),
    ("metadata.jsonl", '{"text": "no file"}\n', "line 1 has no file_name"),
    ("metadata.csv", "file_name,label\na.png,cat\n", "line 2 has no caption; put it in a `text` or `caption` column"),
])
def test_bad_metadata_is_one_clear_error(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(InvalidArgument, match=message):
        make_captioner("auto", tmp_path)


def test_missing_sources_fail_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("GOUACHE_HOME", str(tmp_path / "home"))
    with pytest.raises(InvalidArgument, match="'metadata' needs a metadata.jsonl or metadata.csv"):
        make_captioner("metadata", tmp_path)
    with pytest.raises(ModelLoadError, match=r"no BLIP captioning model: pass --blip FOLDER, or put one in .*captioners"):
        make_captioner("blip", tmp_path)
    with pytest.raises(ModelLoadError, match="nowhere: no such captioner file or folder"):
        make_captioner("auto", tmp_path, model=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"is not a captioning model \(no config.json\)"):
        make_captioner("blip", tmp_path, model=tmp_path / "empty")
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "config.json").write_text('{"model_type": "clip"}')
    with pytest.raises(ModelLoadError, match="holds a 'clip' model, not a captioner; supported families: BLIP"):
        make_captioner("captioner", tmp_path, model=tmp_path / "clip")
    with pytest.raises(UnknownName, match="unknown captioner 'llava'"):
        make_captioner("auto", tmp_path, model="llava")
    with pytest.raises(UnknownName, match="choose one of auto, sidecar, filename, metadata, blip, captioner"):
        make_captioner("llava", tmp_path)
    with pytest.raises(InvalidArgument, match="`recaption` .* cannot go with caption source 'sidecar'"):
        make_captioner("sidecar", tmp_path, recaption=True)


def test_auto_order_is_sidecar_metadata_file_name(tmp_path):
    (tmp_path / "metadata.jsonl").write_text(
        "".join(json.dumps({"file_name": n, "text": f"table {n}"}) + "\n" for n in ("a.png", "b.png")))
    (tmp_path / "a.txt").write_text("sidecar a")
    captioner = make_captioner("auto", tmp_path)
    image = Image.new("RGB", (8, 8))
    assert [captioner(tmp_path / n, image) for n in ("a.png", "b.png", "big_cat_7.png")] == [
        ("sidecar a", "sidecar"), ("table b.png", "metadata"), ("big cat", "filename")]
    with pytest.raises(MissingCaption, match="file name has no words"):
        captioner(tmp_path / "0042.png", image)


# --------------------------------------------------------------------------------------------
# BLIP, tiny and random: gibberish captions, but the whole pipeline runs offline


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory):
    """A BLIP captioning model with random weights, a 32-pixel image processor and a 17-word vocabulary."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    folder = tmp_path_factory.mktemp("blip")
    words = "a cat dog on the grass red blue sits in photo of".split()
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *words])}
    tokenizer = BertTokenizer(vocab=vocab, bos_token="[DEC]")  # BLIP's decoder starts from [DEC]
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    torch.manual_seed(0)
    config = BlipConfig(
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16),
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, encoder_hidden_size=16, max_position_embeddings=32,
                         bos_token_id=vocab["[DEC]"], pad_token_id=0, sep_token_id=vocab["[SEP]"], eos_token_id=vocab["[SEP]"]),
        projection_dim=16)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_blip_captions_are_strings(tiny_blip):
    blip = ModelCaptioner(tiny_blip, max_new_tokens=8)
    captions = [blip(Image.new(mode, (50, 40), "red")) for mode in ("RGB", "RGBA")]
    assert all(isinstance(c, str) and c and "[" not in c for c in captions)


def test_prepare_with_blip_offline(tiny_blip, tmp_path, monkeypatch):
    """The default folder $GOUACHE_HOME/captioners/blip, the whole run, no network (HF_HUB_OFFLINE=1)."""
    from gouache.data.prepare import PrepareConfig, prepare

    monkeypatch.setenv("GOUACHE_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "captioners").mkdir(parents=True)
    (tmp_path / "home" / "captioners" / "blip").symlink_to(tiny_blip, target_is_directory=True)
    (tmp_path / "src").mkdir()
    for i, colour in enumerate(("red", "blue")):
        Image.new("RGB", (64, 64), colour).save(tmp_path / "src" / f"{i}.png")
    (tmp_path / "src" / "0.txt").write_text("ignored: the source is blip")
    report = prepare(PrepareConfig(str(tmp_path / "src"), str(tmp_path / "dst"), resolution=64, caption="blip"),
                     report=lambda line: None)
    rows = [json.loads(x) for x in (tmp_path / "dst" / "metadata.jsonl").read_text().splitlines()]
    assert report.written == 2 and report.caption_sources == {"blip": 2}
    assert all(isinstance(r["text"], str) and r["text"] and not r["text"].startswith("ignored") for r in rows)


def test_a_captioner_fills_in_only_missing_captions_unless_recaption(tiny_blip, tmp_path):
    from gouache.data.prepare import PrepareConfig, prepare

    (tmp_path / "src").mkdir()
    for i, colour in enumerate(("red", "blue")):
        Image.new("RGB", (64, 64), colour).save(tmp_path / "src" / f"{i}.png")
    (tmp_path / "src" / "0.txt").write_text("my own caption")
    runs = {}
    for recaption in (False, True):
        dst = tmp_path / f"dst-{recaption}"
        cfg = PrepareConfig(str(tmp_path / "src"), str(dst), resolution=64, captioner=str(tiny_blip),
                            caption_prompt="a photo of", recaption=recaption)
        runs[recaption] = prepare(cfg, report=lambda line: None).caption_sources
        texts = [json.loads(x)["text"] for x in (dst / "metadata.jsonl").read_text().splitlines()]
        assert ("my own caption" in texts) is not recaption and all(texts)
    assert runs == {False: {"sidecar": 1, "captioner": 1}, True: {"captioner": 2}}


def test_the_prompt_reaches_the_model(tiny_blip, tmp_path):
    captioner = make_captioner("captioner", tmp_path, model=tiny_blip, prompt="a photo of")
    assert captioner.model.prompt == "a photo of" and captioner.order == ("captioner",)
    caption, source = captioner(tmp_path / "x.png", Image.new("RGB", (40, 40), "red"))
    assert source == "captioner" and caption and not caption.startswith("a photo of")
    captioner.model.close()


def test_the_built_in_captioner_lets_the_built_in_clip_pick_as_gouache_caption_does(tiny_blip, tmp_path):
    """dataset prepare's captions are `gouache caption`'s: with the built-in captioner, gouache-tiny-clip picks
    each caption from the beam candidates (--rerank none: greedy); any other captioner decodes greedily."""
    import random

    from gouache.tiny.shapes import draw, random_spec

    image = draw(random_spec(random.Random(3)))
    picked = make_captioner("captioner", tmp_path)
    greedy = make_captioner("captioner", tmp_path, rerank="none")
    other = make_captioner("captioner", tmp_path, model=tiny_blip)
    try:
        assert picked.model.clip is not None and greedy.model.clip is None and other.model.clip is None
        caption, _ = picked(tmp_path / "x.png", image)
        assert caption == picked.model.model.caption([image], rerank=picked.model.clip)[0]
        assert greedy(tmp_path / "x.png", image)[0] == greedy.model.model.caption([image])[0]
    finally:
        for c in (picked, greedy, other):
            c.model.close()
