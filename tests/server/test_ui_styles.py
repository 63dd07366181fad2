"""The generate tabs' Styles picker, clicked in headless Chromium against a real server whose
$GOUACHE_HOME has a styles.csv and wildcards: the saved PNG carries the styled, resolved prompt."""

import io
import os

import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the web UI needs gradio (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def ui_url(tiny_loader, tmp_path_factory, serve, prompt_home):
    from gouache.server.app import create_app
    from gouache.server.config import ServerConfig

    saved = os.environ["GOUACHE_HOME"]
    os.environ["GOUACHE_HOME"] = str(prompt_home.make_home(tmp_path_factory.mktemp("home")))
    try:
        yield serve(create_app(ServerConfig(out=str(tmp_path_factory.mktemp("ui-outputs")), ui=True), tiny_loader))
    finally:
        os.environ["GOUACHE_HOME"] = saved


def test_a_picked_style_and_a_wildcard_reach_the_saved_png(page):
    from playwright.sync_api import expect

    page.locator("#txt2img-prompt textarea").fill("a __shape__ on a blue background")
    page.locator("#txt2img-styles input").click()
    page.get_by_role("option", name="outline").click()
    page.locator("#txt2img-prompt textarea").click()  # close the list
    steps = page.locator("#txt2img-steps input[type=number]")
    steps.fill("1")
    steps.blur()
    page.locator("#txt2img-seed input").fill("3")
    page.locator("#txt2img-generate").click()
    image = page.locator("#txt2img-gallery img").first
    image.wait_for()
    parameters = Image.open(io.BytesIO(page.request.get(image.get_attribute("src")).body())).info["parameters"]
    first = parameters.split("\n")[0]
    assert first in ("a circle on a blue background, outline style", "a square on a blue background, outline style")
    assert "Template: a __shape__ on a blue background" in parameters
    expect(page.locator("#txt2img-info textarea")).to_have_value(parameters)
