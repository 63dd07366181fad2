"""Dynamic prompts (gouache.prompts.dynamic): Dynamic Prompts' syntax, seeded picks, wildcard files,
and one clear error for what cannot be resolved."""

import time
from collections import Counter

import pytest

from gouache.errors import InvalidArgument, UnknownName
from gouache.prompts.dynamic import MAX_DEPTH, WildcardLibrary, check, is_dynamic, parse, resolve


@pytest.fixture
def library(tmp_path, prompt_home):
    return WildcardLibrary(prompt_home.make_home(tmp_path / "home") / "wildcards")


def picks(template, library=None, seeds=range(300)):
    return Counter(resolve(template, s, library) for s in seeds)


@pytest.mark.parametrize("template, outcomes", [
    ("a {red|green|blue} ball", {"a red ball", "a green ball", "a blue ball"}),
    ("{a|}b", {"ab", "b"}),
    ("{2$$a|b}", {"a, b", "b, a"}),
    ("{2$$ and $$a|b}", {"a and b", "b and a"}),
    ("{3$$a|b}", {"a, b", "b, a"}),  # no more picks than options
    ("{1-2$$a|b}", {"a", "b", "a, b", "b, a"}),
    ("{x|{y|z}}", {"x", "y", "z"}),
    ("\\{a|b\\} [c|d] (e:1.2) \\(f\\) <lora:g:1>", {"{a|b} [c|d] (e:1.2) \\(f\\) <lora:g:1>"}),
    ("snake_case and __init without end", {"snake_case and __init without end"}),
])
def test_every_option_comes_up_and_nothing_else(template, outcomes):
    assert set(picks(template)) == outcomes


def test_the_same_seed_gives_the_same_pick_and_seeds_differ():
    template = "a {red|green|blue|yellow} {circle|square|triangle}"
    assert [resolve(template, s) for s in range(50)] == [resolve(template, s) for s in range(50)]
    assert len({resolve(template, s) for s in range(50)}) > 6


def test_weights_bias_the_pick():
    counts = picks("{0.1::rare|9.9::common}", seeds=range(2000))
    assert counts["common"] > 15 * counts["rare"] > 0


def test_wildcards_read_their_files_nested_and_skip_comments(library, prompt_home):
    assert set(picks("a __colour__ __shape__", library)) == {f"a {c} {s}" for c in ("red", "blue", "green")
                                                             for s in ("circle", "square")}
    assert set(picks("__colours/warm__", library)) == {"red", "dark red"}  # a wildcard in a wildcard file
    assert set(picks("a __background__", library)) == {"a yellow background", "a blue background"}
    assert library.names() == sorted(prompt_home.WILDCARDS)


@pytest.mark.parametrize("template, message", [
    ("a __colur__", "unknown wildcard __colur__ (did you mean __colour__?)"),
    ("__loop/a__", "wildcards form a cycle: __loop/a__ → __loop/b__ → __loop/a__"),
    ("a {red|blue", "'{' at character 3 that is never closed"),
    ("a red} ball", "'}' at character 6 that closes no '{'"),
    ("__../secret__", "not a path"),
    ("__/etc/passwd__", "not a path"),
    ("__colours/*__", "globs are not supported"),
    ("{" * (MAX_DEPTH + 1) + "}" * (MAX_DEPTH + 1), f"nests braces more than {MAX_DEPTH} deep"),
])
def test_what_cannot_be_resolved_is_one_clear_error(library, template, message):
    with pytest.raises(InvalidArgument if "unknown" not in message else UnknownName) as err:
        check(template, library)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_unknown_nested_wildcard_says_where_it_is_named(tmp_path, prompt_home):
    library = WildcardLibrary(prompt_home.make_home(tmp_path / "h", {"outer": "__inner__\n"}) / "wildcards")
    with pytest.raises(UnknownName, match="unknown wildcard __inner__ in __outer__"):
        resolve("__outer__", 1, library)


def test_expansion_is_bounded(tmp_path, prompt_home):
    doubling = {f"w{k}": f"__w{k + 1}__ __w{k + 1}__\n" for k in range(20)} | {"w20": "x\n"}
    library = WildcardLibrary(prompt_home.make_home(tmp_path / "h", doubling) / "wildcards")
    check("__w0__", library)  # fine to name: no cycle
    with pytest.raises(InvalidArgument, match="over"):
        resolve("__w0__", 1, library)  # 2**20 words


@pytest.mark.parametrize("text", ["{" * 50_000, "__ a " * 40_000, "{a|" * 30 + "}" * 30 + "x" * 100_000,
                                  "_" * 100_000, "\\" * 100_001])
def test_the_parser_is_linear_on_hostile_text(text):
    start = time.perf_counter()
    try:
        parse(text)
    except InvalidArgument:
        pass
    assert time.perf_counter() - start < 1.0


def test_a_plain_prompt_is_not_dynamic_and_resolves_to_itself():
    text = "a red circle on a blue background, [cat|dog], (fur:1.2)"
    assert not is_dynamic(text) and resolve(text, 5) == text
