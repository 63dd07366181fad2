"""Masks from words and background removal over real HTTP: img2img's ``mask_prompt`` (A1111's body
plus gouache's fields), sd-webui-rembg's ``POST /rembg``, ``GET /sdapi/v1/segmenters``; every job on
the queue, every bad input a 4xx with a message. The segmenter is a tiny random CLIPSeg, so the
tests pick thresholds from its scores and check the plumbing (which pixels were kept), not quality."""

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

API = "/sdapi/v1"
WORDS = "the red circle"


def picture() -> Image.Image:
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).ellipse((16, 16, 48, 48), fill="red")
    return image


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decoded(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    assert image.format == "PNG"
    return image


@pytest.fixture(scope="module")
def scores(tiny_segmenter):
    """The tiny segmenter's probabilities for WORDS and for "the background" on :func:`picture`."""
    from gouache.vision.segment import load_segmenter

    with load_segmenter(tiny_segmenter) as seg:
        return {words: seg.probabilities(picture(), words) for words in (WORDS, "the background")}


@pytest.fixture(scope="module")
def server(tiny_segmenter, tiny_loader, tmp_path_factory, serve):
    from gouache.server.app import create_app
    from gouache.server.config import ServerConfig

    config = ServerConfig(out=str(tmp_path_factory.mktemp("out")), ui=False, max_pixels=128 * 128)
    return serve(create_app(config, tiny_loader))


def inpaint_body(**extra) -> dict:
    return {"init_images": [b64(picture())], "prompt": "a blue square", "steps": 2, "seed": 5, "mask_blur": 0,
            "inpaint_full_res": False, "denoising_strength": 0.9, "mask_refine": 0, **extra}  # the raw scores' mask


@pytest.mark.parametrize("invert", [0, 1])
def test_mask_prompt_repaints_where_the_words_point(server, tiny_segmenter, scores, invert):
    """The pixels outside the words' mask (inverted with ``inpainting_mask_invert``) are the input's,
    exactly; inside, the image is repainted; the infotext records the mask's words and segmenter."""
    threshold = float(np.median(scores[WORDS]))
    body = inpaint_body(mask_prompt=WORDS, mask_threshold=threshold, segmenter=tiny_segmenter,
                        inpainting_mask_invert=invert)
    r = httpx.post(f"{server}{API}/img2img", json=body, timeout=300)
    assert r.status_code == 200, r.text
    (text,) = r.json()["images"]
    out = np.asarray(decoded(text).convert("RGB"), np.int16)
    masked = scores[WORDS] > threshold
    if invert:
        masked = ~masked
    original = np.asarray(picture(), np.int16)
    assert np.array_equal(out[~masked], original[~masked])
    assert np.abs(out[masked] - original[masked]).max() > 20
    infotext = decoded(text).info["parameters"]
    assert f"Mask prompt: {WORDS}," in infotext and f"Segmenter: {tiny_segmenter}" in infotext
    assert f"Mask threshold: {threshold:g}" in infotext or f"Mask threshold: {threshold}" in infotext
    assert ("Mask invert: True" in infotext) == bool(invert)


def test_without_a_segmenter_the_servers_default_is_used_and_recorded(server, scores):
    from gouache.server.catalog import segmenter_names

    body = inpaint_body(mask_prompt=WORDS, mask_threshold=float(np.median(scores[WORDS])))
    r = httpx.post(f"{server}{API}/img2img", json=body, timeout=300)
    assert r.status_code == 200, r.text
    assert f"Segmenter: {segmenter_names()[0]}" in decoded(r.json()["images"][0]).info["parameters"]


@pytest.mark.parametrize("extra, message", [
    ({"mask": b64(Image.new("L", (64, 64), 255))}, "give a `mask` or a `mask_prompt`, not both"),
    ({"segmenter": "no-such-segmenter"}, "no segmenter 'no-such-segmenter' on this server"),
    ({"segmenter": "rembg:u2net"}, "needs the rembg package and u2net.onnx"),
    ({"segmenter": "../segmenters/tiny-clipseg"}, "is a path; name a segmenter"),
    ({"mask_threshold": 1.5}, "`mask_threshold` must be a number from 0 to 0.999"),
    ({"mask_dilate": -1}, "`mask_dilate` must be between 0 and"),
    ({"mask_prompt": "x" * 301}, "at most 300 characters"),
    ({"inpainting_mask_invert": 2}, "`inpainting_mask_invert` must be 0 or 1"),
    ({"keep_edges": 3}, "`keep_edges` must be a number from 0 to 2 (0: off), got 3"),
])
def test_bad_words_masks_are_4xx_with_a_message(server, extra, message):
    r = httpx.post(f"{server}{API}/img2img", json=inpaint_body(**{"mask_prompt": WORDS, **extra}), timeout=60)
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]


