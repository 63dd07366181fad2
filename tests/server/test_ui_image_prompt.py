"""The web UI's "Image prompt (IP-Adapter)" accordion (txt2img, img2img, inpaint, upscale), clicked
in headless Chromium against a real server whose adapter is a tiny random one in h94's layout
(``tiny-ip``, tests/conftest.py): the PNG the page shows records the unit, scale 0 gives the image
without the adapter bit for bit, and what cannot work says so on the page."""

import io
import re

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("gradio", reason="the web UI needs gradio (pip install -e '.[test]')")

WRONG = "ui-wrong-base"  # an adapter with one cross-attention layer too few for gouache-tiny


@pytest.fixture(scope="module")
def ui_url(tiny_ip_adapter, wrong_adapter, tiny_loader, tmp_path_factory, serve):
    from gouache.server.app import create_app
    from gouache.server.config import ServerConfig

    config = ServerConfig(out=str(tmp_path_factory.mktemp("ui-outputs")), ui=True)
    return serve(create_app(config, tiny_loader))


@pytest.fixture(scope="module")
def wrong_adapter(gouache_home, tiny_model, ip_layouts):
    state = ip_layouts.h94_state(tiny_model.unet, "basic", 64)
    last = max(int(k.split(".")[1]) for k in state if k.startswith("ip_adapter."))
    state = {k: v for k, v in state.items() if not k.startswith(f"ip_adapter.{last}.")}
    path = ip_layouts.write(gouache_home / "ip-adapter" / f"{WRONG}.safetensors", state, encoder="gouache-tiny-clip")
    yield path
    for made in (path, path.with_suffix(".json")):  # the session's other tests list the folder
        made.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def prompt_image(tmp_path_factory):
    image = Image.new("RGB", (64, 64), (40, 40, 200))
    ImageDraw.Draw(image).ellipse((12, 12, 52, 52), fill=(220, 30, 30))
    path = tmp_path_factory.mktemp("in") / "red-circle.png"
    image.save(path)
    return path


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


def open_tab(page, tab: str, name: str, init=None) -> None:
    page.get_by_role("tab", name=name).click()
    if init is not None:
        page.locator(f"#{tab}-image input[type=file]").set_input_files(str(init))
        page.locator(f"#{tab}-image img").first.wait_for()


def image_prompt(page, tab: str, path, scale: float | None = None, style: bool = False, adapter: str | None = None):
    """Open the tab's accordion and fill it in (the listed adapter chosen unless ``adapter``)."""
    page.locator(f"#{tab}-ip").get_by_text("Image prompt (IP-Adapter)").first.click()
    page.locator(f"#{tab}-ip-image input[type=file]").set_input_files(str(path))
    page.locator(f"#{tab}-ip-image img").first.wait_for()
    if adapter is not None:
        page.locator(f"#{tab}-ip-adapter input").click()
        page.get_by_role("option", name=adapter, exact=True).click()
    if scale is not None:
        set_number(page, f"{tab}-ip-scale", scale)
    if style:
        page.locator(f"#{tab}-ip-style input").check()


def generate(page, tab: str, seed: int = 3) -> Image.Image:
    page.locator(f"#{tab}-prompt textarea").fill("on a blue background")
    set_number(page, f"{tab}-steps", 2)
    page.locator(f"#{tab}-seed input").fill(str(seed))
    page.locator(f"#{tab}-generate").click()
    return fetched(page, page.locator(f"#{tab}-gallery img").first)


def test_the_adapters_are_listed_in_the_picker(page, tiny_ip_adapter):
    page.locator("#txt2img-ip").get_by_text("Image prompt (IP-Adapter)").first.click()
    page.locator("#txt2img-ip-adapter input").click()
    page.get_by_role("option", name="tiny-ip", exact=True).wait_for()
    page.get_by_role("option", name=WRONG, exact=True).wait_for()


