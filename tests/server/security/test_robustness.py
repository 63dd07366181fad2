"""What a client notices when things go wrong on the server's side: a job whose client left is not
run, /interrupt stops a job that is still loading, a failed save still returns the images, a broken
checkpoint does not break the listing, and every image format outside the list is a 4xx."""

import base64
import errno
import io
import json
import threading
import time

import httpx
import pytest
from PIL import Image

API = "/sdapi/v1"
SMALL = {"prompt": "a red circle on a blue background", "steps": 2, "width": 64, "height": 64, "seed": 1}


def test_a_queued_job_whose_client_hung_up_is_dropped(live_server):
    base, app = live_server()
    queue = app.state.gouache.queue
    release = threading.Event()
    blocker = queue.submit("blocker", lambda t: release.wait(30))
    ran = []
    generate = app.state.gouache.generator.generate
    app.state.gouache.generator.generate = lambda *a: ran.append(1) or generate(*a)
    with pytest.raises(httpx.ReadTimeout):  # the client gives up while its job waits behind the blocker
        httpx.post(f"{base}{API}/txt2img", json=SMALL, timeout=0.5)
    deadline = time.monotonic() + 10
    while queue.waiting and time.monotonic() < deadline:  # the server notices within a poll or two
        time.sleep(0.1)
    assert queue.waiting == 0
    release.set()
    blocker.result(10)
    time.sleep(0.5)
    assert ran == [] and queue.done == 1


def test_interrupt_stops_a_job_that_is_still_loading_its_model(make_client, tiny_model):
    from fastapi.testclient import TestClient

    from gouache.server.app import create_app
    from gouache.server.config import ServerConfig

    loading, release = threading.Event(), threading.Event()

    def slow_loader(path):
        loading.set()
        release.wait(30)
        return tiny_model

    app = create_app(ServerConfig(ui=False), slow_loader)
    with TestClient(app, base_url="http://127.0.0.1:7860") as client:
        answer = {}
        thread = threading.Thread(target=lambda: answer.update(r=client.post(f"{API}/txt2img", json=SMALL)))
        thread.start()
        assert loading.wait(10)
        assert client.post(f"{API}/interrupt").status_code == 200
        release.set()
        thread.join(30)
    r = answer["r"]
    assert r.status_code == 200 and r.json()["images"] == []
    assert json.loads(r.json()["info"])["interrupted"] is True


def test_a_failed_save_still_returns_the_images(client, monkeypatch):
    from gouache.pipelines.request import GeneratedImage

    save = GeneratedImage.save

    def full_disk_for_the_second(self, path, overwrite=False):
        if self.seed == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(self, path, overwrite)

    monkeypatch.setattr(GeneratedImage, "save", full_disk_for_the_second)
    r = client.post(f"{API}/txt2img", json={**SMALL, "batch_size": 2, "save_images": True})
    assert r.status_code == 200 and len(r.json()["images"]) == 3  # the grid and both images
    info = json.loads(r.json()["info"])
    assert len(info["not_saved"]) == 1 and "seed 2" in info["not_saved"][0] and "No space" in info["not_saved"][0]


def test_a_broken_checkpoint_does_not_break_the_listing(client, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "checkpoints" / "broken").mkdir(parents=True)
    (home / "checkpoints" / "broken" / "model_index.json").write_text("{not json")
    (home / "checkpoints" / "junk.safetensors").write_bytes(b"not a safetensors file")
    (home / "checkpoints" / "gone.safetensors").symlink_to(tmp_path / "nowhere")
    monkeypatch.setenv("GOUACHE_HOME", str(home))
    r = client.get(f"{API}/sd-models")
    assert r.status_code == 200 and [m["model_name"] for m in r.json()] == ["gouache-tiny"]


def _b64(image: Image.Image, fmt: str, **kw) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return base64.b64encode(buffer.getvalue()).decode()


RGB = Image.new("RGB", (64, 64), (30, 60, 200))


@pytest.mark.parametrize("fmt", ["PPM", "BMP", "TIFF", "GIF", "ICO", "TGA", "PCX", "SGI", "DDS"])
def test_image_formats_outside_the_list_are_4xx(client, fmt):
    r = client.post(f"{API}/img2img", json={**SMALL, "init_images": [_b64(RGB, fmt)]})
    assert r.status_code == 422 and "PNG, JPEG or WebP" in r.json()["detail"]


@pytest.mark.parametrize("image,fmt", [(RGB, "PNG"), (RGB, "JPEG"), (RGB, "WEBP"), (Image.new("I;16", (64, 64)), "PNG"),
                                       (Image.new("CMYK", (64, 64)), "JPEG"), (Image.new("LA", (64, 64)), "PNG")])
def test_png_jpeg_and_webp_in_any_mode_are_taken(client, image, fmt):
    r = client.post(f"{API}/img2img", json={**SMALL, "init_images": [_b64(image, fmt)]})
    assert r.status_code == 200, r.text
