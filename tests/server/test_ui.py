"""The web UI: in headless Chromium (Debian's ``chromium``, driven by Playwright) against a real
server on gouache-tiny, and its pieces without a browser."""

import io
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the web UI needs gradio (pip install -e '.[test]')")

PROMPT = "a red circle on a blue background"
INFOTEXT = (f"{PROMPT}\nNegative prompt: blurry\nSteps: 3, Sampler: Euler a, Schedule type: Karras, CFG scale: 6, "
            "Seed: 1234, Size: 64x64, Model: gouache-tiny")


@pytest.fixture(scope="module")
def ui_url(tiny_loader, tmp_path_factory, serve):
    from gouache.server.app import create_app
    from gouache.server.config import ServerConfig

    out = tmp_path_factory.mktemp("ui-outputs")
    return serve(create_app(ServerConfig(out=str(out), ui=True), tiny_loader))


def png_parameters(data: bytes) -> str:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image.info.get("parameters", "")


def test_txt2img_in_the_browser_gives_a_png_with_its_parameters(page):
    from playwright.sync_api import expect

    page.locator("#txt2img-prompt textarea").fill(PROMPT)
    steps = page.locator("#txt2img-steps input[type=number]")
    steps.fill("2")
    steps.blur()
    page.locator("#txt2img-seed input").fill("7")
    page.locator("#txt2img-generate").click()
    image = page.locator("#txt2img-gallery img").first
    image.wait_for()
    response = page.request.get(image.get_attribute("src"))  # what the browser shows, and downloads
    assert response.ok
    parameters = png_parameters(response.body())
    assert parameters.startswith(PROMPT) and "Steps: 2," in parameters and "Seed: 7," in parameters
    expect(page.locator("#txt2img-info textarea")).to_have_value(parameters)


def test_png_info_reads_the_parameters_and_sends_them_to_txt2img(page, tmp_path):
    from playwright.sync_api import expect

    from gouache.metadata.png import save_png

    path = save_png(Image.new("RGB", (64, 64), (200, 30, 30)), tmp_path / "00000-1234.png", INFOTEXT)
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo-image input[type=file]").set_input_files(str(path))
    expect(page.locator("#pnginfo-parameters textarea")).to_have_value(INFOTEXT)
    page.get_by_role("button", name="Send to txt2img").click()
    expect(page.locator("#txt2img-prompt textarea")).to_have_value(PROMPT)
    expect(page.locator("#txt2img-negative-prompt textarea")).to_have_value("blurry")
    expect(page.locator("#txt2img-steps input[type=number]")).to_have_value("3")
    expect(page.locator("#txt2img-seed input")).to_have_value("1234")


# -- without a browser ----------------------------------------------------------------------------


def test_the_ui_is_behind_the_apis_basic_auth(make_client):
    client = make_client(api_auth="ann:secret", ui=True)
    assert client.get("/").status_code == 401
    assert client.get("/config").status_code == 401
    assert client.get("/", auth=("ann", "secret")).status_code == 200
    assert client.get("/sdapi/v1/samplers", auth=("ann", "secret")).status_code == 200


def test_nowebui_serves_the_api_alone(make_client):
    client = make_client(ui=False)
    assert client.get("/").status_code == 404
    assert client.get("/sdapi/v1/samplers").status_code == 200


def test_the_inpaint_editor_gives_the_image_and_a_mask_of_the_strokes():
    from gouache.server.ui.generate import editor_image_and_mask

    background = Image.new("RGBA", (64, 64), (10, 20, 30, 255))
    strokes = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    strokes.paste((255, 255, 255, 255), (16, 16, 32, 32))
    image, mask = editor_image_and_mask({"background": background, "layers": [strokes], "composite": None})
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (10, 20, 30)
    assert mask.getbbox() == (16, 16, 32, 32) and mask.getpixel((20, 20)) == 255


def test_infotext_fills_the_txt2img_fields():
    from gouache.server.ui.tools import request_values

    v = request_values(INFOTEXT)
    assert (v["prompt"], v["negative_prompt"], v["steps"], v["seed"]) == (PROMPT, "blurry", 3, 1234)
    assert (v["sampler"], v["scheduler"], v["cfg_scale"], v["width"], v["model"]) == ("Euler a", "Karras", 6.0, 64,
                                                                                      "gouache-tiny")
    assert request_values("just a prompt") == {"prompt": "just a prompt", "negative_prompt": ""}


