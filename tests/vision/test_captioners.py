"""Captioners: every family loads offline from a folder and captions, names resolve, bad folders are one error.

The models are tiny and random (tests/vision/conftest.py): captions are gibberish words, so the
tests check what the caller sees — one non-empty string per image, deterministic, no prompt echo.
"""

import json

import pytest
from PIL import Image

from gouache.errors import InvalidArgument, ModelLoadError, UnknownName
from gouache.vision.captioners import (BUILTIN, FALLBACK, FAMILIES, Captioner, family_of, list_captioners,
                                       load_captioner, resolve_captioner)

IMAGES = [Image.new("RGB", (40, 30), "red"), Image.new("RGBA", (64, 64), (0, 0, 255, 128)),
          Image.new("L", (20, 50), 90)]
SPECIAL = ("<s>", "</s>", "<pad>", "<image>", "[SEP]", "[DEC]", "[CLS]", "[PAD]")


@pytest.mark.parametrize("family", ["blip", "blip-2", "llava", "llava_next", "vipllava"])
def test_each_family_captions_a_batch(tiny_captioners, family):
    with load_captioner(tiny_captioners[family]) as captioner:
        assert captioner.family is FAMILIES.get(family, FALLBACK)
        captions = captioner.caption(IMAGES, max_new_tokens=6)
        again = captioner.caption(IMAGES[:1], max_new_tokens=6)
    assert len(captions) == len(IMAGES)
    assert all(isinstance(c, str) and c and c == c.strip() for c in captions)
    assert not any(token in c for c in captions for token in SPECIAL)
    assert again == captions[:1]  # greedy: the same image gives the same caption, alone or in a batch


@pytest.mark.parametrize("family", ["llava", "llava_next"])
def test_chat_models_do_not_echo_the_prompt(tiny_captioners, family):
    with load_captioner(tiny_captioners[family]) as captioner:
        prompt = captioner._chat_prompt("describe this image .")
        captions = captioner.caption(IMAGES[:2], prompt="describe this image .", max_new_tokens=3)
    assert "describe this image" in prompt and prompt.rstrip().endswith("ASSISTANT:")
    assert all(len(c.split()) <= 3 for c in captions)  # only the new tokens (words or punctuation)


def test_llava_without_a_chat_template_uses_the_plain_prompt(tiny_llava_plain):
    with load_captioner(tiny_llava_plain) as captioner:
        assert captioner._chat_prompt("describe this") == "USER: <image>\ndescribe this ASSISTANT:"
        assert len(captioner.caption(IMAGES[:2], max_new_tokens=4)) == 2


@pytest.mark.parametrize("family", ["blip", "blip-2"])
def test_blip_prompt_is_a_prefix_not_repeated(tiny_captioners, family):
    with load_captioner(tiny_captioners[family]) as captioner:
        captions = captioner.caption(IMAGES[:1], prompt="a photo of", max_new_tokens=4)
    assert len(captions) == 1 and not captions[0].startswith("a photo of")


def test_close_releases_the_model(tiny_captioners):
    captioner = load_captioner(tiny_captioners["blip"])
    captioner.close()
    assert captioner.model is None
    with pytest.raises(InvalidArgument, match="closed"):
        captioner.caption(IMAGES)


def test_arguments_are_checked(tiny_captioners):
    with load_captioner(tiny_captioners["blip"]) as captioner:
        assert captioner.caption([]) == []
        with pytest.raises(InvalidArgument, match="max_new_tokens"):
            captioner.caption(IMAGES, max_new_tokens=0)
    with pytest.raises(InvalidArgument, match="unknown device 'gpu7'"):
        load_captioner(tiny_captioners["blip"], device="gpu7")


# --------------------------------------------------------------------------------------------
# names and folders


def test_names_resolve_under_gouache_home(tiny_captioners, tmp_path, monkeypatch):
    monkeypatch.setenv("GOUACHE_HOME", str(tmp_path))
    (tmp_path / "captioners" / "people").mkdir(parents=True)
    (tmp_path / "captioners" / "blip").symlink_to(tiny_captioners["blip"], target_is_directory=True)
    (tmp_path / "captioners" / "people" / "llava").symlink_to(tiny_captioners["llava"], target_is_directory=True)
    # the built-in first (it ships in the package), then the folders under $GOUACHE_HOME/captioners
    assert [e.name for e in list_captioners()] == ["gouache-tiny-captioner", "blip", "people/llava"]
    assert resolve_captioner("people/llava").path == tmp_path / "captioners" / "people" / "llava"
    assert resolve_captioner("llava").name == "people/llava"  # its folder's own name
    with load_captioner("blip") as captioner:
        assert isinstance(captioner, Captioner) and captioner.name == "blip"
    with pytest.raises(UnknownName, match=r"unknown captioner 'bliip' \(did you mean 'blip'\?\); available: "
                                          r"gouache-tiny-captioner, blip, people/llava\. Put captioning model folders in .*captioners/NAME"):
        load_captioner("bliip")


def test_the_builtin_when_it_is_not_installed(monkeypatch, tmp_path):
    monkeypatch.setattr("gouache.vision.captioners.builtin_folder", lambda: tmp_path / "none")
    with pytest.raises(ModelLoadError, match=f"the built-in captioner {BUILTIN} is not installed; pass `name_or_path`"):
        load_captioner()


def test_the_builtin_is_found_in_the_package(tiny_captioners, monkeypatch):
    monkeypatch.setattr("gouache.vision.captioners.builtin_folder", lambda: tiny_captioners["blip"])
    assert resolve_captioner().name == BUILTIN and list_captioners()[0].name == BUILTIN
    with load_captioner() as captioner:
        assert len(captioner.caption(IMAGES[:1], max_new_tokens=3)) == 1


@pytest.mark.parametrize("setup, error, message", [
    (lambda p: p.mkdir(), ModelLoadError, "is not a captioning model (no config.json)"),
    (lambda p: p.write_text("x"), ModelLoadError, "is a file, not a captioning model"),
    (lambda p: p.mkdir() or (p / "config.json").write_text("{oops"), ModelLoadError, "not a readable JSON"),
    (lambda p: p.mkdir() or (p / "config.json").write_text(json.dumps({"model_type": "clip"})), ModelLoadError,
     "holds a 'clip' model, not a captioner; supported families: BLIP (blip), BLIP-2 (blip-2), LLaVA 1.5 (llava), "
     "LLaVA-NeXT (llava_next), and any model transformers loads as image-text-to-text"),
    (lambda p: p.mkdir() or (p / "config.json").write_text(json.dumps({"model_type": "blip"})), ModelLoadError,
     "cannot load the BLIP captioner in"),
    (lambda p: None, ModelLoadError, "no such captioner file or folder"),
])
def test_folders_that_are_not_captioners(tmp_path, setup, error, message):
    path = tmp_path / "model"
    setup(path)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        load_captioner(path)
    assert "\n" not in str(info.value)


def test_family_of_reads_model_type(tiny_captioners):
    assert {f: family_of(p).label for f, p in tiny_captioners.items()} == {
        "blip": "BLIP", "blip-2": "BLIP-2", "llava": "LLaVA 1.5", "llava_next": "LLaVA-NeXT",
        "vipllava": "image-text-to-text"}