@pytest.mark.parametrize("tab,name,style", [("txt2img", "txt2img", False), ("img2img", "img2img", True)])
def test_an_image_prompt_is_recorded_and_changes_the_image(page, prompt_image, tab, name, style):
    init = prompt_image if tab == "img2img" else None
    open_tab(page, tab, name, init)
    plain = generate(page, tab)
    assert "IP-Adapter" not in plain.info["parameters"]
    page.reload()
    open_tab(page, tab, name, init)
    image_prompt(page, tab, prompt_image, scale=0.8, style=style, adapter="tiny-ip")
    made = generate(page, tab)
    parameters = made.info["parameters"]
    assert 'IP-Adapter 0: "Model: tiny-ip [' in parameters and "Weight: 0.8" in parameters
    assert ("Style: True" in parameters) == style
    assert not np.array_equal(np.asarray(made.convert("RGB")), np.asarray(plain.convert("RGB")))


def test_scale_0_gives_the_image_without_the_adapter(page, prompt_image):
    image_prompt(page, "txt2img", prompt_image, scale=0, adapter="tiny-ip")  # other tests add adapters to the home
    off = generate(page, "txt2img")
    assert 'IP-Adapter 0: "Model: tiny-ip [' in off.info["parameters"] and 'Weight: 0"' in off.info["parameters"]
    page.reload()
    plain = generate(page, "txt2img")
    assert "IP-Adapter" not in plain.info["parameters"]
    assert np.array_equal(np.asarray(off.convert("RGB")), np.asarray(plain.convert("RGB")))


def test_an_adapter_for_another_model_says_so(page, prompt_image):
    image_prompt(page, "txt2img", prompt_image, adapter=WRONG)
    page.locator("#txt2img-prompt textarea").fill("on a blue background")
    page.locator("#txt2img-generate").click()
    page.get_by_text(f"IP-Adapter '{WRONG}' is for another kind of model than").first.wait_for()


def test_an_image_prompt_on_a_server_without_adapters_says_how_to_install_one(browser, prompt_image, monkeypatch,
                                                                               tiny_loader, tmp_path, serve):
    from gouache.server import catalog
    from gouache.server.app import create_app
    from gouache.server.config import ServerConfig

    monkeypatch.setattr(catalog, "ip_adapter_names", lambda: [])
    url = serve(create_app(ServerConfig(out=str(tmp_path / "outputs"), ui=True), tiny_loader))
    context = browser.new_context(base_url=url, viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto("/")
        image_prompt(page, "txt2img", prompt_image)
        page.locator("#txt2img-generate").click()
        page.get_by_text("This server has no IP-Adapter for the image prompt").first.wait_for()
    finally:
        context.close()


def test_picking_no_adapter_for_an_image_says_which_to_pick(tiny_ip_adapter):
    """The picker can be emptied (or sent empty by Gradio's own API): the message lists the choices."""
    import gradio as gr

    from gouache.server.ui.image_prompt import units

    values = {"ip_adapter": None, "ip_image": Image.new("RGB", (8, 8)), "ip_scale": 1.0, "ip_style": False}
    with pytest.raises(gr.Error, match="Pick the IP-Adapter for the image prompt: .*tiny-ip"):
        units(values)
    assert units({**values, "ip_image": None}) == []


def test_send_to_txt2img_takes_the_adapter_scale_and_style(page, tmp_path, tiny_ip_adapter):
    """The image prompt itself cannot travel in the infotext; what can is put back."""
    from PIL.PngImagePlugin import PngInfo
    from playwright.sync_api import expect

    info = PngInfo()
    info.add_text("parameters", 'on a blue background\nSteps: 2, Sampler: Euler, CFG scale: 5, Seed: 3, Size: 64x64, '
                                'IP-Adapter 0: "Model: tiny-ip [12345678], Weight: 0.35, Style: True"')
    path = tmp_path / "made.png"
    Image.new("RGB", (64, 64)).save(path, pnginfo=info)
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo-image input[type=file]").set_input_files(str(path))
    page.locator("#pnginfo-image img").first.wait_for()
    expect(page.locator("#pnginfo-parameters textarea")).to_have_value(re.compile("IP-Adapter 0"))
    page.get_by_role("button", name="Send to txt2img").click()
    expect(page.locator("#txt2img-seed input")).to_have_value("3")
    page.locator("#txt2img-ip").get_by_text("Image prompt (IP-Adapter)").first.click()
    expect(page.locator("#txt2img-ip-scale input[type=number]")).to_have_value("0.35")
    expect(page.locator("#txt2img-ip-style input")).to_be_checked()
    expect(page.locator("#txt2img-ip-adapter input")).to_have_value("tiny-ip")
