"""Infotext text: exact A1111 output, A1111's parsing rules, round trips and typed values."""

import json
import random
import re
import time

import pytest

from gouache.errors import InvalidArgument
from gouache.metadata.infotext import (
    A1111_KEY_ORDER,
    ParsedInfotext,
    format_infotext,
    format_params,
    ordered,
    parse_infotext,
    parse_params,
    quote,
)

A1111_PARAMS = {
    "Steps": 20,
    "Sampler": "DPM++ 2M",
    "Schedule type": "Karras",
    "CFG scale": 7.0,
    "Seed": 1234,
    "Size": (512, 768),
    "Model hash": "6ce0161689",
    "Model": "v1-5-pruned-emaonly",
    "Clip skip": None,
    "Lora hashes": "fur: 0123456789ab",
    "Version": "v1.10.1",
}
A1111_TEXT = (
    "masterpiece, (a cat:1.2), [dog:fox:0.5], <lora:fur:0.8>\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.0, Seed: 1234, "
    'Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, '
    'Lora hashes: "fur: 0123456789ab", Version: v1.10.1'
)


def a1111_parse(text: str) -> dict[str, str]:
    """A1111 1.10's ``parse_generation_parameters`` steps 1-3, restated from the reference."""
    re_param = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
    res, prompt, negative, done = {}, "", "", False
    *lines, last = text.strip().split("\n")
    if len(re_param.findall(last)) < 3:
        lines.append(last)
        last = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done, line = True, line[16:].strip()
        if done:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    for k, v in re_param.findall(last):
        try:
            if v[0] == '"' and v[-1] == '"':
                try:
                    v = json.loads(v)
                except Exception:
                    pass
            m = re.match(r"^(\d+)x(\d+)$", v)
            if m:
                res[f"{k}-1"], res[f"{k}-2"] = m[1], m[2]
            else:
                res[k] = v
        except Exception:
            pass
    return {**res, "Prompt": prompt, "Negative prompt": negative}


def test_known_example_is_written_exactly_as_a1111_writes_it():
    prompt, negative = "masterpiece, (a cat:1.2), [dog:fox:0.5], <lora:fur:0.8>", "blurry, lowres"
    assert format_infotext(prompt, negative, A1111_PARAMS) == A1111_TEXT


def test_known_example_reads_back_with_typed_values():
    parsed = parse_infotext(A1111_TEXT)
    assert parsed.prompt == "masterpiece, (a cat:1.2), [dog:fox:0.5], <lora:fur:0.8>"
    assert parsed.negative_prompt == "blurry, lowres"
    assert parsed.params["Lora hashes"] == "fur: 0123456789ab"
    assert (parsed.steps, parsed.cfg_scale, parsed.seed, parsed.size) == (20, 7.0, 1234, (512, 768))
    assert (parsed.sampler, parsed.schedule_type) == ("DPM++ 2M", "Karras")
    assert (parsed.model, parsed.model_hash) == ("v1-5-pruned-emaonly", "6ce0161689")
    assert parsed.clip_skip is None and parsed.denoising_strength is None


def test_a1111_parser_reads_our_known_example():
    got = a1111_parse(A1111_TEXT)
    assert got["Prompt"] == "masterpiece, (a cat:1.2), [dog:fox:0.5], <lora:fur:0.8>"
    assert got["Negative prompt"] == "blurry, lowres"
    assert (got["Steps"], got["CFG scale"], got["Size-1"], got["Size-2"]) == ("20", "7.0", "512", "768")
    assert got["Lora hashes"] == "fur: 0123456789ab"


