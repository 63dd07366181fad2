"""``POST /gouache/v1/prompt/expand``: the server's LLM (never one a request names) writes a prompt
from an idea; what goes wrong is a 4xx (the request) or a 503 (the LLM) with a message."""

import importlib.util
import time
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "llm_fixtures_server", Path(__file__).parents[1] / "llm_fixtures.py")
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)

ROUTE = "/gouache/v1/prompt/expand"
PROMPT, NEGATIVE = fx.EXPECTED


def test_an_endpoint_llm_writes_the_prompt(make_client, canned):
    client = make_client(llm=canned.url, llm_model="m", llm_max_tokens=77)
    answer = client.post(ROUTE, json={"idea": " a castle "})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"prompt": PROMPT, "negative_prompt": NEGATIVE, "idea": "a castle"}
    assert canned.posts()[0][3]["max_tokens"] == 77  # the operator's bound, not the client's


def test_a_local_llm_runs_on_the_job_queue(make_client, reply_lm, monkeypatch):
    client = make_client(llm=str(reply_lm))
    queue, jobs = client.app.state.gouache.queue, []
    submit = queue.submit
    monkeypatch.setattr(queue, "submit", lambda name, work: jobs.append(name) or submit(name, work))
    answer = client.post(ROUTE, json={"idea": "a castle"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"prompt": PROMPT, "negative_prompt": NEGATIVE, "idea": "a castle"}
    assert jobs == ["expand"]


@pytest.mark.parametrize("body", [
    {"idea": "a castle", "llm": "http://169.254.169.254/latest"}, {"idea": "a castle", "url": "http://10.0.0.1"},
    {"idea": "a castle", "model": "/etc/passwd"}, {"idea": "a castle", "template": "{idea}"},
])
def test_a_request_cannot_name_an_llm_a_path_or_a_template(make_client, canned, body):
    client = make_client(llm=canned.url, llm_model="m")
    answer = client.post(ROUTE, json=body)
    assert answer.status_code == 422
    assert canned.requests == []  # nothing was called


@pytest.mark.parametrize("idea, message", [("", "`idea` is empty"), ("x" * 2001, "over 2000")])
def test_a_bad_idea_is_422(make_client, canned, idea, message):
    answer = make_client(llm=canned.url, llm_model="m").post(ROUTE, json={"idea": idea})
    assert answer.status_code == 422 and message in answer.json()["detail"]
    assert canned.requests == []


def test_without_an_llm_the_server_says_how_its_operator_adds_one(make_client):
    answer = make_client().post(ROUTE, json={"idea": "a castle"})
    assert answer.status_code == 503
    assert "this server has no LLM" in answer.json()["detail"] and "gouache serve --llm" in answer.json()["detail"]


@pytest.mark.parametrize("setup, message", [
    ("refused", "cannot reach the server's LLM: connection refused"),
    ("slow", "the server's LLM did not answer within 0.5 s"),
    ("chatty", "the LLM's reply has no prompt"),
    ("error", "the server's LLM answered HTTP 500"),
])
def test_an_llm_that_fails_is_503_without_its_address(make_client, canned, setup, message):
    url = f"http://127.0.0.1:{fx.free_port()}" if setup == "refused" else canned.url
    canned.behave = {"slow": ("sleep", 10), "chatty": ("reply", "Which castle?"),
                     "error": ("status", 500, {"error": {"message": "out of memory"}})}.get(setup, canned.behave)
    client = make_client(llm=url, llm_model="m", llm_timeout=0.5)
    started = time.monotonic()
    answer = client.post(ROUTE, json={"idea": "a castle"})
    assert time.monotonic() - started < 5
    assert answer.status_code == 503 and message in answer.json()["detail"]
    assert url not in answer.text and str(url.rsplit(":", 1)[1]) not in answer.json()["detail"]


def test_a_bad_llm_stops_the_server_at_start(run, tmp_path):
    folder = tmp_path / "vae"
    folder.mkdir()
    (folder / "config.json").write_text('{"_class_name": "AutoencoderKL"}')
    code, _, err = run("serve", "--llm", folder, "--port", fx.free_port())
    assert code == 1 and err.startswith(f"gouache: error: {folder}: not a causal language model")
    code, _, err = run("serve", "--llm", "gopher://x", "--port", fx.free_port())
    assert code == 1 and "the LLM URL must be http://HOST" in err
