"""Styles and dynamic prompts in the API: A1111's ``styles`` field and ``GET /sdapi/v1/prompt-styles``,
gouache's ``GET /sdapi/v1/wildcards``, and prompts resolved from the server's own wildcards only."""

import pytest


@pytest.fixture
def home(tmp_path, monkeypatch, prompt_home):
    path = prompt_home.make_home(tmp_path / "home")
    monkeypatch.setenv("GOUACHE_HOME", str(path))
    return path


def test_styles_and_wildcards_are_listed(client, home):
    styles = client.get("/sdapi/v1/prompt-styles").json()
    assert styles == [{"name": "outline", "prompt": "{prompt}, outline style", "negative_prompt": ""},
                      {"name": "Muted", "prompt": "muted colours", "negative_prompt": "bright, saturated"}]
    listed = {w["name"]: w["options"] for w in client.get("/sdapi/v1/wildcards").json()}
    assert listed["colour"] == 3 and listed["colours/warm"] == 2


def test_txt2img_applies_styles_and_resolves_each_image(client, home):
    from gouache.prompts.dynamic import resolve

    body = {"prompt": "a __colour__ circle", "styles": ["outline"], "steps": 1, "seed": 3, "batch_size": 3,
            "width": 64, "height": 64}
    r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200, r.text
    info = __import__("json").loads(r.json()["info"])
    assert info["all_prompts"] == [resolve("a __colour__ circle, outline style", s) for s in (3, 4, 5)]
    assert info["styles"] == ["outline"] and all("Template: " in t for t in info["infotexts"])


@pytest.mark.parametrize("body, message", [
    ({"prompt": "a __../../etc/passwd__"}, "not a path"),
    ({"prompt": "a __colur__"}, "unknown wildcard __colur__"),
    ({"prompt": "__loop/a__"}, "cycle"),
    ({"prompt": "a {red"}, "never closed"),
    ({"prompt": "a circle", "styles": ["nope"]}, "unknown style 'nope'; available: outline, Muted"),
])
def test_what_cannot_be_resolved_is_a_4xx(client, home, body, message):
    r = client.post("/sdapi/v1/txt2img", json={**body, "steps": 1})
    assert 400 <= r.status_code < 500 and message in r.json()["detail"]
