"""Prompt styles (gouache.prompts.styles): A1111's styles.csv and its rules for applying a style."""

import re

import pytest

from gouache.errors import InvalidArgument, UnknownName
from gouache.prompts.styles import Style, apply_styles, extract_styles, find_styles, load_styles

OIL = Style("Oil", "oil painting of {prompt}, masterpiece", "photo")
SHARP = Style("Sharp", "sharp focus", "blurry")


@pytest.mark.parametrize("prompt, styles, expected", [
    ("a cat", [OIL], ("oil painting of a cat, masterpiece", "photo")),
    ("a cat", [SHARP], ("a cat, sharp focus", "blurry")),
    ("", [SHARP], ("sharp focus", "blurry")),  # empty parts are left out
    ("a cat", [OIL, SHARP], ("oil painting of a cat, masterpiece, sharp focus", "photo, blurry")),
    ("a cat", [SHARP, OIL], ("oil painting of a cat, sharp focus, masterpiece", "blurry, photo")),  # in order
])
def test_styles_apply_as_in_a1111(prompt, styles, expected):
    assert apply_styles(prompt, "", styles) == expected


@pytest.mark.parametrize("names", [["Oil"], ["Sharp"], ["Oil", "Sharp"], ["Sharp", "Oil"], []])
def test_styles_are_found_in_the_prompt_they_made(names):
    table = {"Oil": OIL, "Sharp": SHARP}
    prompt, negative = apply_styles("a cat", "ugly", [table[n] for n in names])
    found, base, base_negative = extract_styles(prompt, negative, table)
    assert apply_styles(base, base_negative, [table[n] for n in found]) == (prompt, negative)
    assert (found, base, base_negative) == (names, "a cat", "ugly")


def test_the_styles_file_and_folder_are_read(tmp_path, prompt_home):
    home = prompt_home.make_home(tmp_path / "home")
    (home / "styles").mkdir()
    (home / "styles" / "more.csv").write_text("\ufeffname,prompt,negative_prompt\nInk,\"ink, {prompt}\",colour\n")
    styles = load_styles(home)
    assert list(styles) == ["outline", "Muted", "Ink"]
    assert styles["Muted"] == Style("Muted", "muted colours", "bright, saturated")


def test_an_unknown_style_lists_the_styles(tmp_path, monkeypatch, prompt_home):
    monkeypatch.setenv("GOUACHE_HOME", str(prompt_home.make_home(tmp_path / "home")))
    message = "unknown style 'outlines' (did you mean 'outline'?); available: outline, Muted"
    with pytest.raises(UnknownName, match=re.escape(message)):
        find_styles(["outlines"])


def test_a_file_without_a1111s_columns_is_one_clear_error(tmp_path, prompt_home):
    home = prompt_home.make_home(tmp_path / "home", styles="title,text2\nx,y\n")
    with pytest.raises(InvalidArgument, match="must have the columns name,prompt,negative_prompt"):
        load_styles(home)
