"""The web UI's ✨ beside the prompt, clicked in headless Chromium against a real server whose LLM
is a tiny local model set to answer a known prompt: the idea in the prompt box becomes that prompt,
and the negative prompt is filled."""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the web UI needs gradio (pip install -e '.[test]')")

_spec = importlib.util.spec_from_file_location(
    "llm_fixtures_ui", Path(__file__).parents[1] / "llm_fixtures.py")
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)

PROMPT, NEGATIVE = fx.EXPECTED


@pytest.fixture(scope="module")
def ui_url(tiny_loader, tmp_path_factory, serve, reply_lm):
    from gouache.server.app import create_app
    from gouache.server.config import ServerConfig

    llm = reply_lm
    config = ServerConfig(out=str(tmp_path_factory.mktemp("ui-outputs")), ui=True, llm=str(llm))
    return serve(create_app(config, tiny_loader))


@pytest.mark.parametrize("tab", ["txt2img", "img2img"])
def test_the_sparkle_replaces_the_idea_with_the_llms_prompt(page, tab):
    from playwright.sync_api import expect

    page.get_by_role("tab", name=tab).click()
    page.locator(f"#{tab}-prompt textarea").fill("a castle")
    page.locator(f"#{tab}-expand").click()
    expect(page.locator(f"#{tab}-prompt textarea")).to_have_value(PROMPT)
    expect(page.locator(f"#{tab}-negative-prompt textarea")).to_have_value(NEGATIVE)


def test_the_sparkle_without_an_idea_says_so(page):
    page.locator("#txt2img-expand").click()
    page.get_by_text("Write an idea in the prompt box first").first.wait_for()


def test_a_server_without_an_llm_has_no_sparkle(make_client):
    config = make_client(ui=True).get("/config").json()
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert "txt2img-prompt" in ids and "txt2img-expand" not in ids
