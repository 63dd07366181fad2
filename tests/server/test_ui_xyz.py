"""The txt2img tab's X/Y/Z plot section, in headless Chromium against a real server on
gouache-tiny: the gallery shows the grid (with its parameters) and then every image; a bad axis
is one message on the page."""

import io

import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the web UI needs gradio (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def ui_url(tiny_loader, tmp_path_factory, serve):
    from gouache.server.app import create_app
    from gouache.server.config import ServerConfig

    return serve(create_app(ServerConfig(out=str(tmp_path_factory.mktemp("ui-outputs")), ui=True), tiny_loader))


def fetched(page, locator) -> Image.Image:
    locator.wait_for()
    response = page.request.get(locator.get_attribute("src"))
    assert response.ok
    return Image.open(io.BytesIO(response.body()))


def plot(page, x_type: str, x_values: str, y_type: str | None = None, y_values: str = "") -> None:
    page.locator("#txt2img-prompt textarea").fill("a red circle on a blue background")
    steps = page.locator("#txt2img-steps input[type=number]")
    steps.fill("2")
    steps.blur()
    page.locator("#txt2img-seed input").fill("5")
    page.locator("#txt2img-xyz").get_by_text("X/Y/Z plot").first.click()
    for name, kind, values in (("x", x_type, x_values), ("y", y_type, y_values)):
        if kind is None:
            continue
        page.locator(f"#txt2img-xyz-{name}-type input").click()
        page.locator(f"#txt2img-xyz-{name}-type").get_by_role("option", name=kind, exact=True).click()
        page.locator(f"#txt2img-xyz-{name}-values textarea, #txt2img-xyz-{name}-values input").first.fill(values)
    page.locator("#txt2img-xyz-generate").click()


def test_a_plot_shows_its_grid_then_its_images(page):
    from gouache.metadata.infotext import parse_infotext

    plot(page, "Sampler", "Euler, Heun", "Steps", "1, 2")
    gallery = page.locator("#txt2img-gallery img")
    grid = fetched(page, gallery.first)
    params = parse_infotext(grid.info["parameters"]).params
    assert (params["Script"], params["X Type"], params["X Values"]) == ("X/Y/Z plot", "Sampler", "Euler, Heun")
    assert grid.width > 128 and grid.height > 128  # two cells each way and the legends
    page.wait_for_function("document.querySelectorAll('#txt2img-gallery img').length >= 5")
    last = fetched(page, gallery.nth(4))
    assert parse_infotext(last.info["parameters"]).params["Sampler"] == "Heun"


def test_a_bad_axis_is_one_message(page):
    plot(page, "Steps", "1-")
    message = page.get_by_text("Steps: '1-' is not a whole number or a range like 1-5").first
    message.wait_for()