def test_keep_edges_adds_the_models_canny_unit_and_needs_a_mask(server, scores):
    """gouache's ``keep_edges`` (``edit background --keep-edges``) over the API: the model's default
    canny ControlNet on the init image, recorded in the infotext; without a mask it is a 422."""
    body = inpaint_body(mask_prompt="the background", mask_threshold=float(np.median(scores["the background"])),
                        keep_edges=0.7)
    r = httpx.post(f"{server}{API}/img2img", json=body, timeout=300)
    assert r.status_code == 200, r.text
    info = decoded(r.json()["images"][0]).info["parameters"]
    assert "ControlNet 0: " in info and "Module: canny" in info and "Weight: 0.7" in info
    r = httpx.post(f"{server}{API}/img2img", json={**inpaint_body(), "keep_edges": 1}, timeout=60)
    assert r.status_code == 422 and "give a `mask` or a `mask_prompt`, or leave keep_edges out" in r.json()["detail"]


def test_a_segmenter_path_is_refused_and_never_opened(server, gouache_home, tiny_segmenter, monkeypatch):
    """A real, loadable CLIPSeg folder named by its path: refused before any job is queued."""
    opened = []
    monkeypatch.setattr("gouache.vision.segment.load_segmenter", lambda *a, **k: opened.append(a))
    path = str(gouache_home / "segmenters" / tiny_segmenter)
    for route, body in ((f"{API}/img2img", inpaint_body(mask_prompt=WORDS, segmenter=path)),
                        ("/rembg", {"input_image": b64(picture()), "model": path})):
        r = httpx.post(f"{server}{route}", json=body, timeout=60)
        assert r.status_code == 422 and "is a path" in r.json()["detail"], r.text
    assert opened == []


def test_a_mask_that_matches_nothing_is_a_4xx_from_inside_the_job(server, tiny_segmenter, monkeypatch):
    monkeypatch.setattr("gouache.vision.segment.Segmenter.probabilities",
                        lambda self, image, words: np.full((image.height, image.width), 0.1, np.float32))
    r = httpx.post(f"{server}{API}/img2img", timeout=60,
                   json=inpaint_body(mask_prompt="the unicorn", segmenter=tiny_segmenter))
    assert r.status_code == 422, r.text
    assert "nothing in the image matches 'the unicorn' (best score 0.10, threshold 0.5)" in r.json()["detail"]


# -- POST /rembg ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("return_mask", [False, True])
def test_rembg_cuts_out_the_object_by_the_named_segmenter(server, tiny_segmenter, scores, return_mask):
    from gouache.vision.segment import DEFAULT_REFINE, alpha_matte, refine

    r = httpx.post(f"{server}/rembg", timeout=120, json={
        "input_image": b64(picture()), "model": tiny_segmenter, "return_mask": return_mask, "alpha_matting": False,
        "alpha_matting_foreground_threshold": 240, "alpha_matting_background_threshold": 10,
        "alpha_matting_erode_size": 10})
    assert r.status_code == 200, r.text
    image = decoded(r.json()["image"])
    alpha = alpha_matte(refine(picture(), scores["the background"], DEFAULT_REFINE))  # the edge refined, as always
    assert image.size == (64, 64) and image.mode == ("L" if return_mask else "RGBA")
    if return_mask:
        assert np.array_equal(np.asarray(image), np.asarray(alpha))
    else:
        assert np.array_equal(np.asarray(image.getchannel("A")), np.asarray(alpha))
        assert image.convert("RGB").tobytes() == picture().tobytes()


def test_rembg_without_a_model_uses_the_servers_default(server, tiny_segmenter, monkeypatch):
    from gouache.server.catalog import segmenter_names

    used = []
    original = __import__("gouache.vision.segment", fromlist=["load_segmenter"]).load_segmenter
    monkeypatch.setattr("gouache.vision.segment.load_segmenter",
                        lambda name=None, device="cpu": used.append(name) or original(name, device))
    r = httpx.post(f"{server}/rembg", json={"input_image": b64(picture())}, timeout=120)
    assert r.status_code == 200, r.text
    assert used == [segmenter_names()[0]]


@pytest.mark.parametrize("body, status, message", [
    ({"model": "u2net"}, 422, "rembg's model 'u2net' needs the rembg package and u2net.onnx"),
    ({"model": "rembg:isnet-anime"}, 422, "rembg's model 'isnet-anime' needs the rembg package"),
    ({"model": "None"}, 422, "asks for no background removal"),
    ({"model": "/etc/passwd"}, 422, "is a path"),
    ({"alpha_matting": True}, 422, "`alpha_matting` is not supported"),
    ({"input_image": ""}, 422, "`input_image` is missing"),
    ({"input_image": "not base64!"}, 422, "`input_image` is not valid base64"),
    ({"input_image": b64(Image.new("RGB", (256, 256)))}, 413, "over this server's limit of 16384"),
])
def test_bad_rembg_requests_are_4xx_with_a_message(server, tiny_segmenter, body, status, message):
    r = httpx.post(f"{server}/rembg", json={"input_image": b64(picture()), "model": tiny_segmenter, **body}, timeout=60)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]


