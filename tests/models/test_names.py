"""The one rule for names (checkpoints, ControlNets, LoRA): tiers, groups, titles, "did you mean"."""

from pathlib import Path

import pytest

from gouache.errors import InvalidArgument, ModelLoadError, UnknownName
from gouache.models.names import Names, without_title

FILES = ["style/ink.safetensors", "ink.pt", "pixel-art.safetensors", "a/dup.ckpt", "b/dup.ckpt"]


def tiers(rel: str):
    path = Path(rel)
    return (rel,), (path.name,), (str(path.with_suffix("")),), (path.stem,)


def names(groups=(FILES,)):
    return Names("model", groups, tiers, str)


@pytest.mark.parametrize("asked, found", [
    ("ink.pt", "ink.pt"),  # the listed name
    ("ink.safetensors", "style/ink.safetensors"),  # a file name, when no listed name matches
    ("ink", "ink.pt"),  # the name without the extension; "style/ink.safetensors" answers only by its stem
    ("style/ink", "style/ink.safetensors"),
    ("pixel-art [0123456789]", "pixel-art.safetensors"),  # A1111's title
])
def test_the_surest_tier_decides(asked, found):
    assert names().lookup(asked) == found


def test_two_entries_in_the_deciding_tier_are_ambiguous():
    with pytest.raises(InvalidArgument, match="model name 'dup' is ambiguous; say which: a/dup.ckpt, b/dup.ckpt"):
        names().find("dup")


def test_an_earlier_group_shadows_a_later_one():
    shadowing = names((["mine/pixel-art.safetensors"], ["pixel-art.safetensors"]))
    assert shadowing.lookup("pixel-art") == "mine/pixel-art.safetensors"
    assert shadowing.lookup("pixel-art.safetensors") == "mine/pixel-art.safetensors"


def test_unknown_names_suggest_the_closest_and_list_every_one():
    with pytest.raises(UnknownName) as err:
        names().lookup("pixel-arts", hint=". Put models in /x")
    assert str(err.value) == ("unknown model 'pixel-arts' (did you mean 'pixel-art.safetensors'?); available: "
                              "style/ink.safetensors, ink.pt, pixel-art.safetensors, a/dup.ckpt, b/dup.ckpt. Put models in /x")
    assert "did you mean" not in str(names().unknown("qux")) and "none installed" in str(names(([],)).unknown("x"))
    assert len(str(names().unknown("x" * 5000))) < 400  # a request's long name is not echoed whole


def test_resolve_takes_existing_paths_and_refuses_missing_ones(tmp_path):
    (tmp_path / "here.safetensors").write_bytes(b"")
    by_path = names().resolve(str(tmp_path / "here.safetensors"), lambda p: f"path:{p.name}", (".safetensors",))
    assert by_path == "path:here.safetensors" and names().resolve("ink", str, ()) == "ink.pt"
    with pytest.raises(ModelLoadError, match="no such model file or folder"):
        names().resolve("gone.safetensors", str, (".safetensors",))
    with pytest.raises(UnknownName):
        names().resolve("gone", str, (".safetensors",))


def test_titles():
    assert without_title(" foo.safetensors [6ce0161689] ") == "foo.safetensors"
    assert without_title("foo [not-a-hash]") == "foo [not-a-hash]"
