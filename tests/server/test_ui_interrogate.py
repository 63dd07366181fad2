"""The web UI's Interrogate CLIP buttons (img2img and PNG Info), clicked in headless Chromium
against a real server whose CLIP is a tiny random model: the prompt box gets the interrogated prompt."""

import importlib.util
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

pytest.importorskip("gradio", reason="the web UI needs gradio (pip install -e '.[test]')")



@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("vision_conftest_for_ui",
                                                  Path(__file__).parents[1] / "vision" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture(scope="module")
def ui_url(tiny_loader, tmp_path_factory, serve, clip_path):
    from gouache.server.app import create_app
    from gouache.server.config import ServerConfig

    config = ServerConfig(out=str(tmp_path_factory.mktemp("ui-outputs")), ui=True, clip=str(clip_path),
                          captioner="none")
    return serve(create_app(config, tiny_loader))


@pytest.fixture(scope="module")
def picture(tmp_path_factory, clip_path):
    """A PNG and the prompt interrogation gives for it (computed here, without the server)."""
    from gouache.vision.clip import load_clip
    from gouache.vision.interrogate import interrogate

    image = Image.new("RGB", (48, 48), "white")
    ImageDraw.Draw(image).ellipse((8, 8, 40, 40), fill="red")
    path = tmp_path_factory.mktemp("in") / "circle.png"
    image.save(path)
    with load_clip(clip_path) as clip:
        return path, interrogate(Image.open(path), clip).prompt


def test_img2img_interrogate_fills_the_prompt(page, picture):
    from playwright.sync_api import expect

    path, prompt = picture
    page.get_by_role("tab", name="img2img").click()
    page.locator("#img2img-image input[type=file]").set_input_files(str(path))
    page.locator("#img2img-image img").first.wait_for()
    page.locator("#img2img-interrogate").click()
    expect(page.locator("#img2img-prompt textarea")).to_have_value(prompt)


def test_png_info_interrogate_fills_txt2imgs_prompt(page, picture):
    from playwright.sync_api import expect

    path, prompt = picture
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo-image input[type=file]").set_input_files(str(path))
    page.locator("#pnginfo-image img").first.wait_for()
    page.locator("#pnginfo-interrogate").click()
    expect(page.locator("#txt2img-prompt textarea")).to_have_value(prompt)
    expect(page.get_by_role("tab", name="txt2img")).to_have_attribute("aria-selected", "true")


def test_interrogate_without_an_image_says_so(page):
    page.get_by_role("tab", name="img2img").click()
    page.locator("#img2img-interrogate").click()
    page.get_by_text("Drop an image first.").first.wait_for()
