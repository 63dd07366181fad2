"""The LLMs that write prompts: an OpenAI-compatible endpoint (a canned stdlib server for the exact
requests and every failure; a real ``transformers serve`` for the protocol) and local transformers
folders with tiny weights (random, and set by hand to give a known answer)."""

import importlib.util
import json
from pathlib import Path

import pytest

from gouache.errors import InvalidArgument, ModelLoadError, UnknownName
from gouache.prompts.expand import ExpandedPrompt, expand_prompt
from gouache.prompts.llm import (ChatEndpoint, LLMReplyError, LLMSettings, LLMUnavailable, LocalLM, endpoint_urls,
                                 find_llm, open_llm)

_spec = importlib.util.spec_from_file_location("llm_fixtures_prompts", Path(__file__).parents[1] / "llm_fixtures.py")
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)

MESSAGES = [{"role": "user", "content": "a castle"}]


@pytest.fixture(scope="module")
def random_lm(tmp_path_factory):
    return fx.write_random_lm(tmp_path_factory.mktemp("llm") / "random-lm")


# -- an endpoint, against a canned server ----------------------------------------------------------


def test_the_endpoint_gets_one_bounded_chat_request_with_the_key(canned, monkeypatch):
    monkeypatch.setenv("GOUACHE_LLM_API_KEY", "sk-test")
    result = expand_prompt("a castle", canned.url, model="qwen2.5", max_tokens=123, template="Draw {idea}")
    assert (result.prompt, result.negative_prompt) == fx.EXPECTED
    ((method, path, headers, body),) = canned.requests
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert headers["Authorization"] == "Bearer sk-test"
    assert body == {"model": "qwen2.5", "messages": [{"role": "user", "content": "Draw a castle"}], "max_tokens": 123,
                    "temperature": 0, "stream": False}


def test_without_a_model_name_the_first_the_server_lists_is_used(canned, monkeypatch):
    monkeypatch.delenv("GOUACHE_LLM_MODEL", raising=False)
    canned.models = ["llama-3.2-1b", "other"]
    ChatEndpoint(canned.url + "/v1/").chat(MESSAGES)
    assert [(m, p) for m, p, _, _ in canned.requests] == [("GET", "/v1/models"), ("POST", "/v1/chat/completions")]
    assert canned.posts()[0][3]["model"] == "llama-3.2-1b"


@pytest.mark.parametrize("url, chat", [
    ("http://h:8080", "http://h:8080/v1/chat/completions"),
    ("http://h:8080/", "http://h:8080/v1/chat/completions"),
    ("http://h:8080/v1", "http://h:8080/v1/chat/completions"),
    ("https://h/api/v1/chat/completions", "https://h/api/v1/chat/completions"),
    ("http://h:11434/v1/", "http://h:11434/v1/chat/completions"),
])
def test_base_urls_v1_urls_and_full_urls_all_reach_chat_completions(url, chat):
    assert endpoint_urls(url)[0] == chat


@pytest.mark.parametrize("behave, message", [
    (("status", 500, {"error": {"message": "model crashed", "type": "server_error"}}),
     "answered HTTP 500 Internal Server Error: 'model crashed'"),
    (("status", 404, {"detail": "Not Found"}), "answered HTTP 404 Not Found: 'Not Found'"),
    (("raw", b"<html>not json</html>"), "did not answer with JSON: '<html>not json</html>'"),
    (("raw", b'{"choices": []}'), "did not answer in OpenAI's chat format"),
    (("reply", "I'd love to help! What kind of castle?"), "the LLM's reply has no prompt"),
])
def test_every_bad_answer_is_one_line_that_says_what_came(canned, behave, message):
    canned.behave = behave
    with pytest.raises((LLMUnavailable, LLMReplyError)) as caught:
        expand_prompt("a castle", canned.url, model="m")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_slow_server_is_given_up_on_at_the_timeout(canned):
    import time

    canned.behave = ("sleep", 10)
    started = time.monotonic()
    with pytest.raises(LLMUnavailable, match=r"did not answer within 0.5 s \(--llm-timeout"):
        expand_prompt("a castle", canned.url, model="m", timeout=0.5)
    assert time.monotonic() - started < 3


def test_a_refused_connection_says_so():
    url = f"http://127.0.0.1:{fx.free_port()}"  # nothing listens there
    with pytest.raises(LLMUnavailable, match=rf"cannot reach the LLM at {url}: connection refused"):
        expand_prompt("a castle", url, model="m")


# -- naming an LLM ---------------------------------------------------------------------------------


