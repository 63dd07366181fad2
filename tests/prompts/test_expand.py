"""Reading an LLM's reply, filling the template, and expand_prompt over any object that can chat."""

import time

import pytest

from gouache.errors import InvalidArgument
from gouache.prompts.expand import (DEFAULT_TEMPLATE, MAX_IDEA_CHARS, ExpandedPrompt, expand_prompt, fill_template,
                                    parse_reply, read_template)
from gouache.prompts.llm import LLMReplyError

CASTLE = "a stone castle on a hill, dusk, oil painting"


@pytest.mark.parametrize("reply", [
    '{"prompt": "a stone castle on a hill, dusk, oil painting", "negative_prompt": "blurry, text"}',
    'Here you go:\n```json\n{"prompt": "a stone castle on a hill, dusk, oil painting",\n'
    ' "negative_prompt": "blurry, text"}\n```\nEnjoy!',
    '<think>The user wants {a castle}. Prompt: not this one</think>\n'
    '{"Prompt": "a stone castle on a hill, dusk, oil painting", "Negative_Prompt": "blurry, text"}',
    '{"note": 1} then {"prompt": "a stone castle on a hill, dusk, oil painting", "negative": "blurry, text"}',
    '{"result": {"prompt": "a stone castle on a hill, dusk, oil painting", "negative_prompt": "blurry, text"}}',
    '{"prompt": ["a stone castle on a hill", "dusk", "oil painting"], "negative_prompt": ["blurry", "text"]}',
    "Prompt: a stone castle on a hill, dusk, oil painting\nNegative prompt: blurry, text",
    "**Prompt:** a stone castle on a hill, dusk, oil painting\n\n**Negative prompt:** blurry, text\n",
    "Sure.\n\n### Prompt:\n\"a stone castle on a hill, dusk, oil painting\"\n\n### Negative prompt:\nblurry, text",
    "- Positive prompt: a stone castle on a hill,   dusk,\toil painting\n- Negative: `blurry, text`",
])
def test_replies_chat_models_send_give_the_prompt_and_the_negative(reply):
    assert parse_reply(reply) == (CASTLE, "blurry, text")


def test_a_reply_without_a_negative_prompt_gives_an_empty_one():
    assert parse_reply('{"prompt": "a castle at dawn"}') == ("a castle at dawn", "")
    assert parse_reply("Prompt: a castle at dawn") == ("a castle at dawn", "")


@pytest.mark.parametrize("reply", [
    "", "I cannot help with that.", '{"prompt": ""}', '{"caption": "a castle"}', '{"prompt": "a castle", ',
    "```json\n{\"prompt\": \"a castle\"\n```", "Negative prompt: blurry", "[1, 2, 3]",
])
def test_a_reply_without_a_prompt_is_one_line_that_shows_how_it_began(reply):
    with pytest.raises(LLMReplyError) as caught:
        parse_reply(reply)
    message = str(caught.value)
    assert "\n" not in message and "has no prompt" in message
    assert " ".join(reply.split())[:40] in message


@pytest.mark.parametrize("reply", [
    "{" * 200_000, '{"a": ' * 50_000, "[" * 100_000, "Prompt" * 50_000, ":" * 200_000,
    '{"prompt": "' + "x" * 200_000, ("{\"k\": 1} " * 30_000) + "no prompt",
])
def test_reading_a_hostile_reply_takes_linear_time(reply):
    started = time.perf_counter()
    with pytest.raises(LLMReplyError):
        parse_reply(reply)
    assert time.perf_counter() - started < 1.0


def test_the_template_gets_the_idea_and_keeps_its_other_braces():
    assert fill_template('Idea: {idea}. Answer {"prompt": ...}', "a castle") == 'Idea: a castle. Answer {"prompt": ...}'
    assert "a castle" in fill_template(DEFAULT_TEMPLATE, "a castle")
    with pytest.raises(InvalidArgument, match=r"no \{idea\} placeholder"):
        fill_template("Describe a castle", "a castle")


def test_a_template_file_is_read_and_checked(tmp_path):
    good = tmp_path / "mine.txt"
    good.write_text("Write a prompt about {idea}.\nPrompt: …", encoding="utf-8")
    assert read_template(good).startswith("Write a prompt about {idea}.")
    bad = tmp_path / "bad.txt"
    bad.write_text("Write a prompt.", encoding="utf-8")
    with pytest.raises(InvalidArgument, match=r"--template .*bad.txt: the template has no \{idea\}"):
        read_template(bad)
    with pytest.raises(InvalidArgument, match=r"--template .*missing.txt: cannot be read"):
        read_template(tmp_path / "missing.txt")


class Scripted:
    """Anything with ``chat(messages)`` is an LLM to expand_prompt."""

    def __init__(self, reply: str):
        self.reply, self.seen = reply, []

    def chat(self, messages):
        self.seen.append(messages)
        return self.reply


def test_expand_prompt_sends_the_filled_template_and_returns_the_three_texts():
    llm = Scripted('{"prompt": "a stone castle, dusk", "negative_prompt": "blurry"}')
    result = expand_prompt("  a castle ", llm, template="Make {idea} into a prompt")
    assert result == ExpandedPrompt("a stone castle, dusk", "blurry", "a castle")
    assert llm.seen == [[{"role": "user", "content": "Make a castle into a prompt"}]]


@pytest.mark.parametrize("idea, message", [
    ("", "`idea` is empty"), ("   ", "`idea` is empty"), ("x" * (MAX_IDEA_CHARS + 1), "over 2000"),
    (42, "`idea` must be text"),
])
def test_a_bad_idea_is_refused_before_the_llm_is_asked(idea, message):
    llm = Scripted("{}")
    with pytest.raises(InvalidArgument, match=message):
        expand_prompt(idea, llm)
    assert llm.seen == []
