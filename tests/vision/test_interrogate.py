"""gouache.vision.interrogate with a tiny random CLIP: the lists, A1111's prompt rule, the caps."""

import pytest

from gouache.errors import InvalidArgument
from gouache.vision.interrogate import FlavourList, Interrogation, flavour_lists, interrogate, read_list, reranks


class FakeCaptioner:
    """Any object with ``.caption(images) -> [str]`` will do."""

    def __init__(self, text="a red circle on a white background"):
        self.text, self.seen = text, []

    def caption(self, images, prompt=None, rerank=None):
        self.seen.append(images)
        self.rerank = rerank
        return [self.text if rerank is None else f"{self.text}, picked" for _ in images]


LISTS = [FlavourList("mediums", ("an outline drawing", "a photograph", "a mosaic")),
         FlavourList("flavours", ("red", "blue", "geometric", "flat colour", "grainy"), top=3)]


def test_the_shipped_lists():
    lists = {f.name: f for f in flavour_lists()}
    assert list(lists)[:4] == ["mediums", "movements", "artists", "flavours"]
    assert lists["flavours"].top == 3 and lists["mediums"].top == 1
    assert all(20 <= len(f.entries) <= 100 for f in lists.values())
    for words in ("flat colour", "outline drawing", "geometric", "minimalist", "red", "blue"):
        assert words in lists["flavours"].entries


def test_a_user_list_adds_or_replaces_a_category(gouache_home):
    folder = gouache_home / "interrogate"
    folder.mkdir(exist_ok=True)
    (folder / "lighting.top2.txt").write_text("soft light\n\nhard light\nsoft light\nbacklit\n")
    (folder / "artists.txt").write_text("by nobody in particular\n")
    try:
        lists = {f.name: f for f in flavour_lists()}
        assert lists["lighting"].entries == ("soft light", "hard light", "backlit") and lists["lighting"].top == 2
        assert lists["artists"].entries == ("by nobody in particular",)
        assert list(lists)[-1] == "lighting"
    finally:
        for path in folder.iterdir():
            path.unlink()


def test_lists_are_capped(tmp_path, monkeypatch):
    monkeypatch.setattr("gouache.vision.interrogate.MAX_ENTRIES", 3)
    path = tmp_path / "big.txt"
    path.write_text("a\nb\nc\nd\n")
    with pytest.raises(InvalidArgument, match=r"big.txt: 4 entries; an interrogation list holds at most 3"):
        read_list(path)
    path.write_text("x" * 201)
    with pytest.raises(InvalidArgument, match="over 200 characters"):
        read_list(path)


def test_a1111s_rule_caption_then_best_matches(tiny_clip, shapes_images):
    captioner = FakeCaptioner()
    result = interrogate(shapes_images[0], tiny_clip, captioner, LISTS, min_score=-1)
    assert isinstance(result, Interrogation)
    assert result.caption == "a red circle on a white background" and len(captioner.seen[0]) == 1
    assert [len(result.matches[k]) for k in ("mediums", "flavours")] == [1, 3]
    medium = tiny_clip.rank(shapes_images[0], list(LISTS[0].entries), top=1)
    assert result.matches["mediums"][0][0] == medium[0][0]
    assert result.matches["mediums"][0][1] == pytest.approx(medium[0][1], abs=1e-5)
    flavours = [t for t, _ in tiny_clip.rank(shapes_images[0], list(LISTS[1].entries), top=3)]
    assert result.prompt == ", ".join([result.caption, medium[0][0], *flavours])


def test_matches_below_the_threshold_stay_out_of_the_prompt(tiny_clip, shapes_images):
    result = interrogate(shapes_images[1], tiny_clip, FakeCaptioner("a blue oval"), LISTS, min_score=1.5)
    assert result.prompt == "a blue oval"
    assert len(result.matches["flavours"]) == 3  # ranked all the same


def test_no_captioner_gives_a_clip_only_prompt(tiny_clip, shapes_images):
    result = interrogate(shapes_images[2], tiny_clip, None, LISTS, min_score=-1)
    assert result.caption == ""
    assert result.prompt.split(", ")[0] == result.matches["mediums"][0][0]
    assert len(result.prompt.split(", ")) == 4


def test_the_same_image_gives_the_same_prompt(tiny_clip, shapes_images):
    once = interrogate(shapes_images[3], tiny_clip, None, min_score=-1)
    assert interrogate(shapes_images[3].convert("RGBA"), tiny_clip, None, min_score=-1).prompt == once.prompt
    assert set(once.matches) >= {"mediums", "movements", "artists", "flavours"}


def test_the_built_in_pair_lets_the_clip_pick_the_caption(tiny_clip, shapes_images):
    """With the built-in captioner and CLIP (both left to their defaults) the CLIP picks the caption
    from the captioner's beam candidates, as `gouache caption` does; any other pair captions greedily."""
    assert reranks(None, None) and not reranks("blip-base", None) and not reranks(None, "ViT-L-14")
    captioner = FakeCaptioner()
    picked = interrogate(shapes_images[0], tiny_clip, captioner, LISTS, rerank=True)
    assert captioner.rerank is tiny_clip and picked.caption.endswith(", picked")
    assert interrogate(shapes_images[0], tiny_clip, captioner, LISTS).caption == "a red circle on a white background"
