"""The API's ``prompt_syntax`` (a gouache extension): compel's syntax over /sdapi/v1."""

import json

import pytest

pytest.importorskip("compel")

API = "/sdapi/v1"
BLEND = '("a red circle on a blue background", "a yellow circle on a blue background").blend(0.5, 0.5)'
SMALL = {"steps": 2, "width": 64, "height": 64, "seed": 1}


def test_txt2img_takes_prompt_syntax_and_records_it(client):
    r = client.post(f"{API}/txt2img", json={**SMALL, "prompt": BLEND, "prompt_syntax": "compel"})
    assert r.status_code == 200, r.text
    assert "Prompt syntax: compel" in json.loads(r.json()["info"])["infotexts"][0]


def test_the_infotext_field_carries_the_syntax(client):
    text = f"{BLEND}\nSteps: 2, Sampler: Euler, CFG scale: 5, Seed: 1, Size: 64x64, Prompt syntax: compel"
    r = client.post(f"{API}/txt2img", json={"infotext": text})
    assert r.status_code == 200, r.text
    assert "Prompt syntax: compel" in json.loads(r.json()["info"])["infotexts"][0]


@pytest.mark.parametrize("body,message", [
    ({"prompt": '("a", "b").blend(0.5)', "prompt_syntax": "compel"}, "one weight per prompt"),
    ({"prompt": "(" * 40 + "a", "prompt_syntax": "compel"}, "nests parentheses"),
    ({"prompt": "a cat", "prompt_syntax": "invokeai"}, "one of a1111, compel"),
])
def test_bad_syntax_is_a_422_with_the_reason(client, body, message):
    r = client.post(f"{API}/txt2img", json={**SMALL, **body})
    assert r.status_code == 422 and message in r.text