def fake_training(release: threading.Event):
    """A stand-in for train_lora that writes what a run folder holds, then waits for ``release``."""

    def train(cfg, log):
        folder = Path(cfg.out_dir)
        (folder / "validation").mkdir(parents=True)
        # the grid first: the test waits for step 2 in loss.jsonl and then expects the grid to be there
        Image.new("RGB", (64, 64)).save(folder / "validation" / "step-000002.png")
        (folder / "loss.jsonl").write_text('{"step": 1, "loss": 0.5, "lr": 0.1}\n{"step": 2, "loss": 0.25, "lr": 0.1}\n')
        log("step 2")
        release.wait(10)
        log("done")
        path = folder / f"{cfg.name}.safetensors"
        path.write_bytes(b"lora")
        return path

    return train


def test_one_training_run_at_a_time_watched_from_its_folder(tmp_path):
    from gouache.server.training import TrainingBusy, TrainingRunner
    from gouache.server.ui.train import show
    from gouache.train.lora import LoraTrainConfig

    release = threading.Event()
    runner = TrainingRunner(lora_dir=tmp_path / "lora", train=fake_training(release))
    (tmp_path / "data").mkdir()
    cfg = LoraTrainConfig(dataset=tmp_path / "data", out_dir=tmp_path / "run", name="outline", steps=4)
    runner.start(cfg)
    deadline = time.monotonic() + 10
    while runner.status().step < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(TrainingBusy, match="outline"):
        runner.start(cfg)
    status = runner.status()
    assert status.running and status.validation.name == "step-000002.png"
    assert "step 2/4, loss 0.2500" in status.summary()
    summary, losses, grid, _, log, timer = show(runner)  # what the Train tab shows
    assert list(losses["loss"]) == [0.5, 0.25] and grid.endswith("step-000002.png") and "step 2" in log
    release.set()
    runner.join(10)
    status = runner.status()
    assert not status.running and status.result == tmp_path / "lora" / "outline.safetensors"
    assert status.result.read_bytes() == b"lora" and "<lora:outline:1>" in status.message


def test_training_refuses_a_missing_dataset(tmp_path):
    from gouache.errors import InvalidArgument
    from gouache.server.training import TrainingRunner
    from gouache.train.lora import LoraTrainConfig

    with pytest.raises(InvalidArgument, match="not a folder"):
        TrainingRunner(lora_dir=tmp_path).start(LoraTrainConfig(dataset=tmp_path / "nope", out_dir=tmp_path / "run"))


@pytest.mark.parametrize("mode", ["img2img", "inpaint", "upscale"])
def test_the_image_tabs_requests_run_on_the_queue_and_save_pngs(make_client, mode):
    from gouache.metadata.png import read_infotext
    from gouache.pipelines.request import Img2ImgRequest, InpaintRequest, UpscaleRequest
    from gouache.server.ui.generate import run_request

    client = make_client()
    server = client.app.state.gouache
    init = Image.new("RGB", (64, 64), (200, 30, 30))
    common = dict(prompt=PROMPT, steps=2, seed=3, init_image=init, denoising_strength=0.5)
    request = {"img2img": lambda: Img2ImgRequest(**common),
               "inpaint": lambda: InpaintRequest(**common, mask=Image.new("L", (64, 64), 255)),
               "upscale": lambda: UpscaleRequest(**common, scale=1.5, tile=64)}[mode]()
    *_, (progress, _, files, info) = run_request(server, "img2img", request)
    assert len(files) == 1 and Path(files[0]).parent.name == "img2img"
    assert read_infotext(files[0]) == info and "Denoising strength: 0.5" in info
    assert Image.open(files[0]).size == ((96, 96) if mode == "upscale" else (64, 64))


def test_the_cfg_slider_starts_at_the_models_default(live_server):
    import httpx

    base, _ = live_server(ui=True)
    config = httpx.get(f"{base}/config", timeout=30).json()
    sliders = [c["props"] for c in config["components"] if c.get("props", {}).get("label") == "CFG Scale"]
    assert len(sliders) == 4 and {p["value"] for p in sliders} == {5.0}  # gouache-tiny's, as the CLI and API use
