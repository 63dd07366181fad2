"""The API as an attacker would use it, against a real uvicorn server: paths in metadata text are
never opened, megabyte inputs are answered at once, unbounded requests are refused, and web pages
of other sites cannot drive a loopback server."""

import base64
import io
import json
import time

import httpx
import pytest
from PIL import Image, PngImagePlugin

API = "/sdapi/v1"
SMALL = {"prompt": "a red circle on a blue background", "steps": 2, "width": 64, "height": 64, "seed": 1}


def png_b64(image: Image.Image | None = None, parameters: str | None = None) -> str:
    image = image or Image.new("RGB", (64, 64), (200, 30, 30))
    info = PngImagePlugin.PngInfo()
    if parameters is not None:
        info.add_text("parameters", parameters)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


# -- 1. no path from a request is opened ------------------------------------------------------------


@pytest.fixture
def bait(tmp_path):
    """Files and folders outside every folder the server may read, which metadata text names."""
    folder = tmp_path / "bait"
    folder.mkdir()
    Image.new("RGB", (64, 64), "white").save(folder / "control.png")
    net = folder / "evil-controlnet"
    net.mkdir()
    (net / "config.json").write_text("{}")
    (net / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 16)
    return folder


def _unit_text(bait) -> str:
    return (f'ControlNet 0: "Module: canny, Model: {bait / "evil-controlnet"}, Weight: 1, Resize Mode: Crop and Resize, '
            f'Guidance Start: 0, Guidance End: 1, Image: {bait / "control.png"}"')


def test_paths_in_an_infotext_field_are_never_opened(live_server, bait, opened_paths):
    base, _ = live_server()
    infotext = (f"a red circle on a blue background\nSteps: 2, Sampler: Euler, CFG scale: 5, Seed: 3, Size: 64x64, "
                f"Model: gouache-tiny, Refiner: {bait / 'evil-controlnet'}, {_unit_text(bait)}")
    r = httpx.post(f"{base}{API}/txt2img", json={"infotext": infotext, "prompt": ""}, timeout=60)
    assert r.status_code == 200, r.text
    text = json.loads(r.json()["info"])["infotexts"][0]
    assert "Seed: 3" in text and "ControlNet" not in text and "Refiner" not in text  # parameters only
    assert not [e for e in opened_paths() if str(bait) in e[1]]


def test_an_infotext_does_not_replace_the_bodys_controlnet_units(live_server, bait, opened_paths):
    base, _ = live_server()
    unit = {"module": "canny", "model": "gouache-tiny-edges", "image": png_b64(), "weight": 0.5}
    infotext = f"a circle\nSteps: 2, Sampler: Euler, Seed: 3, Size: 64x64, {_unit_text(bait)}"
    r = httpx.post(f"{base}{API}/txt2img", timeout=60,
                   json={**SMALL, "infotext": infotext, "alwayson_scripts": {"controlnet": {"args": [unit]}}})
    assert r.status_code == 200, r.text
    text = json.loads(r.json()["info"])["infotexts"][0]
    assert "Weight: 0.5" in text and "gouache-tiny-edges" in text and str(bait) not in text
    assert not [e for e in opened_paths() if str(bait) in e[1]]


def test_png_info_reads_paths_as_text_only(live_server, bait, opened_paths):
    base, _ = live_server()
    parameters = f"a circle\nSteps: 2, Sampler: Euler, Seed: 3, Size: 64x64, {_unit_text(bait)}"
    r = httpx.post(f"{base}{API}/png-info", json={"image": png_b64(parameters=parameters)}, timeout=30)
    assert r.status_code == 200 and r.json()["parameters"]["Seed"] == 3
    assert not [e for e in opened_paths() if str(bait) in e[1]]


@pytest.mark.parametrize("model", ["../../etc/passwd", "/etc/passwd", "C:\\x", "~/.ssh/id_rsa", "evil-controlnet"])
def test_controlnet_models_are_names_from_the_listing(live_server, bait, opened_paths, model, monkeypatch):
    monkeypatch.chdir(bait)  # "evil-controlnet" exists relative to the server's folder: still not opened
    base, _ = live_server()
    unit = {"module": "canny", "model": model, "image": png_b64()}
    r = httpx.post(f"{base}{API}/txt2img", json={**SMALL, "alwayson_scripts": {"controlnet": {"args": [unit]}}})
    assert r.status_code == 422 and "unknown ControlNet" in r.json()["detail"]
    assert not [e for e in opened_paths() if str(bait) in e[1] or "passwd" in e[1]]


# -- 2. bounded work --------------------------------------------------------------------------------

