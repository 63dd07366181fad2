"""The web UI's masks from words (the Inpaint tab's "Mask from words" and Preview mask) and the
Extras tab's Remove background, clicked in headless Chromium against a real server whose
segmenter is a tiny random CLIPSeg: thresholds come from its scores, and the tests check what the
page shows and downloads (the mask, the cut-out's alpha, the image's parameters)."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("gradio", reason="the web UI needs gradio (pip install -e '.[test]')")

WORDS = "the red circle"


@pytest.fixture(scope="module")
def ui_url(tiny_segmenter, tiny_loader, tmp_path_factory, serve):
    from gouache.server.app import create_app
    from gouache.server.config import ServerConfig

    config = ServerConfig(out=str(tmp_path_factory.mktemp("ui-outputs")), ui=True)
    return serve(create_app(config, tiny_loader))


@pytest.fixture(scope="module")
def picture(tmp_path_factory, tiny_segmenter):
    """A PNG, the tiny segmenter's scores on it (for WORDS and "the background") and a threshold
    the page's slider can hold (two decimals) that leaves pixels on both sides."""
    from gouache.vision.segment import load_segmenter

    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).ellipse((16, 16, 48, 48), fill="red")
    path = tmp_path_factory.mktemp("in") / "circle.png"
    image.save(path)
    with load_segmenter(default_segmenter()) as seg:  # what the page's picker starts at
        scores = {w: seg.probabilities(image, w) for w in (WORDS, "the background")}
    # the built-in's own threshold when it splits the picture, else (random weights) the scores' median
    threshold = 0.5 if 0.1 < (scores[WORDS] > 0.5).mean() < 0.9 else round(float(np.median(scores[WORDS])), 2)
    assert 0.1 < (scores[WORDS] > threshold).mean() < 0.9
    return path, scores, threshold


def fetched(page, locator) -> Image.Image:
    """The image an ``<img>`` shows, as the browser downloads it."""
    locator.wait_for()
    response = page.request.get(locator.get_attribute("src"))
    assert response.ok
    image = Image.open(io.BytesIO(response.body()))
    assert image.format == "PNG"
    return image


def set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.blur()


def default_segmenter() -> str:
    """The segmenter the UI picks unless told: the built-in once it ships, else the tiny one."""
    from gouache.server.catalog import segmenter_names

    return segmenter_names()[0]


def open_inpaint(page, path, words: str = WORDS, threshold: float | None = None) -> None:
    """The Inpaint tab with ``path`` in its editor (by its Upload button, as a user does: a file set
    on the editor's hidden input is sometimes dropped), ``words`` and ``threshold`` filled in."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Inpaint").click()
    editor = page.locator("#inpaint-editor")
    placeholder = editor.get_by_text("Upload an image")
    placeholder.wait_for()
    with page.expect_file_chooser() as chooser:
        editor.locator("button[aria-label='Upload']").click()
    chooser.value.set_files(str(path))
    expect(placeholder).to_be_hidden()
    page.locator("#inpaint-mask-prompt input, #inpaint-mask-prompt textarea").first.fill(words)
    if threshold is not None:
        set_number(page, "inpaint-mask-threshold", threshold)


def test_preview_mask_shows_the_words_mask(page, picture):
    from gouache.vision.segment import DEFAULT_REFINE, MaskOptions, refine, words_mask

    path, scores, threshold = picture
    open_inpaint(page, path, threshold=threshold)
    page.locator("#inpaint-mask-invert input").check()
    page.locator("#inpaint-preview-mask").click()
    shown = fetched(page, page.locator("#inpaint-mask-preview img").first)
    refined = refine(Image.open(path).convert("RGB"), scores[WORDS], DEFAULT_REFINE)  # as inpainting refines it
    expected = words_mask(refined, WORDS, MaskOptions(threshold, invert=True))
    assert np.array_equal(np.asarray(shown.convert("L")), np.asarray(expected))


def test_inpaint_with_a_mask_from_words(page, picture):
    path, scores, threshold = picture
    open_inpaint(page, path, threshold=threshold)
    page.locator("#inpaint-prompt textarea").fill("a blue square")
    set_number(page, "inpaint-steps", 2)
    page.locator("#inpaint-seed input").fill("3")
    page.locator("#inpaint-generate").click()
    parameters = fetched(page, page.locator("#inpaint-gallery img").first).info["parameters"]
    assert f"Mask prompt: {WORDS}," in parameters and f"Segmenter: {default_segmenter()}," in parameters
    assert f"Mask threshold: {threshold}" in parameters and "Mask invert" not in parameters


def test_inpaint_keeping_the_edges(page, picture):
    """The Inpaint tab's Keep edges: the model's default canny ControlNet on the image, recorded."""
    path, scores, threshold = picture
    open_inpaint(page, path, threshold=threshold)
    page.locator("#inpaint-prompt textarea").fill("a blue square")
    set_number(page, "inpaint-steps", 2)
    set_number(page, "inpaint-keep-edges", 0.8)
    page.locator("#inpaint-generate").click()
    parameters = fetched(page, page.locator("#inpaint-gallery img").first).info["parameters"]
    assert "ControlNet 0: " in parameters and "Module: canny" in parameters and "Weight: 0.8" in parameters


def test_painting_and_words_together_is_an_error(page, picture):
    path, _, threshold = picture
    open_inpaint(page, path, threshold=threshold)
    canvas = page.locator("#inpaint-editor canvas").first
    box = canvas.bounding_box()
    page.locator("#inpaint-editor button[aria-label='Brush']").first.click()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 20, y)
    page.mouse.down()
    page.mouse.move(x + 20, y, steps=8)
    page.mouse.up()
    page.locator("#inpaint-generate").click()
    page.get_by_text("Paint the mask or write its words, not both").first.wait_for()


def test_preview_without_words_says_so(page, picture):
    open_inpaint(page, picture[0], words="")
    page.locator("#inpaint-preview-mask").click()
    page.get_by_text("Write the words of the mask first").first.wait_for()


@pytest.mark.parametrize("return_mask", [False, True])
def test_extras_remove_background_gives_a_png_with_alpha(page, picture, return_mask):
    from gouache.vision.segment import DEFAULT_REFINE, alpha_matte, refine

    path, scores, _ = picture
    page.get_by_role("tab", name="Extras").click()
    page.locator("#extras-image input[type=file]").set_input_files(str(path))
    page.locator("#extras-image img").first.wait_for()
    if return_mask:
        page.locator("#extras-return-mask input").check()
    page.locator("#extras-remove-background").click()
    result = fetched(page, page.locator("#extras-result img").first)
    alpha = np.asarray(alpha_matte(refine(Image.open(path).convert("RGB"), scores["the background"], DEFAULT_REFINE)))
    if return_mask:
        assert np.array_equal(np.asarray(result.convert("L")), alpha)
    else:
        assert result.mode == "RGBA" and np.array_equal(np.asarray(result.getchannel("A")), alpha)


def test_extras_without_an_image_says_so(page):
    page.get_by_role("tab", name="Extras").click()
    page.locator("#extras-remove-background").click()
    page.get_by_text("Drop an image first.").first.wait_for()
