"""The /sdapi/v1 routes through FastAPI's TestClient: A1111's shapes, what a user gets back."""

import base64
import io
import json

import pytest
from PIL import Image

SMALL = {"prompt": "a red circle on a blue background", "steps": 2, "width": 64, "height": 64, "seed": 1}
API = "/sdapi/v1"


def b64_png(image: Image.Image, data_url: bool = False) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    text = base64.b64encode(buffer.getvalue()).decode()
    return f"data:image/png;base64,{text}" if data_url else text


def decode(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


def test_txt2img_answers_a1111s_shape_with_png_metadata(client):
    r = client.post(f"{API}/txt2img", json=SMALL)
    assert r.status_code == 200, r.text
    body = r.json()
    image = decode(body["images"][0])
    assert image.format == "PNG" and image.size == (64, 64)
    info = json.loads(body["info"])
    assert image.info["parameters"] == info["infotexts"][0]
    assert "Seed: 1," in info["infotexts"][0] and "Model: gouache-tiny" in info["infotexts"][0]
    assert (info["seed"], info["all_seeds"], info["sampler_name"], info["index_of_first_image"]) == (1, [1], "DPM++ 2M", 0)
    # parameters: the request, with what it left to the model as used (gouache-tiny's CFG 5)
    p = body["parameters"]
    assert (p["steps"], p["cfg_scale"], p["n_iter"], p["send_images"]) == (2, 5.0, 1, True)


def test_a_prompt_alone_gets_the_models_defaults_as_everywhere(client):
    r = client.post(f"{API}/txt2img", json={"prompt": "a red circle on a blue background", "seed": 3})
    assert r.status_code == 200, r.text
    text = json.loads(r.json()["info"])["infotexts"][0]
    assert "Steps: 20, Sampler: DPM++ 2M" in text and "CFG scale: 5.0" in text and "Size: 64x64" in text
    p = r.json()["parameters"]
    assert (p["steps"], p["cfg_scale"], p["width"], p["height"]) == (20, 5.0, 64, 64)
    explicit = client.post(f"{API}/txt2img", json={"prompt": "a circle", "steps": 2, "cfg_scale": 7, "width": 72,
                                                   "height": 64, "sampler_name": "Euler"}).json()
    assert "Steps: 2, Sampler: Euler, CFG scale: 7.0" in json.loads(explicit["info"])["infotexts"][0]


def test_a_batch_comes_after_its_grid(client):
    body = client.post(f"{API}/txt2img", json={**SMALL, "batch_size": 2}).json()
    info = json.loads(body["info"])
    assert len(body["images"]) == 3 and info["index_of_first_image"] == 1
    assert decode(body["images"][0]).size == (128, 64)
    assert info["all_seeds"] == [1, 2]


def test_real_clients_extra_fields_and_nulls_are_accepted(client):
    extra = {"scheduler": "karras", "alwayson_scripts": {"ADetailer": {"args": [False]}}, "script_args": [],
             "script_name": None, "restore_faces": False, "tiling": False, "eta": 1.0, "s_noise": 1, "styles": [],
             "sampler_name": "DPM++ 2M", "sampler_index": "Euler a", "hr_upscaler": "R-ESRGAN 4x+", "seed": "",
             "override_settings": {"sd_vae": "Automatic"}, "something_new": {"a": 1}, "cfg_scale": None}
    r = client.post(f"{API}/txt2img", json={**SMALL, **extra})
    assert r.status_code == 200, r.text
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in json.loads(r.json()["info"])["infotexts"][0]


def test_approximations_come_from_override_settings_and_options(client):
    body = {**SMALL, "override_settings": {"token_merging_ratio": 0.5, "deepcache_interval": 2, "cfg_truncation": 0.5}}
    r = client.post(f"{API}/txt2img", json=body)
    assert r.status_code == 200, r.text
    text = json.loads(r.json()["info"])["infotexts"][0]
    assert "Token merging ratio: 0.5" in text and "DeepCache interval: 2" in text and "CFG truncation: 0.5" in text
    assert client.post(f"{API}/options", json={"token_merging_ratio": 0.25}).status_code == 200
    try:
        text = json.loads(client.post(f"{API}/txt2img", json=SMALL).json()["info"])["infotexts"][0]
        assert "Token merging ratio: 0.25" in text
    finally:
        client.post(f"{API}/options", json={"token_merging_ratio": 0.0})


def test_send_images_false_and_save_images(client, tmp_path):
    r = client.post(f"{API}/txt2img", json={**SMALL, "send_images": False, "save_images": True})
    assert r.status_code == 200 and r.json()["images"] == []
    saved = list((tmp_path / "outputs" / "txt2img").glob("*.png"))
    assert [p.name for p in saved] == ["00000-1.png"]


def test_hires_fix(client):
    r = client.post(f"{API}/txt2img", json={**SMALL, "enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Latent",
                                            "denoising_strength": 0.5})
    assert r.status_code == 200, r.text
    assert decode(r.json()["images"][0]).size == (96, 96)
    assert "Hires upscale: 1.5" in json.loads(r.json()["info"])["infotexts"][0]


@pytest.mark.parametrize("data_url", [False, True])
def test_img2img_takes_base64_or_a_data_url(client, data_url):
    init = Image.new("RGB", (64, 64), (200, 30, 30))
    r = client.post(f"{API}/img2img", json={**SMALL, "init_images": [b64_png(init, data_url)], "denoising_strength": 0.5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert decode(body["images"][0]).size == (64, 64)
    assert body["parameters"]["init_images"] is None  # include_init_images is false
    assert "Denoising strength: 0.5" in json.loads(body["info"])["infotexts"][0]


def test_img2img_with_a_mask_inpaints_only_there(client):
    init = Image.new("RGB", (64, 64), (200, 30, 30))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    r = client.post(f"{API}/img2img", json={**SMALL, "init_images": [b64_png(init, True)], "mask": b64_png(mask),
                                            "mask_blur": 0, "inpainting_fill": 1, "inpaint_full_res": False})
    assert r.status_code == 200, r.text
    out = decode(r.json()["images"][0]).convert("RGB")
    assert out.getpixel((2, 2)) == (200, 30, 30)  # outside the mask: the input's pixels
    assert "Masked content: original" in json.loads(r.json()["info"])["infotexts"][0]


def test_listings(client):
    samplers = client.get(f"{API}/samplers").json()
    assert {"name": "Euler a", "aliases": ["euler_ancestral", "k_euler_a", "euler_a"],
            "options": {"scheduler": "EulerAncestralDiscreteScheduler"}} in samplers
    models = client.get(f"{API}/sd-models").json()
    assert models[0]["model_name"] == "gouache-tiny" and models[0]["title"].startswith("gouache-tiny [")
    from gouache.adapters.lora import list_loras

    assert [x["name"] for x in client.get(f"{API}/loras").json()] == list(list_loras())  # the shipped examples
    embeddings = client.get(f"{API}/embeddings").json()
    assert embeddings["loaded"]["<sks>"] == {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
                                           "shape": 64, "vectors": 2}
    assert embeddings["skipped"] == {}
    assert [s["label"] for s in client.get(f"{API}/schedulers").json()][:2] == ["Automatic", "Uniform"]


def test_options_switch_checkpoint_and_settings(client):
    options = client.get(f"{API}/options").json()
    assert options["sd_model_checkpoint"].startswith("gouache-tiny")
    r = client.post(f"{API}/options", json={"sd_model_checkpoint": options["sd_model_checkpoint"],
                                            "CLIP_stop_at_last_layers": 2, "unknown_option": 1})
    assert r.status_code == 200 and r.json() is None
    assert client.get(f"{API}/options").json()["CLIP_stop_at_last_layers"] == 2
    info = json.loads(client.post(f"{API}/txt2img", json=SMALL).json()["info"])
    assert info["clip_skip"] == 2 and "Clip skip: 2" in info["infotexts"][0]


def test_png_info_reads_back_the_parameters(client):
    image = client.post(f"{API}/txt2img", json=SMALL).json()["images"][0]
    r = client.post(f"{API}/png-info", json={"image": image})
    assert r.status_code == 200
    p = r.json()["parameters"]
    assert (p["Prompt"], p["Steps"], p["Seed"], p["Size-1"], p["Size-2"]) == (SMALL["prompt"], 2, 1, 64, 64)


def test_progress_when_idle_and_interrupt(client):
    r = client.get(f"{API}/progress")
    body = r.json()
    assert (body["progress"], body["eta_relative"], body["current_image"], body["state"]["job_count"]) == (0, 0, None, 0)
    assert client.post(f"{API}/interrupt").status_code == 200


def test_docs_and_openapi(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v1/progress", "/sdapi/v1/options"} <= set(paths)


def test_basic_auth_guards_every_route(make_client):
    client = make_client(api_auth="ann:secret")
    for path in (f"{API}/samplers", "/docs", "/openapi.json"):
        r = client.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert client.get(f"{API}/samplers", auth=("ann", "wrong")).status_code == 401
    assert client.get(f"{API}/samplers", auth=("ann", "secret")).status_code == 200


def _controlnet(unit: dict) -> dict:
    return {**SMALL, "steps": 4, "alwayson_scripts": {"controlnet": {"args": [unit]}}}


def test_controlnet_units_of_sd_webui_controlnets_api_are_used(client):
    from gouache.tiny.shapes import ShapeSpec, draw

    shape = b64_png(draw(ShapeSpec("white", "square", "black", 20, 40, 24)))
    unit = {"enabled": True, "module": "canny", "model": "gouache-tiny-edges [0000abcd]", "weight": 1.0,
            "image": shape, "guidance_start": 0.0, "guidance_end": 0.5, "control_mode": 0, "pixel_perfect": False}
    r = client.post(f"{API}/txt2img", json=_controlnet(unit))
    assert r.status_code == 200, r.text
    infotext = json.loads(r.json()["info"])["infotexts"][0]
    assert 'ControlNet 0: "Module: canny, Model: gouache-tiny-edges' in infotext and "Guidance End: 0.5" in infotext
    off = client.post(f"{API}/txt2img", json=_controlnet({**unit, "enabled": False})).json()
    assert "ControlNet" not in json.loads(off["info"])["infotexts"][0]


@pytest.mark.parametrize(
    "unit,status,words",
    [
        ({"module": "cany", "image": "x"}, 422, "image"),
        ({"module": "canny", "model": "../../etc/passwd", "image": ""}, 422, "not a path"),
        ({"module": "canny", "weight": "heavy"}, 422, "must be numbers"),
        ({"module": "canny"}, 422, "image"),
    ],
)
def test_bad_controlnet_units_are_4xx_with_a_message(client, unit, status, words):
    r = client.post(f"{API}/txt2img", json=_controlnet(unit))
    assert r.status_code == status and words in r.text, r.text
