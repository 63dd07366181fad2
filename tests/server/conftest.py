"""Fixtures for the server's tests: an app on gouache-tiny (loaded once per session), through
FastAPI's TestClient or a real uvicorn server on a free loopback port. The web UI is left out
unless a test asks for it (``ui=True``): building it takes a second."""

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest


# Chromium for the browser tests (.ci/run installs Debian's), with flags that start it on a closed
# network without a wait on Google's hosts
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def tiny_loader(tiny_model):
    """The server's model loader, with gouache-tiny already loaded."""
    from gouache.pipelines.model import load_model

    return lambda path: tiny_model if path is None else load_model(path)


@pytest.fixture
def make_client(tiny_loader, tmp_path):
    """``make_client(**config) -> TestClient`` of an app with that ServerConfig (outputs in tmp_path)."""
    from fastapi.testclient import TestClient

    from gouache.server.app import create_app
    from gouache.server.config import ServerConfig

    clients = []

    def make(**config):
        config.setdefault("out", str(tmp_path / "outputs"))
        config.setdefault("ui", False)
        client = TestClient(create_app(ServerConfig(**config), tiny_loader), base_url="http://127.0.0.1:7860")
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture(scope="session")
def serve():
    """``serve(app) -> base URL``: run ``app`` with uvicorn on a free loopback port, in a thread,
    until the session ends."""
    import uvicorn

    servers = []

    def start(app):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(20)


@pytest.fixture
def live_server(tiny_loader, tmp_path, serve):
    """``live_server(**config) -> (base URL, app)`` of a uvicorn server on 127.0.0.1, in a thread."""
    from gouache.server.app import create_app
    from gouache.server.config import ServerConfig

    def start(**config):
        config.setdefault("out", str(tmp_path / "outputs"))
        config.setdefault("ui", False)
        app = create_app(ServerConfig(host="127.0.0.1", **config), tiny_loader)
        return serve(app), app

    return start


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium); .ci/run installs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (pip install -e '.[test]')")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, ui_url):
    """The UI at ``ui_url`` (each browser test module serves its own) in a fresh browser context."""
    context = browser.new_context(base_url=ui_url, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto("/")
    page.locator("#txt2img-prompt textarea").wait_for()
    yield page
    context.close()


SEGMENTER = "tiny-clipseg"


@pytest.fixture(scope="session")
def tiny_segmenter(gouache_home):
    """``$GOUACHE_HOME/segmenters/tiny-clipseg``, a tiny random CLIPSeg (tests/vision/conftest.py's,
    loaded by path): its name. Random weights give arbitrary scores; tests pick thresholds from them."""
    import importlib.util

    folder = gouache_home / "segmenters" / SEGMENTER
    if not (folder / "config.json").is_file():
        spec = importlib.util.spec_from_file_location("vision_conftest_for_segmenters",
                                                      Path(__file__).parents[1] / "vision" / "conftest.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.write_tiny_clipseg(folder)
    return SEGMENTER
