"""Shared fixtures: every test runs offline against a throw-away $GOUACHE_HOME."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def gouache_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("gouache-home")
    saved = {k: os.environ.get(k) for k in ("GOUACHE_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(GOUACHE_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    yield home
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def tiny_model(gouache_home):
    """The built-in gouache-tiny, loaded once per test session."""
    from gouache.pipelines.model import load_model

    return load_model()
