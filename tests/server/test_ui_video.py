"""The Video tab in headless Chromium against a real server on gouache-tiny: the clip plays in the
page (an animated GIF in the player's <img>), with its parameters; a bad request is one message."""

import io

import pytest
from PIL import Image


pytest.importorskip("gradio", reason="the web UI needs gradio (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def ui_url(tiny_loader, tmp_path_factory, serve, gouache_home, motion_layouts):
    from gouache.server.app import create_app
    from gouache.server.config import ServerConfig

    motion_layouts.write_layouts(gouache_home / "motion")  # before the UI lists the motion modules
    return serve(create_app(ServerConfig(out=str(tmp_path_factory.mktemp("ui-outputs")), ui=True), tiny_loader))


def open_tab(page, frames: str, free_init: str = "0"):
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-prompt textarea").fill("a red circle on a blue background")
    for name, value in (("steps", "2"), ("frames", frames), ("seed", "3"), ("free-init", free_init)):
        box = page.locator(f"#video-{name} input")
        box.fill(value)
        box.blur()
    page.locator("#video-generate").click()


def test_the_clip_plays_in_the_player(page):
    open_tab(page, "4")
    img = page.locator("#video-player img")
    img.wait_for(timeout=120_000)
    page.wait_for_function("() => { const i = document.querySelector('#video-player img');"
                           " return i && i.complete && i.naturalWidth === 64; }",
                           timeout=120_000)
    gif = Image.open(io.BytesIO(page.request.get(img.get_attribute("src")).body()))
    assert gif.format == "GIF" and gif.n_frames == 4 and gif.info.get("loop") == 0  # plays, for ever
    frames = []
    for k in range(gif.n_frames):
        gif.seek(k)
        frames.append(gif.convert("RGB").tobytes())
    assert len(set(frames)) > 1  # frames that differ: a moving picture, not a still
    info = page.locator("#video-info textarea")
    page.wait_for_function("() => document.querySelector('#video-info textarea').value.includes('Frames: 4')",
                           timeout=120_000)
    assert "Motion module: mm_tiny" in info.input_value()  # the first the dropdown lists


def test_too_many_frames_is_one_message(page):
    open_tab(page, "1000")
    page.get_by_text("`frames` must be between 1 and 256, got 1000").first.wait_for()


def test_free_init_passes_are_asked_for_in_the_tab(page):
    open_tab(page, "3", free_init="2")
    page.wait_for_function("() => document.querySelector('#video-info textarea').value.includes('FreeInit: 2')",
                           timeout=120_000)
    assert "FreeInit filter: butterworth" in page.locator("#video-info textarea").input_value()
