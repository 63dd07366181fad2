"""A bad request is a 4xx with a message, and the server goes on answering."""

import base64
import io

import pytest
from PIL import Image

SMALL = {"prompt": "a red circle", "steps": 2, "width": 64, "height": 64, "seed": 1}
API = "/sdapi/v1"


def b64_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


RED = b64_png(Image.new("RGB", (64, 64), "red"))
HUGE = b64_png(Image.new("L", (3000, 3000)))  # over the test server's max_pixels, cheap to encode

# (route, body or raw bytes, status, words the message must contain)
CASES = {
    "malformed JSON": ("txt2img", b'{"prompt": "a cat", "steps": ', 422, "json"),
    "not an object": ("txt2img", [1, 2], 422, "dictionary"),
    "wrong type": ("txt2img", {**SMALL, "steps": "many"}, 422, "integer"),
    "fractional steps": ("txt2img", {**SMALL, "steps": 2.5}, 422, "integer"),
    "huge size": ("txt2img", {**SMALL, "width": 100_000, "height": 100_000}, 422, "between 64 and 4096"),
    "size over the limit": ("txt2img", {**SMALL, "width": 2048, "height": 2048}, 422, "--max-pixels"),
    "size not a multiple of 8": ("txt2img", {**SMALL, "width": 65}, 422, "multiple of 8"),
    "batch over the limit": ("txt2img", {**SMALL, "batch_size": 8, "n_iter": 8}, 422, "--max-batch"),
    "zero steps": ("txt2img", {**SMALL, "steps": 0}, 422, "`steps`"),
    "unknown sampler": ("txt2img", {**SMALL, "sampler_name": "Nope"}, 422, "unknown sampler"),
    "unknown hires upscaler": ("txt2img", {**SMALL, "enable_hr": True, "hr_upscaler": "Nope"}, 422, "hr_upscaler"),
    "an unknown script": ("txt2img", {**SMALL, "script_name": "prompts from file"}, 422, "is not a script gouache has"),
    "path traversal in the model": ("txt2img", {**SMALL, "override_settings": {"sd_model_checkpoint": "../../etc/passwd"}},
                                    422, "is a path"),
    "absolute path as the model": ("txt2img", {**SMALL, "override_settings": {"sd_model_checkpoint": "/etc/passwd"}},
                                   422, "is a path"),
    "unknown model": ("txt2img", {**SMALL, "override_settings": {"sd_model_checkpoint": "nope.safetensors"}},
                      422, "unknown model"),
    "token merging past its range": ("txt2img", {**SMALL, "override_settings": {"token_merging_ratio": 0.9}},
                                     422, "tome_ratio"),
    "a DeepCache interval that is not whole": ("txt2img", {**SMALL, "override_settings": {"deepcache_interval": "3"}},
                                               422, "deepcache_interval"),
    "no init image": ("img2img", SMALL, 422, "init_images"),
    "base64 that is not an image": ("img2img", {**SMALL, "init_images": [base64.b64encode(b"hello").decode()]},
                                    422, "not an image"),
    "not base64": ("img2img", {**SMALL, "init_images": ["%%%not base64%%%"]}, 422, "base64"),
    "a URL": ("img2img", {**SMALL, "init_images": ["http://127.0.0.1/x.png"]}, 422, "URL"),
    "an image over the limit": ("img2img", {**SMALL, "init_images": [HUGE]}, 413, "--max-pixels"),
    "a mask that is not an image": ("img2img", {**SMALL, "init_images": [RED], "mask": "aGVsbG8="}, 422, "mask"),
    "an all-black mask": ("img2img", {**SMALL, "init_images": [RED], "mask": b64_png(Image.new("L", (64, 64)))},
                          422, "all black"),
    "png-info of no image": ("png-info", {"image": "aGVsbG8="}, 422, "not an image"),
    "options: path as checkpoint": ("options", {"sd_model_checkpoint": "../models/x.safetensors"}, 422, "is a path"),
    "options: bad value": ("options", {"CLIP_stop_at_last_layers": "two"}, 422, "CLIP_stop_at_last_layers"),
}


@pytest.fixture(scope="module")
def limited(tiny_loader, tmp_path_factory):
    from fastapi.testclient import TestClient

    from gouache.server.app import create_app
    from gouache.server.config import ServerConfig

    config = ServerConfig(out=str(tmp_path_factory.mktemp("out")), max_pixels=1024 * 1024, max_batch=16, max_body_mb=1,
                          ui=False)
    with TestClient(create_app(config, tiny_loader), base_url="http://127.0.0.1:7860") as client:
        yield client


@pytest.mark.parametrize("case", CASES)
def test_bad_requests_answer_4xx_with_a_message(limited, case):
    route, body, status, words = CASES[case]
    if isinstance(body, bytes):
        r = limited.post(f"{API}/{route}", content=body, headers={"content-type": "application/json"})
    else:
        r = limited.post(f"{API}/{route}", json=body)
    assert r.status_code == status, r.text
    assert words.lower() in r.text.lower()
    assert limited.get(f"{API}/progress").status_code == 200  # still answering


def test_a_body_over_the_limit_is_413(limited):
    r = limited.post(f"{API}/txt2img", json={**SMALL, "prompt": "x" * (2 << 20)})
    assert r.status_code == 413 and "--max-body-mb" in r.text


def test_a_streamed_body_over_the_limit_is_413(limited):
    def chunks():
        yield b'{"prompt": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    r = limited.post(f"{API}/txt2img", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_infotext_fills_what_the_body_leaves_out(limited):
    import json

    text = "a blue square\nSteps: 3, Sampler: Euler a, CFG scale: 5, Seed: 7, Size: 64x64, Model: gouache-tiny"
    r = limited.post(f"{API}/txt2img", json={"infotext": text, "steps": 2})
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert (info["prompt"], info["steps"], info["seed"], info["sampler_name"]) == ("a blue square", 2, 7, "Euler a")
    assert "warnings" not in info  # the text records no dtype or attention backend


@pytest.mark.parametrize("recorded,warnings", [
    (", Dtype: fp32, Attention: gouache", None),
    (", Dtype: bf16, Attention: gouache", ["the infotext was made with dtype bf16; this run uses fp32: "
                                           "the images may differ in their last bits"]),
])
def test_infotext_with_another_dtype_warns_in_the_info(limited, recorded, warnings):
    import json

    text = "a blue square\nSteps: 2, Sampler: Euler a, CFG scale: 5, Seed: 7, Size: 64x64" + recorded
    r = limited.post(f"{API}/txt2img", json={"infotext": text})
    assert r.status_code == 200, r.text
    assert json.loads(r.json()["info"]).get("warnings") == warnings
