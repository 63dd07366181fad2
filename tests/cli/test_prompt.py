"""`gouache prompt expand` and `gouache generate --expand` as a user runs them, against tiny local
LMs (one set by hand to answer a known prompt) and a canned OpenAI-compatible server."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

_spec = importlib.util.spec_from_file_location(
    "llm_fixtures_cli", Path(__file__).parents[1] / "llm_fixtures.py")
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)

PROMPT, NEGATIVE = fx.EXPECTED


def test_expand_prints_the_prompt_and_the_negative_prompt(run, reply_lm):
    code, out, err = run("prompt", "expand", "a castle", "--llm", reply_lm)
    assert code == 0, err
    assert out.splitlines() == [f"Prompt: {PROMPT}", f"Negative prompt: {NEGATIVE}"]


def test_expand_json_is_for_scripts(run, canned, monkeypatch):
    monkeypatch.setenv("GOUACHE_LLM", canned.url)  # the default LLM
    code, out, err = run("prompt", "expand", "a castle", "--llm-model", "m", "--json")
    assert code == 0, err
    assert json.loads(out) == {"prompt": PROMPT, "negative_prompt": NEGATIVE, "idea": "a castle"}


def test_expand_sends_your_template(run, canned, tmp_path):
    template = tmp_path / "mine.txt"
    template.write_text("Paint {idea} in gouache; answer Prompt: … and Negative prompt: …", encoding="utf-8")
    canned.behave = ("reply", "Prompt: a castle in gouache, thick paint\nNegative prompt: photo")
    code, out, err = run("prompt", "expand", "a castle", "--llm", canned.url, "--llm-model", "m", "--template", template)
    assert code == 0, err
    assert out.splitlines() == ["Prompt: a castle in gouache, thick paint", "Negative prompt: photo"]
    assert canned.posts()[0][3]["messages"][0]["content"] == \
        "Paint a castle in gouache; answer Prompt: … and Negative prompt: …"


@pytest.mark.parametrize("setup, args, message", [
    ("refused", [], "cannot reach the LLM at {url}: connection refused"),
    ("slow", ["--llm-timeout", "0.3"], "did not answer within 0.3 s (--llm-timeout"),
    ("chatty", [], "the LLM's reply has no prompt"),
    ("error", [], "answered HTTP 503 Service Unavailable: 'loading model'"),
    ("ok", ["--llm-timeout", "0"], "--llm-timeout must be more than 0 seconds"),
    ("ok", ["--max-tokens", "100000"], "--max-tokens must be between 1 and 4096"),
])
def test_what_goes_wrong_is_one_line(run, canned, setup, args, message):
    url = f"http://127.0.0.1:{fx.free_port()}" if setup == "refused" else canned.url
    canned.behave = {"slow": ("sleep", 10), "chatty": ("reply", "What castle would you like?"),
                     "error": ("status", 503, {"error": {"message": "loading model"}})}.get(setup, canned.behave)
    code, out, err = run("prompt", "expand", "a castle", "--llm", url, "--llm-model", "m", *args)
    assert code == 1 and out == ""
    assert err.startswith("gouache: error: ") and message.format(url=url) in err and err.count("\n") == 1


def test_a_folder_that_is_not_a_causal_lm_is_one_line(run, tmp_path):
    folder = tmp_path / "unet"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    code, _, err = run("prompt", "expand", "a castle", "--llm", folder)
    assert code == 1
    assert err == f"gouache: error: {folder}: not a causal language model (its config.json says model_type None); " \
                  "--llm takes a text-generation model such as Llama, Qwen, Mistral, Gemma or GPT-2\n"


def test_no_llm_says_how_to_name_one(run, monkeypatch):
    monkeypatch.delenv("GOUACHE_LLM", raising=False)
    code, _, err = run("prompt", "expand", "a castle")
    assert code == 1 and "pass --llm URL|PATH" in err and "$GOUACHE_LLM" in err


# -- generate --expand ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def expanded_image(tmp_path_factory, reply_lm, tiny_model):
    from gouache.cli import main

    out = tmp_path_factory.mktemp("expanded")
    assert main(["generate", "a castle", "--expand", "--llm", str(reply_lm), "--seed", "3", "--steps", "12",
                 "--out", str(out)]) == 0
    (path,) = out.iterdir()
    return path


def test_generate_expand_draws_the_llms_prompt_and_records_the_idea(expanded_image):
    from gouache.metadata.infotext import parse_infotext
    from gouache.metadata.png import read_infotext
    from gouache.tiny.judge import read_image

    parsed = parse_infotext(read_infotext(expanded_image))
    assert (parsed.prompt, parsed.negative_prompt) == (PROMPT, NEGATIVE)
    assert parsed.params["Prompt idea"] == "a castle"
    reading = read_image(Image.open(expanded_image))  # gouache-tiny drew what the LLM wrote
    assert (reading.colour, reading.shape, reading.background) == ("red", "circle", "blue")


def test_from_makes_it_again_without_asking_the_llm(run, expanded_image, tmp_path, monkeypatch):
    monkeypatch.setenv("GOUACHE_LLM", f"http://127.0.0.1:{fx.free_port()}")  # would be refused, if asked
    code, out, err = run("generate", "--from", expanded_image, "--out", tmp_path)
    assert code == 0, err
    again = Path(out.split()[0])
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(expanded_image)))
    from gouache.metadata.png import read_infotext

    assert read_infotext(again) == read_infotext(expanded_image)


def test_from_with_a_new_prompt_drops_the_recorded_idea(run, expanded_image, tmp_path):
    from gouache.metadata.png import read_infotext

    code, out, err = run("generate", "--from", expanded_image, "a blue square on a red background", "--steps", "2",
                         "--out", tmp_path)
    assert code == 0, err
    assert "Prompt idea" not in read_infotext(out.split()[0])


@pytest.mark.parametrize("args, message", [
    (["a castle", "--llm", "http://127.0.0.1:1"], "--llm needs --expand"),
    (["--from", "{image}", "--expand"], "--expand with --from needs a new idea"),
    (["", "--expand", "--llm", "http://127.0.0.1:1"], "PROMPT (the idea, with --expand) is empty"),
])
def test_expand_options_used_wrongly_are_one_line(run, expanded_image, tmp_path, args, message):
    argv = [a.format(image=expanded_image) for a in args]
    code, _, err = run("generate", *argv, "--steps", "2", "--out", tmp_path)
    assert code in (1, 2) and message in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_img2img_takes_expand_too(run, reply_lm, expanded_image, tmp_path):
    from gouache.metadata.infotext import parse_infotext
    from gouache.metadata.png import read_infotext

    code, out, err = run("img2img", expanded_image, "a castle", "--expand", "--llm", reply_lm, "--steps", "2",
                         "--out", tmp_path)
    assert code == 0, err
    parsed = parse_infotext(read_infotext(out.split()[0]))
    assert (parsed.prompt, parsed.params["Prompt idea"]) == (PROMPT, "a castle")
