"""Model hashes: A1111's 10-digit SHA-256 prefix, for files and diffusers folders, cached by path."""

import hashlib
import json

import pytest

from gouache.errors import ModelLoadError
from gouache.models import hashing
from gouache.models.hashing import full_sha256, model_hash


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_file_hash_is_a1111s_short_sha256(tmp_path, home):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"weights" * 1000)

    assert model_hash(path) == sha(b"weights" * 1000)[:10]

    cache = json.loads((home / "cache" / "hashes.json").read_text())
    entry = cache[str(path.resolve())]
    assert entry["sha256"] == sha(b"weights" * 1000)
    assert entry["size"] == 7000 and entry["mtime"] == path.stat().st_mtime_ns
    assert [p.name for p in (home / "cache").iterdir()] == ["hashes.json"]  # no temp files left


def test_cached_hash_is_not_recomputed_until_the_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"a" * 100)
    first = model_hash(path)

    def must_not_hash(files):
        raise AssertionError("hashed again")

    monkeypatch.setattr(hashing, "_sha256", must_not_hash)
    assert model_hash(path) == first
    monkeypatch.undo()

    path.write_bytes(b"b" * 101)
    assert model_hash(path) == sha(b"b" * 101)[:10]


def test_diffusers_folder_hashes_its_unet_weights(tmp_path):
    unet = tmp_path / "model" / "unet"
    unet.mkdir(parents=True)
    (tmp_path / "model" / "model_index.json").write_text("{}")
    (unet / "diffusion_pytorch_model.safetensors").write_bytes(b"unet")
    assert model_hash(tmp_path / "model") == sha(b"unet")[:10]


def test_sharded_unet_hashes_its_shards_in_order(tmp_path):
    unet = tmp_path / "model" / "unet"
    unet.mkdir(parents=True)
    (unet / "diffusion_pytorch_model-00002-of-00002.safetensors").write_bytes(b"second")
    (unet / "diffusion_pytorch_model-00001-of-00002.safetensors").write_bytes(b"first")
    index = {
        "weight_map": {
            "a": "diffusion_pytorch_model-00002-of-00002.safetensors",
            "b": "diffusion_pytorch_model-00001-of-00002.safetensors",
        }
    }
    (unet / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    assert full_sha256(tmp_path / "model") == sha(b"firstsecond")


def test_damaged_cache_is_ignored_and_rewritten(tmp_path, home):
    (home / "cache").mkdir(parents=True)
    (home / "cache" / "hashes.json").write_text("{not json")
    path = tmp_path / "m.pt"
    path.write_bytes(b"m")
    assert model_hash(path) == sha(b"m")[:10]
    assert str(path.resolve()) in json.loads((home / "cache" / "hashes.json").read_text())


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "absent.safetensors", "no such file or folder"),
        (lambda d: (d / "empty-folder").mkdir() or d / "empty-folder", "no UNet weights to hash"),
    ],
)
def test_nothing_to_hash(tmp_path, make, message):
    with pytest.raises(ModelLoadError, match=message):
        model_hash(make(tmp_path))
