"""Fixtures for the server's security tests: a real uvicorn server (tests/server/conftest.py's
``live_server``) and a record of every file the test process opens or lists, from Python's audit
hooks (PEP 578), so a test can assert that a request never made the server open a path."""

import sys
import threading

import pytest

_watch = {"on": False, "events": []}
_lock = threading.Lock()


def _hook(event, args):
    if _watch["on"] and event in ("open", "os.listdir", "os.scandir", "shutil.copyfile", "os.symlink"):
        path = args[0] if args else None
        if isinstance(path, (str, bytes)) or hasattr(path, "__fspath__"):
            with _lock:
                _watch["events"].append((event, str(path)))


_installed = False


@pytest.fixture
def opened_paths():
    """``opened_paths() -> [(event, path)]`` of files opened or folders listed since the test began,
    by any thread of this process (the uvicorn server runs in one)."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)  # cannot be removed: it records only while a test asks for it
        _installed = True
    with _lock:
        _watch["events"].clear()
    _watch["on"] = True
    yield lambda: list(_watch["events"])
    _watch["on"] = False
