"""The web UI opens and serves only its own files, against a real uvicorn server with the UI mounted:
no server path in an event's file input (the hole: Gradio copied ``/etc/passwd`` into its cache
and served the copy), no path outside the upload cache on the file route, no URL fetched, uploads
bounded in size, count and pixels, and the Train tab's dataset picked by name only."""

import io
import json
import os
import re
import socket
import struct
import threading
import uuid
import zlib
from pathlib import Path

import httpx
import pytest
from PIL import Image, PngImagePlugin

pytest.importorskip("gradio", reason="the web UI needs gradio (pip install -e '.[test]')")

MAX_PIXELS = 64 * 64


@pytest.fixture
def secret(tmp_path):
    """A marker, and two files holding it outside --out and the cache (under the system's temp
    folder, which Gradio's own check of outputs allows): a PNG (in its parameters) and a text."""
    marker = f"secret-{uuid.uuid4().hex}"
    folder = tmp_path / "private"
    folder.mkdir()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", marker)
    Image.new("RGB", (8, 8)).save(folder / "secret.png", pnginfo=info)
    (folder / "secret.txt").write_text(marker + "\n")
    return marker, folder / "secret.png", folder / "secret.txt"


@pytest.fixture
def ui(live_server, tmp_path):
    """(base URL, app, --out, the upload cache) of a server with the UI, 3 uploads, 64×64 pixels."""
    import gradio

    out = tmp_path / "outputs"
    (out / "txt2img").mkdir(parents=True)
    (tmp_path / "datasets" / "shapes").mkdir(parents=True)
    url, app = live_server(ui=True, out=str(out), datasets=str(tmp_path / "datasets"), max_uploads=3,
                           max_pixels=MAX_PIXELS)
    return url, app, out, Path(gradio.utils.get_upload_folder()).resolve()


@pytest.fixture
def plant(ui):
    """``plant(target, suffix)``: a symlink to ``target`` inside the upload cache (gone after the test)."""
    links = []

    def make(target: Path, suffix: str) -> Path:
        (ui[3] / "planted").mkdir(exist_ok=True)
        links.append(ui[3] / "planted" / f"{uuid.uuid4().hex}{suffix}")
        links[-1].symlink_to(target)
        return links[-1]

    yield make
    for link in links:
        link.unlink(missing_ok=True)


def mounted_blocks(app):
    from starlette.routing import Mount

    mount = next(r for r in app.router.routes if isinstance(r, Mount) and r.path == "")
    return mount.app.app.get_blocks()  # gouache's FileRoutes around Gradio's app


def file_data(path: str, **extra) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}, **extra}


def file_inputs(blocks) -> list[tuple]:
    """(dependency, indices of its inputs that take files) for every dependency of ``blocks``
    with such an input: a component whose API schema is Gradio's FileData."""
    found = []
    for fn in blocks.fns.values():
        indices = [i for i, c in enumerate(fn.inputs) if "FileData" in json.dumps(c.api_info())]
        if indices:
            found.append((fn, indices))
    return found


def as_input(component, file: dict):
    """``file`` in the shape ``component`` takes it."""
    name = component.get_block_name()
    if name == "imageeditor":
        return {"background": file, "layers": [file], "composite": file, "id": None}
    if name == "gallery":
        return [{"image": file, "caption": None}]
    return [file] if getattr(component, "file_count", "single") != "single" else file


def run_event(url: str, fn, files: dict[int, object]) -> str:
    """Run dependency ``fn`` as the browser does (queue/join, then the event stream), its inputs
    their defaults but ``files`` ({input index: value}); the stream's text."""
    data = [files[i] if i in files else _default(c) for i, c in enumerate(fn.inputs)]
    session = uuid.uuid4().hex
    joined = httpx.post(f"{url}/gradio_api/queue/join", timeout=30,
                        json={"data": data, "fn_index": fn._id, "session_hash": session, "event_data": None,
                              "trigger_id": None})
    if joined.status_code != 200:
        return joined.text
    text = ""
    with httpx.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}, timeout=60) as stream:
        for line in stream.iter_lines():
            text += line + "\n"
            if "process_completed" in line:
                break
    return text