@pytest.mark.parametrize(
    "params, line",
    [
        ({"Steps": 20}, "Steps: 20"),
        ({"CFG scale": 7.0, "Tiling": True}, "CFG scale: 7.0, Tiling: True"),
        ({"Steps": 20, "VAE": None, "Seed": 3}, "Steps: 20, Seed: 3"),  # None left out
        ({"Tiling": "Tiling", "Steps": 5}, "Tiling, Steps: 5"),  # value == key: bare key
        ({"Size": (640, 480)}, "Size: 640x480"),
        ({"Hires prompt": "a, b"}, 'Hires prompt: "a, b"'),
        ({"Note": "x: y"}, 'Note: "x: y"'),
        ({"Note": "two\nlines"}, 'Note: "two\\nlines"'),
        ({"Note": 'say "hi"'}, 'Note: say "hi"'),  # A1111 leaves lone quotes raw
        ({"Note": 'say "hi", then'}, 'Note: "say \\"hi\\", then"'),
        ({"Note": "café, ünï"}, 'Note: "café, ünï"'),  # ensure_ascii=False
        ({"Note": ""}, 'Note: ""'),
        ({"Note": " padded "}, 'Note: " padded "'),
    ],
)
def test_params_line(params, line):
    assert format_params(params) == line


@pytest.mark.parametrize(
    "text, quoted",
    [("Euler a", "Euler a"), ("a,b", '"a,b"'), ("a:b", '"a:b"'), ('"x"', '"\\"x\\""'), ("", '""')],
)
def test_quote(text, quoted):
    assert quote(text) == quoted


def test_no_negative_prompt_means_no_negative_line():
    assert format_infotext("a cat", "", {"Steps": 20}) == "a cat\nSteps: 20"


def test_ordered_sorts_known_keys_and_puts_unknown_before_version():
    params = {"Version": "v1", "Ext b": 1, "Size": "8x8", "Ext a": 2, "Seed": 3, "Steps": 4}
    assert list(ordered(params)) == ["Steps", "Seed", "Size", "Ext b", "Ext a", "Version"]
    assert A1111_KEY_ORDER[:6] == ("Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed")
    assert A1111_KEY_ORDER[-2:] == ("Version", "User")


ROUND_TRIP_PROMPTS = [
    ("a cat", ""),
    ("a cat, sitting: on a mat", "dog, blurry: 1"),
    ('a "quoted" word, and more', 'no "quotes"'),
    ("line one\nline two\n\nline four", "neg one\nneg two"),
    ("日本語のプロンプト, café, emoji 🎨", "ぼやけた"),
    ("(word:1.3), ((strong)), [weak], \\(literal\\)", "(bad:1.4)"),
    ("[a:b:0.5], [from::10], [to:5], [cat|dog]", "[x:y:0.25]"),
    ("<lora:name:0.8> <hypernet:h:1> portrait", "<lora:neg:-1>"),
    ("a AND b:0.5 AND c", ""),
    ("", "only a negative, prompt"),
]
ROUND_TRIP_PARAMS = {
    "Steps": "20",
    "Sampler": "Euler a",
    "CFG scale": "7.5",
    "Seed": "42",
    "Size": "512x512",
    "Lora hashes": "name: 0123456789ab, other: ba9876543210",
    "Hires prompt": 'line\nwith "quotes", commas: and colons',
    "Tiling": "Tiling",
    "Note": "",
    "Unicode": "ünï: cöde",
}


@pytest.mark.parametrize("prompt, negative", ROUND_TRIP_PROMPTS)
def test_round_trip(prompt, negative):
    parsed = parse_infotext(format_infotext(prompt, negative, ROUND_TRIP_PARAMS))
    assert parsed == ParsedInfotext(prompt, negative, ROUND_TRIP_PARAMS)


@pytest.mark.parametrize("prompt, negative", ROUND_TRIP_PROMPTS)
def test_a1111_parser_reads_our_output(prompt, negative):
    params = {k: v for k, v in ROUND_TRIP_PARAMS.items() if k not in ("Size", "Tiling")}
    got = a1111_parse(format_infotext(prompt, negative, params))
    assert got == {**params, "Prompt": prompt, "Negative prompt": negative}


