"""Fixtures for gouache.models: offline by construction, a private GOUACHE_HOME, tiny random models."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is imported: it reads this once

import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for the ldm_layout helper


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any test that so much as tries to open a network connection."""
    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"network access attempted in an offline test: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield
    assert not attempts, f"tried to reach the network: {attempts}"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """A fresh, empty $GOUACHE_HOME per test."""
    path = tmp_path / "gouache-home"
    monkeypatch.setenv("GOUACHE_HOME", str(path))
    return path


@pytest.fixture
def no_shipped_weights(tmp_path, monkeypatch):
    """Pretend the package ships no gouache-tiny weights (as before training finishes)."""
    from gouache.models import builtin

    missing = (tmp_path / "none" / "gouache-tiny.safetensors", tmp_path / "none" / "gouache-tiny.json")
    monkeypatch.setattr(builtin, "shipped_files", lambda: missing)
    return missing


@pytest.fixture(scope="session")
def tiny_components():
    """(vae, text_encoder, unet) at gouache-tiny's size, every tensor random (norms and biases too)."""
    import torch

    from gouache.models.tiny_architecture import TinyConfig, build_text_encoder, build_unet, build_vae

    torch.manual_seed(0)
    cfg = TinyConfig()
    modules = (build_vae(cfg), build_text_encoder(cfg), build_unet(cfg))
    with torch.no_grad():
        for module in modules:
            module.eval()
            for p in module.parameters():  # so that no two tensors are equal by accident
                p.add_(0.02 * torch.randn_like(p))
    return modules


@pytest.fixture(scope="session")
def tiny_files(tiny_components, tmp_path_factory):
    """gouache-tiny in the original single-file layout, as .safetensors and as a nested .ckpt."""
    import torch
    from ldm_layout import to_ldm_checkpoint
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("single-files")
    state = to_ldm_checkpoint(*tiny_components)
    save_file(state, str(folder / "tiny.safetensors"))
    torch.save({"state_dict": state, "global_step": 7, "epoch": 1}, folder / "tiny.ckpt")
    return {".safetensors": folder / "tiny.safetensors", ".ckpt": folder / "tiny.ckpt"}
