"""``AND`` splitting, extra-network tags and LoRA multipliers, by A1111's regexes and Lora extension."""

import doctest
import importlib

import pytest

from gouache.errors import InvalidArgument
from gouache.prompts import (
    ExtraNetwork,
    LoraMultipliers,
    extract_extra_networks,
    lora_multipliers,
    schedules,
    split_and,
)


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("a AND b", [("a", 1.0), (" b", 1.0)]),  # trailing whitespace goes, leading stays
        ("a AND b:0.5", [("a", 1.0), (" b", 0.5)]),
        ("a:1.2 AND b : -0.5 ", [("a", 1.2), (" b", -0.5)]),
        ("a AND b AND c:2", [("a", 1.0), (" b", 1.0), (" c", 2.0)]),
        ("a:5.", [("a", 5.0)]),
        ("a :.5", [("a", 0.5)]),
        ("a:+1", [("a", 1.0)]),
        ("a:1.2:3", [("a:1.2", 3.0)]),  # only the last ":number" is the weight
        ("a: 1e3", [("a: 1e3", 1.0)]),  # no exponents
        ("(a:1.2) AND b", [("(a:1.2)", 1.0), (" b", 1.0)]),  # emphasis is not a part weight
        ("a\nAND\nb:2", [("a", 1.0), ("\nb", 2.0)]),
        ("a,AND,b", [("a,", 1.0), (",b", 1.0)]),  # a word boundary is enough
        ("ANDROID", [("ANDROID", 1.0)]),
        ("cat_AND_dog", [("cat_AND_dog", 1.0)]),
        ("a and b", [("a and b", 1.0)]),  # capitals only
        ("a AND", [("a", 1.0), ("", 1.0)]),
        ("", [("", 1.0)]),
        ("[a AND b:5]", [("[a", 1.0), (" b:5]", 1.0)]),  # split before scheduling, like A1111
    ],
)
def test_split_and(prompt, expected):
    assert split_and(prompt) == expected


def test_split_and_then_schedule():
    parts = split_and("a [red:blue:0.5] ball AND a cube:0.7")
    assert [(schedules(text, 4), weight) for text, weight in parts] == [
        ([(2, "a red ball"), (4, "a blue ball")], 1.0),
        ([(4, " a cube")], 0.7),
    ]


def lora(name, *args):
    return ExtraNetwork("lora", name, list(args))


@pytest.mark.parametrize(
    "prompt, text, networks",
    [
        ("<lora:fur:0.8>", "", [lora("fur", "0.8")]),
        ("a<lora:x:1>b", "ab", [lora("x", "1")]),
        ("a, <lora:x:1>, b", "a, , b", [lora("x", "1")]),  # commas and spaces stay
        ("<lora:my lora v2:0.7>", "", [lora("my lora v2", "0.7")]),
        ("<lora:a:te=0.5:unet=1>", "", [lora("a", "te=0.5", "unet=1")]),
        ("<hypernet:ink:0.6> <lyco:y>", " ",
         [ExtraNetwork("hypernet", "ink", ["0.6"]), ExtraNetwork("lyco", "y")]),
        ("<LORA:x>", "", [ExtraNetwork("LORA", "x")]),  # the kind is kept as written
        ("<<lora:x:1>>", "<>", [lora("x", "1")]),
        ("[a:<lora:x:1>:5]", "[a::5]", [lora("x", "1")]),  # removed before scheduling
        ("<lora:>", "<lora:>", []),  # nothing after the colon: not a tag
        ("<lo-ra:x>", "<lo-ra:x>", []),  # the kind is a word
        ("<lora:x:1", "<lora:x:1", []),
        ("no tags", "no tags", []),
    ],
)
def test_extract_extra_networks(prompt, text, networks):
    assert extract_extra_networks(prompt) == (text, networks)


@pytest.mark.parametrize(
    "tag, expected",
    [
        ("<lora:fur>", LoraMultipliers(te=1.0, unet=1.0)),
        ("<lora:fur:0.8>", LoraMultipliers(te=0.8, unet=0.8)),  # one number: both
        ("<lora:fur:0.8:0.5>", LoraMultipliers(te=0.8, unet=0.5)),  # text encoder first, then UNet
        ("<lora:fur:0.8:0.5:16>", LoraMultipliers(te=0.8, unet=0.5, dyn=16)),
        ("<lora:fur:te=0.3>", LoraMultipliers(te=0.3, unet=0.3)),
        ("<lora:fur:unet=0.2>", LoraMultipliers(te=1.0, unet=0.2)),
        ("<lora:fur:0.8:te=0.3>", LoraMultipliers(te=0.3, unet=0.3)),  # named wins over position
        ("<lora:fur:0.8:dyn=4>", LoraMultipliers(te=0.8, unet=0.8, dyn=4)),
        ("<lora:fur:unet=0.2:0.6>", LoraMultipliers(te=0.6, unet=0.2)),  # named ones don't count
        ("<lora:fur:-1>", LoraMultipliers(te=-1.0, unet=-1.0)),
    ],
)
def test_lora_multipliers(tag, expected):
    _, (network,) = extract_extra_networks(tag)
    assert lora_multipliers(network) == expected


@pytest.mark.parametrize(
    "tag, message",
    [
        ("<lora:fur:strong>", r"<lora:fur:strong>: the te value must be a number, but is 'strong'"),
        ("<lora:fur:1:x>", r"the unet value must be a number"),
        ("<lora:fur:1:1:0.5>", r"the dyn value must be a whole number, but is '0.5'"),
        ("<lora:fur:te=>", r"the te value must be a number, but is ''"),
    ],
)
def test_lora_multipliers_explain_bad_numbers(tag, message):
    _, (network,) = extract_extra_networks(tag)
    with pytest.raises(InvalidArgument, match=message):
        lora_multipliers(network)


def test_positional_and_named_follow_a1111():
    network = ExtraNetwork("lora", "fur", ["0.8", "te=0.5", "a=b=c"])
    assert network.positional == ["fur", "0.8", "a=b=c"]  # two "=" make it positional
    assert network.named == {"te": "0.5"}


@pytest.mark.parametrize("tag", ["<lora:fur>", "<lora:fur:0.8:unet=0.2>", "<hypernet:a b:1>"])
def test_tag_round_trips(tag):
    _, (network,) = extract_extra_networks(tag)
    assert network.tag() == tag


@pytest.mark.parametrize("module", ["gouache.prompts.compose", "gouache.prompts"])
def test_docstring_examples(module):
    assert doctest.testmod(importlib.import_module(module)).failed == 0
