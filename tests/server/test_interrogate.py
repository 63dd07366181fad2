"""``POST /sdapi/v1/interrogate`` over real HTTP: A1111's body and answer, the job queue, 4xx for bad input."""

import base64
import importlib.util
import io
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw

API = "/sdapi/v1"


def write_tiny_clip(folder):
    spec = importlib.util.spec_from_file_location("vision_conftest_for_server",
                                                  Path(__file__).parents[1] / "vision" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_tiny_clip(folder)


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


def png_b64(data_url=False) -> str:
    image = Image.new("RGB", (40, 40), "white")
    ImageDraw.Draw(image).rectangle((8, 8, 30, 30), fill="blue")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    text = base64.b64encode(buffer.getvalue()).decode()
    return f"data:image/png;base64,{text}" if data_url else text


@pytest.fixture(scope="module")
def server(clip_path, tiny_loader, tmp_path_factory, serve):
    from gouache.server.app import create_app
    from gouache.server.config import ServerConfig

    config = ServerConfig(out=str(tmp_path_factory.mktemp("out")), ui=False, clip=str(clip_path), captioner="none")
    return serve(create_app(config, tiny_loader))


def test_interrogate_answers_a1111s_caption(server, clip_path):
    from gouache.vision.clip import load_clip
    from gouache.vision.interrogate import interrogate

    with httpx.Client(base_url=server, timeout=120) as http:
        plain = http.post(f"{API}/interrogate", json={"image": png_b64(), "model": "clip"})
        data_url = http.post(f"{API}/interrogate", json={"image": png_b64(data_url=True)})  # "clip" is the default
    assert plain.status_code == 200, plain.text
    assert plain.json() == data_url.json()
    image = Image.open(io.BytesIO(base64.b64decode(png_b64())))
    with load_clip(clip_path) as clip:
        assert plain.json() == {"caption": interrogate(image, clip).prompt}


@pytest.mark.parametrize("body, status, message", [
    ({"image": png_b64(), "model": "deepdanbooru"}, 422, "'deepdanbooru' is not supported; gouache has 'clip'"),
    ({"image": "not base64!"}, 422, "`image` is not valid base64"),
    ({"image": base64.b64encode(b"GIF89a....").decode()}, 422, "`image` is not an image gouache takes"),
    ({"model": "clip"}, 422, "`image` is missing"),
])
def test_bad_requests_are_4xx_with_a_message(server, body, status, message):
    r = httpx.post(f"{server}{API}/interrogate", json=body, timeout=60)
    assert r.status_code == status
    assert message in r.json()["detail"]


def test_without_a_clip_the_server_says_so(tiny_loader, tmp_path, serve, monkeypatch):
    from gouache.server.app import create_app
    from gouache.server.config import ServerConfig

    monkeypatch.setattr("gouache.vision.folders.ModelFolders.builtin_dir", lambda self: tmp_path / "absent")
    url = serve(create_app(ServerConfig(out=str(tmp_path), ui=False), tiny_loader))
    r = httpx.post(f"{url}{API}/interrogate", json={"image": png_b64()}, timeout=60)
    assert r.status_code == 500 and "the built-in CLIP is not installed" in r.json()["detail"]


def test_webuiapi_interrogate(server):
    webuiapi = pytest.importorskip("webuiapi")
    api = webuiapi.WebUIApi(baseurl=f"{server}/sdapi/v1")
    image = Image.open(io.BytesIO(base64.b64decode(png_b64())))
    expected = httpx.post(f"{server}{API}/interrogate", json={"image": png_b64()}, timeout=60).json()["caption"]
    assert api.interrogate(image).info == expected
    with pytest.raises(RuntimeError, match="422"):
        api.interrogate(image, model="deepdanbooru")


def test_the_servers_captioner_leads_the_prompt(clip_path, tiny_loader, tmp_path, serve, monkeypatch):
    import sys
    import types

    from gouache.server.app import create_app
    from gouache.server.config import ServerConfig

    class Captioner:
        def caption(self, images, prompt=None):
            return ["a blue square" for _ in images]

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    module = types.ModuleType("gouache.vision.captioners")
    module.load_captioner = lambda name_or_path=None, device="cpu": Captioner()
    monkeypatch.setitem(sys.modules, "gouache.vision.captioners", module)
    url = serve(create_app(ServerConfig(out=str(tmp_path), ui=False, clip=str(clip_path), captioner="fake"),
                           tiny_loader))
    r = httpx.post(f"{url}{API}/interrogate", json={"image": png_b64()}, timeout=60)
    assert r.status_code == 200 and r.json()["caption"].startswith("a blue square, ")