@pytest.mark.parametrize(
    "text, prompt, negative, params",
    [
        # Fewer than 3 pairs: the last line is prompt, as in A1111.
        ("a cat\nSteps: 20, Seed: 1", "a cat\nSteps: 20, Seed: 1", "", {}),
        ("Aa: 1, Bb: 2, Cc: 3", "", "", {"Aa": "1", "Bb": "2", "Cc": "3"}),
        ("a: 1, b: 2, c: 3", "a: 1, b: 2, c: 3", "", {}),  # keys need 2+ characters
        ("  a cat  \n  Negative prompt:   dog  \nAa: 1, Bb: 2, Cc: 3", "a cat", "dog", {"Aa": "1", "Bb": "2", "Cc": "3"}),
        ("p\nNegative prompt: n1\nNegative prompt: n2", "p", "n1\nn2", {}),  # every such line loses the prefix
        ('p\nAa: "x, y", Bb: "bad \\q", Cc: 3', "p", "", {"Aa": "x, y", "Bb": '"bad \\q"', "Cc": "3"}),
        ("p\nAa: 1, Bb: , Cc: 3, Dd: 4", "p", "", {"Aa": "1", "Cc": "3", "Dd": "4"}),  # empty dropped
        ("", "", "", {}),
    ],
)
def test_parse_follows_a1111(text, prompt, negative, params):
    assert parse_infotext(text) == ParsedInfotext(prompt, negative, params)


@pytest.mark.parametrize(
    "key, raw, message",
    [
        ("Steps", "twenty", "'Steps' must be a whole number, got 'twenty'"),
        ("Seed", "1.5", "'Seed' must be a whole number, got '1.5'"),
        ("CFG scale", "nan", "'CFG scale' must be a number like 7.0, got 'nan'"),
        ("Denoising strength", "high", "'Denoising strength' must be a number like 7.0, got 'high'"),
        ("Size", "512 by 512", "'Size' must be WIDTHxHEIGHT like 512x768, got '512 by 512'"),
        ("Clip skip", "", "'Clip skip' must be a whole number, got ''"),
    ],
)
def test_malformed_numbers_name_key_and_value(key, raw, message):
    parsed = ParsedInfotext("p", "", {key: raw})
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        parsed.value(key)