def test_rembg_of_a_picture_that_is_all_background_is_a_4xx(server, tiny_segmenter, monkeypatch):
    monkeypatch.setattr("gouache.vision.segment.Segmenter.probabilities",
                        lambda self, image, words: np.ones((image.height, image.width), np.float32))
    r = httpx.post(f"{server}/rembg", json={"input_image": b64(picture()), "model": tiny_segmenter}, timeout=60)
    assert r.status_code == 422 and "finds no object" in r.json()["detail"], r.text


def test_rembg_names_a_rembg_model_by_its_own_name_when_installed(server, monkeypatch):
    """``u2net`` is ``rembg:u2net`` when rembg and u2net.onnx are there (stood in for: no rembg here)."""
    from gouache.vision.segment import Segmenter

    loaded = []
    monkeypatch.setattr("gouache.server.catalog._rembg_models", lambda: ["rembg:u2net"])
    monkeypatch.setattr("gouache.vision.segment._load_rembg",
                        lambda name: loaded.append(name) or Segmenter("rembg", f"rembg:{name}", object()))
    object_in_the_middle = np.ones((64, 64), np.float32)
    object_in_the_middle[16:48, 16:48] = 0.0
    monkeypatch.setattr("gouache.vision.segment.Segmenter.probabilities",
                        lambda self, image, words: object_in_the_middle)
    r = httpx.post(f"{server}/rembg", json={"input_image": b64(picture()), "model": "u2net", "return_mask": True},
                   timeout=60)
    assert r.status_code == 200, r.text
    assert loaded == ["u2net"]
    # the stand-in's square, its edge softened by the refinement but still at half height where it was
    box = decoded(r.json()["image"]).point(lambda v: 255 if v > 127 else 0).getbbox()
    assert all(abs(a - b) <= 1 for a, b in zip(box, (16, 16, 48, 48))), box


def test_segmenters_are_listed(server, tiny_segmenter):
    listed = httpx.get(f"{server}{API}/segmenters", timeout=30).json()
    assert {"name": tiny_segmenter, "kind": "clipseg", "default": listed[0]["name"] == tiny_segmenter} in listed
    assert [s["default"] for s in listed].count(True) == 1 and listed[0]["default"]


def test_webuiapi_rembg(server, tiny_segmenter):
    webuiapi = pytest.importorskip("webuiapi")
    rembg = webuiapi.RemBGInterface(webuiapi.WebUIApi(baseurl=f"{server}/sdapi/v1"))
    result = rembg.rembg(input_image=picture(), model=tiny_segmenter)
    assert result.image.mode == "RGBA" and result.image.size == (64, 64)
    with pytest.raises(RuntimeError, match="422"):  # its default, u2net, is rembg's: not installed here
        rembg.rembg(input_image=picture())


@pytest.mark.parametrize("route, body", [
    ("/rembg", {"input_image": b64(picture()), "model": "u" * 1_000_000}),
    (f"{API}/img2img", inpaint_body(mask_prompt=WORDS, segmenter="s" * 1_000_000)),
    (f"{API}/img2img", inpaint_body(mask_prompt="the " * 250_000)),
])
def test_megabyte_names_and_words_are_refused_at_once(server, route, body):
    import time

    with httpx.Client(base_url=server, timeout=30) as http:
        http.get(f"{API}/progress")  # the connection is up before the clock starts
        start = time.perf_counter()
        r = http.post(route, json=body)
    assert r.status_code in (413, 422), r.text[:300]
    assert time.perf_counter() - start < 1.0


def test_rembg_takes_json_only(server):
    """As /sdapi does: a form or text body is what another site's page could send without asking."""
    r = httpx.post(f"{server}/rembg", content=b'{"input_image": ""}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


def test_a_server_without_segmenters_says_how_to_install_one(server, monkeypatch):
    """The server's state, not the request, is wanting: a 500 with the remedy (as /interrogate
    without a CLIP), before any job is queued."""
    monkeypatch.setattr("gouache.server.catalog.segmenter_names", lambda: [])
    for route, body in ((f"{API}/img2img", inpaint_body(mask_prompt=WORDS)), ("/rembg", {"input_image": b64(picture())})):
        r = httpx.post(f"{server}{route}", json=body, timeout=60)
        assert r.status_code == 500 and "this server has no segmenter: put a CLIPSeg folder in" in r.json()["detail"]