MB = 2**20
BIG = {
    "prompt of words": {"prompt": "a red circle " * (MB // 13)},
    "prompt of whitespace": {"prompt": "a" + " " * MB + "b"},
    "prompt of brackets": {"prompt": "(" * MB},
    "prompt of edits": {"prompt": "[a:" * (MB // 3)},
    "prompt of ANDs": {"prompt": "a AND " * (MB // 6)},
    "negative prompt": {"negative_prompt": "\t " * (MB // 2)},
    "infotext, a long parameters line": {"infotext": "a\nSteps: 2, Seed: 1, " + "Word " * (MB // 5)},
    "infotext of whitespace": {"infotext": "a\n" + " " * MB + "Steps: 2, Seed: 1, Size: 64x64"},
    "infotext of keys": {"infotext": "a\n" + "Key: v, " * (MB // 8)},
    "infotext of quotes": {"infotext": 'a\nSteps: "' + "\\\"" * (MB // 2)},
    "infotext, a long prompt": {"infotext": "(x:1." + "1" * MB + ")\nSteps: 2, Seed: 1, Size: 64x64"},
}


@pytest.mark.parametrize("case", BIG)
def test_megabyte_inputs_are_answered_within_a_second(live_server, case):
    base, _ = live_server()
    with httpx.Client(base_url=base, timeout=30) as client:
        client.get(f"{API}/progress")  # the connection is up before the clock starts
        start = time.perf_counter()
        r = client.post(f"{API}/txt2img", json={**SMALL, **BIG[case]})
        elapsed = time.perf_counter() - start
    assert r.status_code in (413, 422), r.text[:300]
    assert elapsed < 1.0, f"{case}: {elapsed:.2f} s"


@pytest.mark.parametrize("text", ["a\nSteps: 2, Seed: 1, " + "Word " * (MB // 5), "a\n" + "Key: v, " * (MB // 8),
                                  " " * MB, "a\nSteps: 2, " + "x" * MB + ": 1, Seed: 1", "(" * MB + "\nSteps: 1, a: 1, b: 2"])
def test_png_info_reads_a_megabyte_of_parameters_within_a_second(live_server, text):
    base, _ = live_server()
    image = png_b64(Image.new("RGB", (8, 8)), parameters=text)
    with httpx.Client(base_url=base, timeout=30) as client:
        client.get(f"{API}/progress")
        start = time.perf_counter()
        r = client.post(f"{API}/png-info", json={"image": image})
        elapsed = time.perf_counter() - start
    assert r.status_code == 200, r.text[:300]
    assert elapsed < 1.0, f"{elapsed:.2f} s"


def test_thousands_of_controlnet_units_are_refused_before_any_work(live_server):
    base, _ = live_server()
    unit = {"module": "canny", "model": "gouache-tiny-edges", "image": png_b64()}
    start = time.perf_counter()
    r = httpx.post(f"{base}{API}/txt2img", json={**SMALL, "alwayson_scripts": {"controlnet": {"args": [unit] * 5000}}},
                   timeout=30)
    assert r.status_code == 422 and "5000 ControlNet units" in r.json()["detail"]
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("body,words", [
    ({"steps": 151}, "--max-steps"),
    ({"enable_hr": True, "hr_second_pass_steps": 500, "hr_scale": 1.5}, "hr_second_pass_steps"),
    ({"prompt": "a AND " * 40}, "AND"),
    ({"batch_size": 8, "n_iter": 4}, "--max-batch"),
    ({"width": 2048, "height": 2048, "batch_size": 16}, "--max-job-pixels"),
])
def test_limits_on_one_jobs_work(make_client, body, words):
    client = make_client(max_job_pixels=8 * 2048 * 2048, max_batch=16)
    r = client.post(f"{API}/txt2img", json={**SMALL, **body})
    assert r.status_code == 422 and words in r.json()["detail"], r.text


# -- 4. browser safety ------------------------------------------------------------------------------


def test_a_web_page_of_another_site_cannot_drive_a_loopback_server(live_server):
    base, _ = live_server()
    evil = {"Origin": "https://evil.example"}
    r = httpx.post(f"{base}{API}/interrupt", headers=evil)
    assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
    r = httpx.post(f"{base}{API}/txt2img", headers={**evil, "content-type": "application/json"}, content=json.dumps(SMALL))
    assert r.status_code == 403
    # a form POST (no preflight needed) is not JSON: refused even without an Origin
    r = httpx.post(f"{base}{API}/interrupt", headers={"content-type": "text/plain"}, content="{}")
    assert r.status_code == 415
    # no CORS headers for other sites' scripts, even on reads
    r = httpx.get(f"{base}{API}/options", headers=evil)
    assert r.status_code == 200 and not [k for k in r.headers if k.lower().startswith("access-control")]
    # the server's own page and clients without a browser work
    assert httpx.post(f"{base}{API}/interrupt", headers={"Origin": base}).status_code == 200
    assert httpx.post(f"{base}{API}/interrupt").status_code == 200


def test_dns_rebinding_a_loopback_server_is_refused(live_server):
    base, _ = live_server()
    r = httpx.get(f"{base}{API}/options", headers={"Host": "attacker.example:7860"})
    assert r.status_code == 421 and "loopback" in r.json()["detail"]
    assert httpx.get(f"{base}{API}/options", headers={"Host": "localhost:7860"}).status_code == 200


def test_cors_allow_origins_opts_sites_in(live_server):
    base, _ = live_server(cors_allow_origins="https://app.example")
    r = httpx.post(f"{base}{API}/interrupt", headers={"Origin": "https://app.example"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
    assert httpx.post(f"{base}{API}/interrupt", headers={"Origin": "https://evil.example"}).status_code == 403


def test_credentials_from_a_file(live_server, tmp_path):
    secret = tmp_path / "auth"
    secret.write_text("# users\nalice:s3cret\n")
    base, _ = live_server(api_auth_file=str(secret))
    assert httpx.get(f"{base}{API}/options").status_code == 401
    assert httpx.get(f"{base}{API}/options", auth=("alice", "s3cret")).status_code == 200


def test_credentials_from_the_environment(monkeypatch, run):
    from gouache.cli import serve

    monkeypatch.setenv("GOUACHE_API_AUTH", "nocolon")  # a bad value is a one-line error before anything starts
    code, out, err = run("serve", "--port", "1")
    assert code == 1 and "--api-auth" in err and "Traceback" not in err
    assert serve.FLAGS["api_auth_file"] == "--api-auth-file"
