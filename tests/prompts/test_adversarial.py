"""The prompt grammar on hostile input: linear time on a megabyte, gouache's errors only, same results.

The server hands prompts from the network to these functions, so every one of them must answer a
1 MB prompt well within a second and fail, if at all, with :class:`~gouache.errors.GouacheError`.
Times are CPU seconds of this process (``time.process_time``): the test machines are shared, and
wall time would measure the neighbours. The fuzz at the end checks the results against A1111's
algorithms restated plainly (slow, but fine for short prompts).
"""

import functools
import math
import random
import re
import time

import pytest

from gouache.errors import GouacheError, InvalidArgument
from gouache.prompts import (
    attention,
    extract_extra_networks,
    lora_multipliers,
    schedules,
    split_and,
    tokenize_chunks,
)
from gouache.prompts.attention import MAX_DEPTH
from gouache.prompts.plan import ScheduledPrompt

MB = 1_000_000
BUDGET = 1.0  # CPU seconds for a megabyte


def fill(unit: str, size: int = MB) -> str:
    """``unit`` repeated to about ``size`` characters."""
    return unit * (size // len(unit))


def nest(opening: str, middle: str, closing: str, size: int = MB) -> str:
    """``opening`` n times, ``middle``, ``closing`` n times: about ``size`` characters."""
    n = size // (len(opening) + len(closing))
    return opening * n + middle + closing * n


# Each builds a 1 MB prompt; the names say what made an older version slow or crash.
PROMPTS = {
    "spaces": lambda: " " * MB,
    "spaces then a word": lambda: " " * MB + "x",
    "newlines and tabs": lambda: fill(" \n\t"),
    "one long word": lambda: "a" * MB,
    "words": lambda: fill("ab "),
    "digits": lambda: "7" * MB,
    "(": lambda: "(" * MB,
    "[": lambda: "[" * MB,
    ")": lambda: ")" * MB,
    "]": lambda: "]" * MB,
    ":": lambda: ":" * MB,
    "|": lambda: "|" * MB,
    ")(": lambda: fill(")("),
    "(:": lambda: fill("(:"),
    "backslashes": lambda: "\\" * MB,
    "escaped brackets": lambda: fill("\\(") + "[a:b:1]",
    "escaped letters": lambda: fill("\\a"),
    "AND": lambda: fill("AND "),
    "BREAK": lambda: fill("BREAK "),
    "[a:": lambda: fill("[a:"),
    "[a|": lambda: fill("[a|"),
    "(a:": lambda: fill("(a:"),
    "one alternation, 500k options": lambda: "[" + fill("a|") + "]",
    "nested edits": lambda: nest("[a:", "b", ":1]"),
    "nested edits, fractions": lambda: nest("[a:", "b", ":0.5]"),
    "nested alternations": lambda: nest("[a|", "b", "]"),
    "nested emphasis inside an edit": lambda: "[" + nest("(", "a", ")") + ":1]",
    "many edits": lambda: fill("[a:b:3]"),
    "many fractions": lambda: "".join(f"[a:b:0.{i % 97 + 1}]" for i in range(MB // 10)),
    "many alternation lengths": lambda: "".join("[" + "|".join("a" * (i % 50 + 2)) + "]" for i in range(MB // 60)),
    "emphasis at the depth cap": lambda: "(" * (MAX_DEPTH - 1) + fill("(a)b"),
    "closed nests at the depth cap": lambda: fill("(a" * (MAX_DEPTH - 1) + "b" + ")" * (MAX_DEPTH - 1)),
    "blocks at the depth cap": lambda: fill("(" * (MAX_DEPTH - 1) + "(a)b" * 40 + ")" * (MAX_DEPTH - 1)),
    "huge weights at the depth cap": lambda: "(x:100000000)" + PROMPTS["blocks at the depth cap"](),
    "weight of a million digits": lambda: "(x:" + "9" * MB + ")",
    "exponent of a million digits": lambda: "(x:1e" + "9" * MB + ")",
    "edit at step 10^1000000": lambda: "[a:b:" + "9" * MB + "]",
    "edit at 0.999...": lambda: "[a:b:0." + "9" * MB + "]",
    "AND weight of a million digits": lambda: "a AND b:" + "9" * MB,
    "tags never closed": lambda: fill("<lora:"),
    "tag with a long name": lambda: "<lora:" + "a" * MB + ":0.5>",
    "mixed prompt": lambda: fill("(a:1.2) [b:c:0.5] [d|e] AND f, BREAK g \\( <lora:x:0.5> "),
}


@functools.lru_cache(maxsize=None)
def prompt(name: str) -> str:
    return PROMPTS[name]()


def within_budget(call, text: str):
    """``call(text)``, or None where it raised a GouacheError, checking it took under BUDGET.

    A second try is allowed, and the faster counts: a busy machine can slow any single run.
    """
    took = []
    for _ in range(2):
        start = time.process_time()
        try:
            result = call(text)
        except GouacheError:
            result = None
        took.append(time.process_time() - start)
        if took[-1] < BUDGET:
            return result
    pytest.fail(f"took {min(took):.2f} s of CPU on {len(text):,} characters; the budget is {BUDGET} s")


@pytest.mark.parametrize("name", list(PROMPTS))
def test_attention_is_linear(name):
    within_budget(attention, prompt(name))


@pytest.mark.parametrize("name", list(PROMPTS))
def test_schedules_are_linear(name):
    result = within_budget(lambda text: schedules(text, 20), prompt(name))
    assert result is None or 1 <= len(result) <= 20


@pytest.mark.parametrize("name", list(PROMPTS))
def test_and_split_and_tags_are_linear(name):
    def split(text):
        text, networks = extract_extra_networks(text)
        for network in networks[:1000]:
            lora_multipliers(network)
        return split_and(text)

    within_budget(split, prompt(name))


@pytest.mark.parametrize("name", ["AND", "mixed prompt", "many edits", "one long word"])
def test_a_whole_prompt_plan_is_linear(name):
    within_budget(lambda text: ScheduledPrompt.parse(text, steps=20), prompt(name))


@pytest.mark.parametrize(
    "text",
    [
        "".join(f"[a:b:0.{i % 97 + 1}]" for i in range(10_000)),  # 97 distinct switch steps
        "".join("[" + "|".join("a" * (i % 50 + 2)) + "]" for i in range(2_000)),  # 49 cycle lengths
        nest("[a:", "b", ":0.5]", 100_000),
    ],
    ids=["fractions", "cycles", "nested"],
)
def test_schedule_work_is_length_times_steps_at_most(text):
    # 150 steps can mean 150 different texts of the whole prompt, but never more.
    result = within_budget(lambda text: schedules(text, 150), text)
    assert len(result) <= 150


class WordTokenizer:
    """Enough of a CLIPTokenizer for tokenize_chunks: one id per word, commas their own word."""

    bos_token_id, eos_token_id, unk_token_id = 1, 2, 0

    def __call__(self, texts, **kwargs):
        return {"input_ids": [[3 + len(word) for word in text.replace(",", " , ").split()] for text in texts]}

    def convert_tokens_to_ids(self, token):
        return 4 if token == ",</w>" else self.unk_token_id  # 3 + len(",")


@pytest.mark.parametrize(
    "text",
    [fill("cat, "), fill("(cat:1.1) dog "), fill("a BREAK ", MB // 10)],  # a BREAK makes 77 ids of 8 characters
    ids=["commas", "emphasis", "breaks"],
)
def test_chunking_is_linear(text):
    chunks = within_budget(lambda text: tokenize_chunks(WordTokenizer(), text), text)
    assert chunks and all(len(chunk.ids) == 77 for chunk in chunks)


def test_deep_nesting_is_read_without_recursion():
    depth = 100_000
    assert schedules("[a:" * depth + "b" + ":1]" * depth, 2) == [(1, "a"), (2, "b")]
    assert schedules("[a|" * depth + "b" + "]" * depth, 2) == [(1, "a"), (2, "b")]
    outside, inside = "(" * depth, ")" * depth
    assert schedules(outside + "[x:1]" + inside, 2) == [(1, outside + inside), (2, outside + "x" + inside)]


@pytest.mark.parametrize("depth", [MAX_DEPTH, MAX_DEPTH // 2])
def test_attention_reads_text_inside_up_to_the_depth_cap(depth):
    assert attention("(" * depth + "a") == [("a", reference_attention("(" * depth + "a")[0][0][1])]
    assert attention("[" * depth + "a" + "]" * depth)[0][0] == "a"


@pytest.mark.parametrize(
    "text", ["(" * (MAX_DEPTH + 1) + "a", "(" * 10 + "[" * (MAX_DEPTH - 9) + "a" + "]" * 30, "(" * 100_000 + "a"]
)
def test_attention_refuses_text_deeper_than_the_cap(text):
    with pytest.raises(InvalidArgument, match=f"at most {MAX_DEPTH} are read"):
        attention(text)


def test_brackets_without_text_are_no_depth():
    assert attention("(" * 100_000) == [("", 1.0)]
    assert attention("a" + "[" * 100_000) == [("a", 1.0)]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: attention("(x:" + "9" * 400 + ")"), "comes to inf"),  # float() gives inf
        (lambda: attention("((x:" + "1" + "0" * 300 + "):" + "1" + "0" * 300 + ")"), "comes to inf"),  # overflow
        (lambda: attention("(((x:0):" + "9" * 400 + "))"), "comes to nan"),  # 0 * inf
        (lambda: split_and("a AND b:" + "9" * 400), "has the weight inf"),
        (lambda: lora_multipliers(extract_extra_networks("<lora:x:inf>")[1][0]), "must be a number"),
        (lambda: lora_multipliers(extract_extra_networks("<lora:x:nan:0.5>")[1][0]), "must be a number"),
        (lambda: lora_multipliers(extract_extra_networks(f"<lora:x:1:1:{'9' * 5000}>")[1][0]), "whole number"),
    ],
)
def test_numbers_that_are_no_finite_weight_are_refused(call, message):
    with pytest.raises(InvalidArgument, match=message):
        call()


def test_an_infinite_weight_with_nothing_to_weigh_is_fine():
    assert attention("(:" + "9" * 400 + ")") == [("", 1.0)]


@pytest.mark.parametrize("number", ["9" * 100_000, "1e" + "9" * 100_000, "1" + "0" * 400 + ".5"])
def test_an_edit_after_the_last_step_never_happens(number):
    assert schedules(f"[a:b:{number}]", 20) == [(20, "a")]


# --- A seeded fuzz against A1111's algorithms, restated -----------------------------------------

_RE_ATTENTION = re.compile(
    r"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:"
)
_RE_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def reference_attention(text: str) -> tuple[list[tuple[str, float]], int]:
    """A1111's ``parse_prompt_attention``, one token at a time, and the deepest text it weighed.

    The only change: a weight that is no float ("1.2.3") is a stray ``:`` (A1111 crashes).
    """
    res, round_, square, pos, deepest = [], [], [], 0, 0

    def multiply(start, factor):
        for fragment in res[start:]:
            fragment[1] *= factor

    def add(piece, weight):
        nonlocal deepest
        res.append([piece, weight])
        deepest = max(deepest, len(round_) + len(square))

    while pos < len(text):
        token = _RE_ATTENTION.match(text, pos)
        value, weight, pos = token.group(), token.group(1), token.end()
        if weight is not None:
            try:
                float(weight)
            except ValueError:
                value, weight, pos = ":", None, token.start() + 1
        if value.startswith("\\"):
            add(value[1:], 1.0)
        elif value == "(":
            round_.append(len(res))
        elif value == "[":
            square.append(len(res))
        elif weight is not None and round_:
            multiply(round_.pop(), float(weight))
        elif value == ")" and round_:
            multiply(round_.pop(), 1.1)
        elif value == "]" and square:
            multiply(square.pop(), 1 / 1.1)
        else:
            for i, part in enumerate(_RE_BREAK.split(value)):
                if i:
                    add("BREAK", -1.0)
                add(part, 1.0)
    for start in round_:
        multiply(start, 1.1)
    for start in square:
        multiply(start, 1 / 1.1)
    if not res:
        return [("", 1.0)], 0
    merged = [res[0]]
    for fragment in res[1:]:
        if merged[-1][1] == fragment[1]:
            merged[-1][0] += fragment[0]
        else:
            merged.append(fragment)
    return [(t, w) for t, w in merged], deepest


_NUMBER = r"[+-]?(?:[0-9]+[eE][+-]?[0-9]+|(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+)"
_RE_PLAIN = re.compile(r"(?:[^\\\[\]():|]|\\.)+")
_RE_TAIL = re.compile(rf"\s*({_NUMBER})\s*\]")


def reference_schedules(prompt: str, steps: int) -> list[tuple[int, str]]:
    """A1111's ``get_learned_conditioning_prompt_schedules``: its grammar by plain recursive
    descent (every ``[``/``(`` a group if its content parses, else text at the top level), then
    the text of every step where something changes."""
    groups: dict[int, tuple | None] = {}

    def char(pos):
        return prompt[pos : pos + 1]

    def piece(pos):  # a group or a run of text at pos, and where it ends; None if neither
        if prompt[pos] in "[(":
            return group(pos)
        run = _RE_PLAIN.match(prompt, pos)
        return run and (run.group(), run.end())

    def inside(pos):
        parts = []
        while pos < len(prompt) and prompt[pos] not in "])|:":
            found = piece(pos)
            if found is None:
                return None
            parts.append(found[0])
            pos = found[1]
        return ("seq", parts), pos

    def group(pos):
        if pos not in groups:
            groups[pos] = (round_ if prompt[pos] == "(" else square)(pos)
        return groups[pos]

    def round_(pos):
        first = inside(pos + 1)
        if first and char(first[1]) == ")":
            return ("seq", ["(", first[0], ")"]), first[1] + 1
        if not first or char(first[1]) != ":":
            return None
        second = inside(first[1] + 1)
        if not second or char(second[1]) != ")":
            return None
        return ("seq", ["(", first[0], ":", second[0], ")"]), second[1] + 1

    def square(pos):
        first = inside(pos + 1)
        if not first:
            return None
        body, pos = first
        if char(pos) == "]":
            return ("seq", ["[", body, "]"]), pos + 1
        if char(pos) == "|":
            options = [body]
            while char(pos) == "|":
                found = inside(pos + 1)
                if not found:
                    return None
                options.append(found[0])
                pos = found[1]
            return (("alt", options), pos + 1) if char(pos) == "]" else None
        if char(pos) != ":":
            return None
        tail = _RE_TAIL.match(prompt, pos + 1)
        if tail:
            return ("sched", ("seq", []), body, tail.group(1)), tail.end()
        second = inside(pos + 1)
        if not second or char(second[1]) != ":":
            return None
        tail = _RE_TAIL.match(prompt, second[1] + 1)
        return (("sched", body, second[0], tail.group(1)), tail.end()) if tail else None

    parts, pos = [], 0
    while pos < len(prompt):
        found = piece(pos) if prompt[pos] not in "])|:" else None
        if found:
            parts.append(found[0])
            pos = found[1]
        elif prompt[pos] == "|" or prompt[pos] == "\\":  # a backslash that escapes nothing
            return [(steps, prompt)]
        else:  # a stray bracket or colon
            parts.append(prompt[pos])
            pos += 1
    tree = ("seq", parts)

    def when(number):
        value = float(number) * (steps if "." in number else 1)
        return (steps if value > 0 else 0) if math.isinf(value) else min(steps, int(value))

    def walk(node, step):
        if isinstance(node, str):
            return node
        if node[0] == "seq":
            return "".join(walk(part, step) for part in node[1])
        if node[0] == "sched":
            return walk(node[1] if step <= when(node[3]) else node[2], step)
        return walk(node[1][(step - 1) % len(node[1])], step)

    def nodes(node):
        if isinstance(node, str):
            return
        if node[0] != "seq":
            yield node
        for child in node[1] if node[0] != "sched" else node[1:3]:
            yield from nodes(child)

    boundaries = {steps}
    for node in nodes(tree):
        if node[0] == "alt":
            boundaries.update(range(1, steps + 1))
        elif when(node[3]) >= 1:
            boundaries.add(when(node[3]))
    return [(step, walk(tree, step)) for step in sorted(boundaries)]


_RE_AND_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")
_RE_TAG = re.compile(r"<(\w+):([^>]+)>")
GRAMMAR = ["(", ")", "[", "]", ":", ":", "|", "\\", ",", " ", " ", "\n", "\t", "AND", " AND ", "BREAK",
           " BREAK ", ".", "0", "1", "2", "5", "9", "a", "b", "c", "x", "y", "<lora:a:0.5>", "<", ">"]
WORDS = ["a", "b", "cat", " ", " ", ",", "1", ".", " AND ", " BREAK ", "\\(", "\\]", "\\\\", "\\a", "<lora>"]


def random_prompt(rng: random.Random, depth: int = 0) -> str:
    """Mostly well-formed A1111 syntax, nested, with a stray bracket, colon or bar here and there."""
    roll = rng.random()
    if depth > 5 or roll < 0.35:
        leaves = GRAMMAR if roll < 0.05 else WORDS  # a stray "|" or lone "\" spoils the whole prompt
        return "".join(rng.choice(leaves) for _ in range(rng.randint(0, 4)))
    inner = lambda: random_prompt(rng, depth + 1)  # noqa: E731
    number = rng.choice(["0.5", "3", " 2 ", "1.", ".25", "-1", "1e1", "7", "0.9", "x"])
    close = lambda good: good if rng.random() < 0.9 else rng.choice(["]", ")", ""])  # noqa: E731
    return rng.choice([
        lambda: f"[{inner()}:{inner()}:{number}{close(']')}",
        lambda: f"[{inner()}:{number}{close(']')}",
        lambda: "[" + "|".join(inner() for _ in range(rng.randint(1, 4))) + close("]"),
        lambda: f"({inner()}{close(rng.choice([')', ':1.3)', ':0)']))}",
        lambda: inner() + inner() + inner(),
    ])()


def test_fuzz_raises_only_gouache_errors_and_matches_a1111():
    rng = random.Random(1234)
    for i in range(3000):
        if i % 2:
            text = "".join(rng.choice(GRAMMAR) for _ in range(rng.randint(0, 200)))
        else:
            text = random_prompt(rng)
        expected, deepest = reference_attention(text)
        try:
            assert attention(text) == expected, text
        except InvalidArgument:  # only past the depth cap, or for a weight that is no number
            assert deepest > MAX_DEPTH or not all(math.isfinite(w) for _, w in expected), text
        for steps in (1, 4, 10):
            assert schedules(text, steps) == reference_schedules(text, steps), (text, steps)
        expected_parts = []
        for part in re.split(r"\bAND\b", text):
            part_text, weight = _RE_AND_WEIGHT.search(part).groups()
            expected_parts.append((part_text, float(weight) if weight is not None else 1.0))
        assert split_and(text) == expected_parts, text
        stripped, networks = extract_extra_networks(text)
        assert stripped == _RE_TAG.sub("", text), text
        assert [n.tag() for n in networks] == [f"<{m[1]}:{m[2]}>" for m in _RE_TAG.finditer(text)], text