def test_typed_params_converts_known_keys_only():
    parsed = parse_infotext("p\nSteps: 20, Denoising strength: 0.75, Clip skip: 2, Ext: 5")
    assert parsed.typed_params() == {"Steps": 20, "Denoising strength": 0.75, "Clip skip": 2, "Ext": "5"}


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: format_infotext(None, "", {}), "`prompt` must be a str, got NoneType"),
        (lambda: format_infotext("p", 3, {}), "`negative_prompt` must be a str, got int"),
        (lambda: format_infotext("p", "", [("Steps", 2)]), "`params` must be a dict"),
        (lambda: format_infotext("p", "", {"Bad: key": 1}), "infotext key 'Bad: key' cannot be read back"),
        (lambda: format_infotext("p", "", {"S": 1}), "infotext key 'S' cannot be read back"),
        (lambda: parse_infotext(b"bytes"), "`text` must be a str, got bytes"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        call()


# --- Hostile text: linear time, gouache's errors only ------------------------------------------
# A1111's regex restarts at every character of a run of words or spaces without a colon, which
# `re` makes quadratic: a 100 kB parameters line took 39 s. Times are CPU seconds of this process
# (the test machines are shared; wall time would measure the neighbours).

MB = 1_000_000


def fill(unit: str, size: int = MB) -> str:
    return unit * (size // len(unit))


HOSTILE_TEXTS = {
    "words without a colon": "a" * MB,
    "words and spaces": fill("ab "),
    "spaces, then a word": " " * MB + "x",
    "a key of a million characters": "k" * MB + ": 1, Aa: 2, Bb: 3",
    "keys without values": fill("Tiling, "),
    "one-letter keys": fill("a: 1, "),
    "empty values": fill("Key: , "),
    "colons": ":" * MB,
    "commas": "," * MB,
    "newlines": "\n" * MB,
    "lines of words": fill("a b c\n"),
    "quotes": '"' * MB,
    "a quote never closed": 'Aa: 1, Bb: 2, Cc: "' + fill("\\x, "),
    "quoted values": fill('Key: "a, b", '),
    "backslashes in quotes": 'Cc: "' + "\\" * MB + '"',
    "digits": "9" * MB,
    "a value of a million digits": "Steps: " + "9" * MB + ", Seed: 1, Size: 1x1",
    "prompt with emphasis": "(" * MB + "\nSteps: 1, Seed: 2, Size: 3x4",
    "a real infotext, repeated": fill("a cat, (fur:1.2)\nNegative prompt: dog\n") + "Steps: 1, Seed: 1, Size: 8x8",
}


@pytest.mark.parametrize("name", list(HOSTILE_TEXTS))
def test_hostile_text_is_read_in_linear_time(name):
    text = HOSTILE_TEXTS[name]
    for attempt in range(2):  # the faster of two runs counts: a busy machine slows any single one
        start = time.process_time()
        parsed = parse_infotext(text)
        parse_params(text.split("\n")[-1])
        took = time.process_time() - start
        if took < 1.0:
            break
    assert took < 1.0, f"{took:.2f} s of CPU for {len(text):,} characters"
    assert isinstance(parsed, ParsedInfotext)


@pytest.mark.parametrize(
    "key, raw, message",
    [
        ("Steps", "9" * 5000, "a number of 5000 digits; at most 30 are read"),
        ("Seed", "-" + "1" * 31, "a number of 32 digits; at most 30 are read"),
        ("Size", "512x" + "9" * 5000, "a number of 5000 digits; at most 30 are read"),
        ("CFG scale", "9" * 10_000, "a number of 10000 characters; at most 64 are read"),
        ("CFG scale", "1e999", "must be a finite number like 7.0, got '1e999'"),
        ("Denoising strength", "inf", "must be a number like 7.0, got 'inf'"),
        ("Hires upscale", "0." + "0" * 100 + "1", "at most 64 are read"),
    ],
)
def test_absurd_numbers_are_invalid_arguments(key, raw, message):
    parsed = ParsedInfotext("p", "", {key: raw})
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        parsed.value(key)


@pytest.mark.parametrize(
    "key, raw, value",
    [
        ("Seed", "1" * 30, int("1" * 30)),  # the longest whole number read
        ("Seed", " -42 ", -42),
        ("CFG scale", "1e300", 1e300),
        ("CFG scale", "0.30000000000000004", 0.30000000000000004),
        ("Size", " 640x480 ", (640, 480)),
    ],
)
def test_long_but_sane_numbers_read(key, raw, value):
    assert ParsedInfotext("p", "", {key: raw}).value(key) == value


def test_shown_values_are_cut_short():
    with pytest.raises(InvalidArgument) as error:
        ParsedInfotext("p", "", {"Steps": "x" * MB}).value("Steps")
    assert len(str(error.value)) < 300 and "(1000000 characters)" in str(error.value)


INFOTEXT_PIECES = ["Steps", "Seed", "Aa", "b", " ", " ", ":", ":", ",", ",", '"', '"', "\\", "\n", "-", "/", "_",
                   "é", "\t", "\r", "x y", "9", ".", ": ", ", ", ': "', '\\"', "Negative prompt:", "[a:b:0.5]"]
A1111_ENTRY = re.compile(r'\s*(\w[\w \-/]+)(?::\s*("(?:\\.|[^\\"])+"|[^,]*))?(?:,|$)')


def test_fuzz_matches_a1111_regexes():
    rng = random.Random(99)
    for _ in range(4000):
        text = "".join(rng.choice(INFOTEXT_PIECES) for _ in range(rng.randint(0, 60)))
        # parse_params is A1111's regex with the value optional (a bare key reads as key: key)
        params = parse_params(text)
        entries = [(m.group(1), m.group(2)) for m in A1111_ENTRY.finditer(text)]
        expected = {}
        for key, value in entries:
            if value is None:
                expected[key] = key
            elif value:
                expected[key] = json_unquote(value)
        assert params == expected and list(params) == list(expected), text
        # parse_infotext splits prompts and the parameters line as A1111 does
        got, a1111 = parse_infotext(text), a1111_parse(text)
        assert (got.prompt, got.negative_prompt) == (a1111["Prompt"], a1111["Negative prompt"]), text
        for key, value in got.params.items():  # but for what A1111 adds or splits afterwards
            if value != key and not re.fullmatch(r"\d+x\d+", value) and key not in ("Prompt", "Negative prompt"):
                assert a1111.get(key) == value, (text, key)


def json_unquote(value: str) -> str:
    if value[0] == '"' and value[-1] == '"':
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            pass
    return value
