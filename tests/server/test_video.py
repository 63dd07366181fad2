"""The A1111 AnimateDiff extension's API (alwayson_scripts.AnimateDiff) on /txt2img and /img2img."""

import base64
import io
import json

import pytest
from PIL import Image, ImageSequence


API = "/sdapi/v1"
BODY = {"prompt": "a red circle on a blue background", "steps": 2, "seed": 4}


@pytest.fixture(scope="module", autouse=True)
def layouts(gouache_home, motion_layouts):
    return motion_layouts.write_layouts(gouache_home / "motion")


def unit(**args):
    return {"alwayson_scripts": {"AnimateDiff": {"args": [{"enable": True, "model": "mm_tiny.safetensors",
                                                            "video_length": 4, **args}]}}}


def test_txt2img_with_animatediff_answers_the_video_first(client):
    r = client.post(f"{API}/txt2img", json={**BODY, **unit(format=["GIF", "Frame"], fps=10)})
    assert r.status_code == 200, r.text
    images = r.json()["images"]
    gif = Image.open(io.BytesIO(base64.b64decode(images[0])))
    assert gif.format == "GIF" and gif.n_frames == 4 and gif.info["duration"] == 100
    info = json.loads(r.json()["info"])
    assert "Frames: 4, FPS: 10, Motion module: mm_tiny" in info["infotexts"][0]
    frames = [Image.open(io.BytesIO(base64.b64decode(b))) for b in images[1:]]
    assert len(frames) == 4 and frames[0].format == "PNG"
    assert [f.convert("RGB").tobytes() for f in ImageSequence.Iterator(gif)][0] is not None


def test_mp4_and_a_switched_off_unit(client):
    r = client.post(f"{API}/txt2img", json={**BODY, **unit(format=["MP4"])})
    assert r.status_code == 200, r.text
    assert base64.b64decode(r.json()["images"][0])[4:8] == b"ftyp"
    off = unit()
    off["alwayson_scripts"]["AnimateDiff"]["args"][0]["enable"] = False
    r = client.post(f"{API}/txt2img", json={**BODY, **off})
    assert Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]))).format == "PNG"  # an image, as without it


def test_img2img_starts_the_clip_from_the_picture(client):
    picture = Image.new("RGB", (64, 64), (0, 200, 0))
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    body = {**BODY, "init_images": [base64.b64encode(buf.getvalue()).decode()], "denoising_strength": 0.5,
            **unit(format=["WEBP"])}
    r = client.post(f"{API}/img2img", json=body)
    assert r.status_code == 200, r.text
    webp = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))
    assert webp.format == "WEBP" and webp.n_frames == 4
    assert "Init frames: first" in json.loads(r.json()["info"])["infotexts"][0]


@pytest.mark.parametrize("args,message", [
    ({"model": "/etc/passwd"}, "unknown motion adapter"),
    ({"model": "no-such-mm"}, "unknown motion adapter 'no-such-mm'"),
    ({"video_length": 0}, "`frames` must be between 1 and 256"),
    ({"video_length": 100000}, "`frames` must be between 1 and 256"),
    ({"format": ["AVI"]}, "gouache writes GIF, MP4, WEBP, PNG and Frame"),
    ({"video_source": "/tmp/x.mp4"}, "opens no files"),
    ({"stride": 2}, "`alwayson_scripts.AnimateDiff.args[0].stride` must be 1"),
    ({"closed_loop": "X"}, "closed_loop"),
    ({"freeinit_enable": "yes"}, "`alwayson_scripts.AnimateDiff.args[0].freeinit_enable` must be true or false"),
    ({"freeinit_enable": True, "freeinit_iters": 9}, "`free_init` must be between 0 and 5"),
    ({"freeinit_enable": True, "freeinit_filter": "sinc"}, "`free_init_filter` must be one of"),
])
def test_bad_units_are_a_4xx_with_one_line(client, args, message):
    r = client.post(f"{API}/txt2img", json={**BODY, **unit(**args)})
    assert 400 <= r.status_code < 500, r.text
    assert message in r.text and "\\n" not in r.text


def test_freeinit_arguments_as_the_extension_sends_them(client):
    r = client.post(f"{API}/txt2img", json={**BODY, **unit(freeinit_enable=True, freeinit_iters=2,
                                                            freeinit_filter="box", freeinit_ds=0.5, freeinit_dt=0.5)})
    assert r.status_code == 200, r.text
    text = json.loads(r.json()["info"])["infotexts"][0]
    assert "FreeInit: 2, FreeInit filter: box, FreeInit ds: 0.5, FreeInit dt: 0.5" in text
    off = client.post(f"{API}/txt2img", json={**BODY, **unit(freeinit_enable=False, freeinit_iters=4)})
    assert off.status_code == 200 and "FreeInit" not in json.loads(off.json()["info"])["infotexts"][0]


def test_freeinit_passes_count_against_the_servers_steps(make_client):
    client = make_client(max_steps=5)
    r = client.post(f"{API}/txt2img", json={**BODY, "steps": 2, **unit(freeinit_enable=True, freeinit_iters=3)})
    assert r.status_code == 422 and "FreeInit's 3 passes of 2 steps are 6 steps" in r.text


def test_the_clip_is_bounded_by_the_servers_job_pixels(make_client):
    client = make_client(max_job_pixels=64 * 64 * 8)
    r = client.post(f"{API}/txt2img", json={**BODY, **unit(video_length=16)})
    assert r.status_code == 422 and "16 frames of 64x64" in r.text