def test_the_llm_comes_from_gouache_llm_when_none_is_named(canned, monkeypatch):
    monkeypatch.setenv("GOUACHE_LLM", canned.url)
    assert expand_prompt("a castle", model="m").prompt == fx.EXPECTED[0]
    monkeypatch.delenv("GOUACHE_LLM")
    with pytest.raises(InvalidArgument, match=r"no LLM to write the prompt: pass --llm URL\|PATH .* or set \$GOUACHE_LLM"):
        expand_prompt("a castle")


def test_a_name_is_a_folder_under_gouache_home_llm(gouache_home, reply_lm):
    import shutil

    shutil.copytree(reply_lm, gouache_home / "llm" / "tiny-writer", dirs_exist_ok=True)
    assert find_llm("tiny-writer") == gouache_home / "llm" / "tiny-writer"
    with pytest.raises(UnknownName, match=r"unknown LLM 'tiny-writr' \(did you mean 'tiny-writer'\?\)"):
        find_llm("tiny-writr")


@pytest.mark.parametrize("text, error, message", [
    ("ftp://example.com/model", InvalidArgument, "the LLM URL must be http://HOST"),
    ("http://", InvalidArgument, "the LLM URL must be http://HOST"),
    ("/no/such/folder", ModelLoadError, "no such LLM file or folder"),
])
def test_a_bad_url_or_path_is_one_line(text, error, message):
    with pytest.raises(error, match=message):
        find_llm(text)


def test_a_folder_that_is_not_a_causal_lm_is_refused_before_loading(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(ModelLoadError, match=r"not a causal language model \(its config.json says model_type 'clip'\)"):
        expand_prompt("a castle", str(folder))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="not a model folder"):
        expand_prompt("a castle", str(empty))


@pytest.mark.parametrize("settings, message", [
    (LLMSettings("http://h", timeout=0), "`llm_timeout` must be more than 0"),
    (LLMSettings("http://h", timeout=1e9), "`llm_timeout` must be a number from 0 to 600"),
    (LLMSettings("http://h", max_tokens=0), "`max_tokens` must be between 1 and 4096"),
])
def test_unbounded_settings_are_refused(settings, message):
    with pytest.raises(InvalidArgument, match=message):
        settings.validate()


# -- a local transformers folder -------------------------------------------------------------------


def test_a_local_folder_with_a_known_answer_gives_it(reply_lm):
    assert expand_prompt("a castle", str(reply_lm)) == ExpandedPrompt(*fx.EXPECTED, "a castle")


def test_a_random_weight_folder_runs_greedily_within_max_tokens(random_lm):
    with open_llm(LLMSettings(str(random_lm), max_tokens=6)) as llm:
        first, second = llm.chat(MESSAGES), llm.chat(MESSAGES)
        assert first == second  # greedy: the same chat, the same reply
        assert 0 < len(llm.tokenizer(first, add_special_tokens=False)["input_ids"]) <= 6
    assert llm.model is None  # released on leaving the block
    with pytest.raises(LLMReplyError, match="has no prompt") as caught:
        expand_prompt("a castle", str(random_lm), template="{idea}", max_tokens=6)  # the chat above: gibberish
    assert " ".join(first.split())[:30] in str(caught.value)


def test_a_folder_without_a_chat_template_is_given_the_text(tmp_path):
    folder = fx.write_random_lm(tmp_path / "base-lm", chat_template=False)
    with LocalLM(folder, max_tokens=4) as llm:
        assert isinstance(llm.chat(MESSAGES), str)


def test_a_local_model_that_runs_past_the_timeout_says_so(random_lm):
    with pytest.raises(LLMUnavailable, match=r"the LLM random-lm did not finish within 1e-06 s \(--llm-timeout"):
        expand_prompt("a castle", str(random_lm), timeout=1e-6, max_tokens=50)


# -- a real OpenAI-compatible server: transformers serve -------------------------------------------


@pytest.fixture(scope="module")
def transformers_serve(reply_lm, tmp_path_factory):
    """``transformers serve`` (transformers' OpenAI-compatible server) serving the reply LM on loopback."""
    pytest.importorskip("openai", reason="transformers serve needs openai (pip install -e '.[test]')")
    process, url = fx.start_transformers_serve(reply_lm, tmp_path_factory.mktemp("serve") / "serve.log")
    yield url
    fx.stop_process(process)


def test_a_real_openai_compatible_server_writes_the_prompt(transformers_serve, monkeypatch):
    monkeypatch.delenv("GOUACHE_LLM_MODEL", raising=False)
    result = expand_prompt("a castle", transformers_serve)  # the model: the one it lists
    assert result == ExpandedPrompt(*fx.EXPECTED, "a castle")


def test_a_cut_short_reply_from_a_real_server_is_the_malformed_reply_error(transformers_serve):
    with pytest.raises(LLMReplyError, match=r"has no prompt.*it began '\{\"prompt\": \"a red'"):
        expand_prompt("a castle", transformers_serve, max_tokens=3)