def _default(component):
    value = getattr(component, "value", None)
    return None if callable(value) else value


def fetched_files(url: str, text: str) -> str:
    """The contents of every file a response points at (``/gradio_api/file=...``)."""
    return "".join(httpx.get(f"{url}/gradio_api/file={path}").text
                   for path in re.findall(r"/gradio_api/file=([^\"\s\\\\]+)", text))


def cache_holds(cache: Path, marker: str) -> bool:
    return any(marker.encode() in p.read_bytes() for p in cache.rglob("*") if p.is_file() and not p.is_symlink())


def upload(url: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{url}/gradio_api/upload", files=[("files", (name, data, "image/png"))], timeout=30)


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that says it is ``width``×``height`` (a decompression bomb, cheap to send)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# -- the hole: a server path in an event's file input ---------------------------------------------


def test_no_event_opens_a_server_file(ui, secret, plant):
    url, app, out, cache = ui
    marker, secret_png, secret_txt = secret
    planted = plant(secret_png, ".png")  # a link inside the cache, to the secret
    dotdot = str(cache) + "/.." * len(cache.parts) + str(secret_png)
    targets = [str(secret_png), str(secret_txt), "/etc/passwd", dotdot, str(planted), "secret.png"]
    dependencies = file_inputs(mounted_blocks(app))
    names = {fn.name for fn, _ in dependencies}
    assert {"read_upload", "send_image"} <= names and len(dependencies) >= 5, names  # PNG Info, 3 image tabs
    for fn, indices in dependencies:
        for target in targets:
            text = run_event(url, fn, {i: as_input(fn.inputs[i], file_data(target)) for i in indices})
            seen = text + fetched_files(url, text)
            assert marker not in seen and "root:x:0:0" not in seen, (fn.name, target)
            assert not cache_holds(cache, marker), (fn.name, target)  # not even copied into the cache
            assert '"success":false' in text, (fn.name, target, text[-300:])
            assert "opens only images uploaded" in text, (fn.name, target, text[-300:])  # gouache's own check


def test_gradios_own_check_is_on_when_mounted(ui, secret):
    """Without gouache's check, Gradio's refuses too: it copies nothing from outside its folder."""
    url, app, _, cache = ui
    marker, secret_png, _ = secret
    blocks = mounted_blocks(app)
    del blocks.preprocess_data  # gouache's guard, set on the instance: Gradio's own method is left
    send = next(fn for fn, _ in file_inputs(blocks) if fn.name == "send_image")
    for target in (str(secret_png), "/etc/passwd"):
        text = run_event(url, send, {0: file_data(target)})
        assert '"success":false' in text and marker not in text + fetched_files(url, text)
    assert not cache_holds(cache, marker)


def test_an_upload_goes_through(ui):
    url, app, _, cache = ui
    (path,) = upload(url, "a.png", png(16, 16)).json()
    assert Path(path).resolve().is_relative_to(cache)
    send = next(fn for fn, _ in file_inputs(mounted_blocks(app)) if fn.name == "send_image")
    text = run_event(url, send, {0: file_data(path)})
    assert '"success":true' in text
    (shown,) = re.findall(r"/gradio_api/file=([^\"\s]+)", text)
    assert httpx.get(f"{url}/gradio_api/file={shown}").content == png(16, 16)


# -- the file route -------------------------------------------------------------------------------


def test_the_file_route_serves_only_the_upload_cache(ui, secret, plant):
    url, app, out, cache = ui
    marker, secret_png, secret_txt = secret
    link = out / "txt2img" / "00001-1.png"  # a link under --out, to the secret
    link.symlink_to(secret_png)
    planted = plant(secret_txt, ".txt")
    dotdot = str(cache) + "/.." * len(cache.parts) + str(secret_txt)
    for path in (secret_txt, secret_png, "/etc/passwd", link, planted, dotdot, "../" * 20 + str(secret_txt)):
        for route in ("/gradio_api/file=", "/gradio_api/file/", "/file="):
            response = httpx.get(f"{url}{route}{path}")
            assert marker not in response.text and "root:x:0:0" not in response.text, (route, path)
            assert response.status_code in (403, 404), (route, path)
        encoded = httpx.get(f"{url}/gradio_api/file={str(path).replace('/', '%2F')}")
        assert encoded.status_code in (403, 404) and marker not in encoded.text
    listing = next(fn for fn in mounted_blocks(app).fns.values() if fn.name == "listing")
    text = run_event(url, listing, {})  # the gallery lists --out: not the link
    assert '"success":true' in text and link.name not in text and marker not in text + fetched_files(url, text)
    assert not cache_holds(cache, marker)


# -- no URL is fetched ----------------------------------------------------------------------------


@pytest.fixture
def listener():
    """(URL, connections) of a loopback socket that records every connection made to it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.1)
    connections, done = [], threading.Event()

    def accept():
        while not done.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            connections.append(conn.recv(4096))
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", connections
    done.set()
    thread.join(5)
    sock.close()


def test_no_url_is_fetched(ui, listener):
    url, app, _, _ = ui
    remote, connections = listener
    image = f"{remote}/image.png"
    inline = "data:image/png;base64,iVBORw0KGgo="
    files = [file_data(image), file_data(image, url=image), file_data("image.png", url=image),
             file_data("image.png", url=inline)]
    for fn, indices in file_inputs(mounted_blocks(app)):
        for file in files:
            text = run_event(url, fn, {i: as_input(fn.inputs[i], file) for i in indices})
            assert '"success":false' in text, (fn.name, file)
    for route in ("/gradio_api/file=", "/gradio_api/file/", "/gradio_api/proxy="):
        assert httpx.get(f"{url}{route}{image}").status_code in (403, 404), route
    assert connections == []


# -- the cache: cleaned; uploads bounded in size, count and pixels --------------------------------


def test_the_cache_is_cleaned_of_what_the_ui_put_there(ui):
    """Gradio's delete_cache removes the uploads and its copies of the images the UI showed, a
    generation's gallery included."""
    from urllib.parse import unquote

    from gradio.route_utils import delete_files_created_by_app

    from gouache.server.ui import CACHE_AGE_SECONDS, CACHE_CHECK_SECONDS

    url, app, _, cache = ui
    blocks = mounted_blocks(app)
    assert blocks.delete_cache == (CACHE_CHECK_SECONDS, CACHE_AGE_SECONDS)
    (uploaded,) = upload(url, "a.png", png(16, 16)).json()
    txt2img = next(fn for fn in blocks.fns.values() if fn.api_name == "on_generate")
    index = {c.elem_id: i for i, c in enumerate(txt2img.inputs)}
    text = run_event(url, txt2img, {index["txt2img-steps"]: 2, index["txt2img-prompt"]: "a red circle",
                                    index["txt2img-negative-prompt"]: ""})
    shown = [Path(unquote(p)) for p in re.findall(r"/gradio_api/file=([^\"\s]+)", text)]
    assert '"success":true' in text and shown and all(p.resolve().is_relative_to(cache) for p in shown)
    delete_files_created_by_app(blocks, age=None)  # what delete_cache runs on the files past their age
    assert not Path(uploaded).exists() and not any(p.exists() for p in shown)



def test_uploads_are_bounded_in_size_and_count(ui, live_server, tmp_path):
    url, _, _, cache = ui
    paths = [upload(url, f"{i}.png", png(8 + i, 8)).json()[0] for i in range(5)]
    assert [Path(p).exists() for p in paths] == [False, False, True, True, True]  # --max-uploads 3, oldest go
    assert httpx.get(f"{url}/gradio_api/file={paths[0]}").status_code in (403, 404)
    small, _ = live_server(ui=True, out=str(tmp_path / "small"), max_body_mb=0.01)
    assert upload(small, "big.png", os.urandom(20_000)).status_code == 413
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode() + os.urandom(20_000) + f"\r\n--{boundary}--\r\n".encode()
    chunked = httpx.post(f"{small}/gradio_api/upload", content=iter([body[:5000], body[5000:]]),  # no length
                         headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert chunked.status_code == 413
    assert not any(p.stat().st_size == 20_000 for p in cache.rglob("*.png") if p.is_file())


def test_an_image_over_max_pixels_is_refused_before_gradio_decodes_it(ui):
    url, app, _, _ = ui
    blocks = mounted_blocks(app)
    tabs = {fn.api_name: (fn, indices) for fn, indices in file_inputs(blocks)}
    big, bomb = (upload(url, name, data).json()[0] for name, data in
                 (("big.png", png(65, 64)), ("bomb.png", png_header(200_000, 200_000))))
    for name in ("on_generate_1", "on_generate_2", "on_generate_3", "read_upload"):  # img2img, inpaint, upscale
        fn, indices = tabs[name]
        for path, size in ((big, "65×64 = 4160 pixels"), (bomb, f"over {2 * Image.MAX_IMAGE_PIXELS} pixels")):
            text = run_event(url, fn, {i: as_input(fn.inputs[i], file_data(path)) for i in indices})
            assert '"success":false' in text and f"The image is {size}" in text and "--max-pixels" in text, name
    # the inpaint editor's blobs: checked when posted, before Gradio keeps or decodes them
    editor = next(c for c in blocks.blocks.values() if c.get_block_name() == "imageeditor")

    def blob(kind, index, data):
        form = {"component_id": str(editor._id), "session_hash": uuid.uuid4().hex, "fn_name": "accept_blobs",
                "id": "blob1", "type": kind, "index": index}
        return httpx.post(f"{url}/gradio_api/component_server", data=form, files={"file": ("b.png", data)})

    assert blob("layer", "100000000", png(8, 8)).status_code == 422
    assert blob("background", "null", png(65, 64)).status_code == 413
    assert editor.blob_storage == {}
    fn, indices = tabs["on_generate_2"]
    index = next(i for i in indices if fn.inputs[i] is editor)  # the tab's other image: the image prompt
    text = run_event(url, fn, {index: {"background": None, "layers": [], "composite": None, "id": "blob1"}})
    assert '"success":false' in text and "65×64 = 4160 pixels" in text


# -- the Train tab --------------------------------------------------------------------------------


def test_the_train_tab_takes_a_listed_dataset_by_name_only(ui, tmp_path):
    import gradio as gr

    from gouache.server.ui.train import dataset_folder, list_datasets

    url, app, _, _ = ui
    datasets = tmp_path / "datasets"
    (datasets / "elsewhere").symlink_to(tmp_path / "private", target_is_directory=True)
    (tmp_path / "private").mkdir()
    (datasets / ".hidden").mkdir()
    assert list_datasets(datasets) == ["shapes"]
    assert dataset_folder(datasets, "shapes") == (datasets / "shapes").resolve()
    for name in ("../private", "/etc", "shapes/..", "elsewhere", ".hidden", "", None):
        with pytest.raises(gr.Error, match="pick a prepared dataset"):
            dataset_folder(datasets, name)
    blocks = mounted_blocks(app)
    start = next(fn for fn in blocks.fns.values() if fn.name == "on_start")
    relist = next(fn for fn in blocks.fns.values() if fn.name == "datasets_listed")
    assert '"shapes"' in run_event(url, relist, {}) and "elsewhere" not in run_event(url, relist, {})
    dataset = next(i for i, c in enumerate(start.inputs) if c.label == "Dataset")
    for name in ("../private", "/etc", str(datasets / "shapes")):
        text = run_event(url, start, {dataset: name})
        assert '"success":false' in text, name
    assert app.state.gouache.training.status().name == ""  # nothing started
