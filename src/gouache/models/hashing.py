"""Model hashes as AUTOMATIC1111 writes them into infotext, with a cache so big files are read once.

A1111's ``Model hash: 6ce0161689`` is the first 10 hex digits of the SHA-256 of the checkpoint file
(its "shorthash"; the older 8-digit hash of a 64 KiB slice is not used). A diffusers folder has no
single checkpoint file, so gouache hashes the file that defines the model — the UNet's weights,
``unet/diffusion_pytorch_model.safetensors`` (or ``.bin``, or an ``fp16`` variant); a sharded UNet
hashes as the SHA-256 of its shards' bytes concatenated in file-name order. Swapping a folder's VAE or
text encoder therefore leaves its hash unchanged.

Full SHA-256 values are cached in ``$GOUACHE_HOME/cache/hashes.json``, keyed by absolute path and
checked against the file's mtime and size, so a 7 GB file is hashed once.

>>> model_hash("v1-5-pruned-emaonly.safetensors")     # doctest: +SKIP
'6ce0161689'
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from gouache.errors import ModelLoadError
from gouache.models.home import gouache_home

CHUNK = 1 << 20
UNET_WEIGHTS = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.fp16.bin",
)
UNET_SHARD_INDEXES = ("diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.bin.index.json")


def cache_path() -> Path:
    return gouache_home() / "cache" / "hashes.json"


def _files_to_hash(path: Path) -> tuple[Path, list[Path]]:
    """(the cache key's path, the files whose bytes make the hash, in order)."""
    if path.is_file():
        return path, [path]
    if not path.is_dir():
        raise ModelLoadError(f"{path}: no such file or folder to hash")
    unet = path / "unet"
    for name in UNET_WEIGHTS:
        if (unet / name).is_file():
            return unet / name, [unet / name]
    for name in UNET_SHARD_INDEXES:
        if (unet / name).is_file():
            try:
                shards = sorted(set(json.loads((unet / name).read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, AttributeError) as e:
                raise ModelLoadError(f"{unet / name}: unreadable shard index ({e})") from e
            return unet / name, [unet / s for s in shards]
    raise ModelLoadError(f"{path}: no UNet weights to hash (looked for unet/{UNET_WEIGHTS[0]} and variants)")


def _signature(files: list[Path]) -> tuple[int, int]:
    try:
        stats = [f.stat() for f in files]
    except OSError as e:
        raise ModelLoadError(f"cannot read {e.filename}: {e.strerror}") from e
    return max(s.st_mtime_ns for s in stats), sum(s.st_size for s in stats)


def sha256_of(files: list[Path]) -> str:
    """The SHA-256 (hex) of the files' bytes read one after another."""
    return _sha256(files)


def _sha256(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for f in files:
        try:
            with open(f, "rb") as fh:
                while block := fh.read(CHUNK):
                    digest.update(block)
        except OSError as e:
            raise ModelLoadError(f"cannot read {f}: {e.strerror or e}") from e
    return digest.hexdigest()


def _read_cache() -> dict:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing or damaged: the cache only saves time
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(key: str, entry: dict) -> None:
    path = cache_path()
    data = _read_cache()  # re-read just before writing, to keep entries other processes added
    data[key] = entry
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # a read-only home still gets hashes, just not cached ones
        tmp.unlink(missing_ok=True)


def cached_sha256(path: str | os.PathLike) -> str | None:
    """The full SHA-256 if the cache holds it for the files as they are now, else None (never hashes)."""
    key_path, files = _files_to_hash(Path(path).expanduser().resolve())
    mtime, size = _signature(files)
    cached = _read_cache().get(str(key_path))
    if isinstance(cached, dict) and cached.get("mtime") == mtime and cached.get("size") == size:
        return str(cached["sha256"])
    return None


def full_sha256(path: str | os.PathLike) -> str:
    """The full SHA-256 (hex) that :func:`model_hash` abbreviates, from the cache when still valid."""
    cached = cached_sha256(path)
    if cached is not None:
        return cached
    key_path, files = _files_to_hash(Path(path).expanduser().resolve())
    key = str(key_path)
    mtime, size = _signature(files)
    digest = _sha256(files)
    _write_cache(key, {"mtime": mtime, "size": size, "sha256": digest})
    return digest


def model_hash(path: str | os.PathLike) -> str:
    """AUTOMATIC1111's "Model hash": the first 10 hex digits of the checkpoint's SHA-256.

    For a diffusers folder, the hash of its UNet weights file (see the module docstring).
    """
    return full_sha256(path)[:10]
