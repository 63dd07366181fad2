"""Textual-inversion embeddings, used in a prompt or negative prompt by writing their name.

Formats read (facts from AUTOMATIC1111's ``EmbeddingDatabase.load_from_file`` and diffusers'
textual-inversion loader):

* A1111 ``.pt``: ``{"string_to_param": {"*": tensor[n, D]}, "name": ..., ...}`` (a ``ParameterDict``
  of older files only where ``torch.load(weights_only=True)`` can read it);
* SDXL: ``{"clip_l": tensor[n, 768], "clip_g": tensor[n, 1280]}`` (``.safetensors``), each half for
  the encoder of its width;
* diffusers' ``learned_embeds.bin`` / ``.safetensors``: a single key, the placeholder token, holding
  ``tensor[768]`` (older scripts) or ``tensor[n, 768]``; other tools' ``{"emb_params": tensor[n, D]}``.

``.safetensors`` is read with safetensors; ``.pt``/``.bin`` only with ``torch.load(weights_only=True)``.
An embedding whose width does not match the text encoder is not used with it (as A1111 skips it).

Names: the file's stem, as in A1111; and also the token stored in the file (a diffusers file's key,
such as ``<sks>``, or an A1111 file's ``name``), so ``a <sks> on a blue background`` finds
``sks.safetensors`` holding ``{"<sks>": tensor}``. A stem wins over another file's token.

>>> library = EmbeddingLibrary.scan()                  # $GOUACHE_HOME/embeddings   # doctest: +SKIP
>>> library.names()                                                                   # doctest: +SKIP
['<sks>', 'bad-hands', 'shapes-style', 'sks']
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import torch

from gouache.errors import ModelLoadError
from gouache.prompts.chunks import EmbeddingMatch

SUFFIXES = (".safetensors", ".pt", ".bin")
GENERIC_KEYS = {"emb_params", "emp_params", "*", "clip_l", "clip_g"}  # single keys that name no token
MAX_TOKEN_SCAN_BYTES = 16 << 20  # a pickled file larger than this is no embedding worth unpickling to scan


@dataclass
class Embedding:
    name: str
    path: Path
    vectors: dict[str, torch.Tensor]  # "clip_l" / "clip_g" for SDXL files, "" for single-encoder files

    def for_width(self, width: int) -> torch.Tensor | None:
        """The vectors that fit a text encoder of hidden size ``width``, or None."""
        for v in self.vectors.values():
            if v.shape[-1] == width:
                return v
        return None

    @cached_property
    def short_hash(self) -> str:
        """First 12 hex digits of the file's sha256, as A1111's "TI hashes" records it."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest()[:12]


def read_embedding(path: str | Path) -> Embedding:
    """Read an embedding file in any of the formats above."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ModelLoadError(f"{path}: not an embedding file; expected one of {', '.join(SUFFIXES)}")
    data = _read(path)
    if "string_to_param" in data:
        params = data["string_to_param"]
        params = getattr(params, "_parameters", params)
        if len(params) != 1:
            raise ModelLoadError(f"{path}: an A1111 embedding must hold exactly one vector set, found {len(params)}")
        vectors = {"": next(iter(params.values()))}
    elif "clip_l" in data and "clip_g" in data:
        vectors = {"clip_l": data["clip_l"], "clip_g": data["clip_g"]}
    elif len(data) == 1 and isinstance(next(iter(data.values())), torch.Tensor):
        vectors = {"": next(iter(data.values()))}
    else:
        raise ModelLoadError(
            f"{path}: not a textual-inversion embedding (keys: {', '.join(sorted(map(str, data))[:5])}); "
            "expected string_to_param, clip_l + clip_g, or a single tensor"
        )
    vectors = {k: (v.unsqueeze(0) if v.ndim == 1 else v).detach().float() for k, v in vectors.items()}
    if any(v.ndim != 2 for v in vectors.values()):
        raise ModelLoadError(f"{path}: embedding vectors must be a [n, width] tensor")
    return Embedding(path.stem, path, vectors)


def _read(path: Path) -> dict:
    from safetensors import SafetensorError

    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, EOFError, OSError, RuntimeError, ValueError) as e:
        raise ModelLoadError(f"{path}: cannot read the embedding ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: holds a {type(data).__name__}, not an embedding")
    return data


@lru_cache(maxsize=4096)
def stored_token(path: str, mtime_ns: int, size: int) -> str | None:
    """The token a file names its embedding by (diffusers: the single key; A1111: ``name``), or None.

    Cached per (path, modification time, size), so scanning at every generation reads each file once.
    """
    from safetensors import SafetensorError

    try:
        if path.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(path, framework="pt") as f:
                keys = list(f.keys())
            return keys[0] if len(keys) == 1 and keys[0] not in GENERIC_KEYS else None
        if size > MAX_TOKEN_SCAN_BYTES:
            return None
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, EOFError, OSError, RuntimeError, ValueError):
        return None  # an unreadable file has no token; using it by its stem says why
    if not isinstance(data, dict):
        return None
    if "string_to_param" in data:
        name = data.get("name")
        return name if isinstance(name, str) and name.strip() else None
    if len(data) == 1:
        key, value = next(iter(data.items()))
        return key if isinstance(key, str) and isinstance(value, torch.Tensor) and key not in GENERIC_KEYS else None
    return None


@dataclass
class EmbeddingLibrary:
    """The embeddings a prompt can name: ``{name or token: path}``, read lazily, records which were used."""

    paths: dict[str, Path]
    loaded: dict[str, Embedding] = field(default_factory=dict)
    used: dict[str, Embedding] = field(default_factory=dict)

    @classmethod
    def scan(cls, folder: str | Path | None = None) -> "EmbeddingLibrary":
        """Every embedding file in ``folder`` (default ``$GOUACHE_HOME/embeddings``) by its stem and
        by the token it stores. Cheap enough for every generation: a file's token is read once per
        modification (safetensors: the key names only)."""
        from gouache.models.home import models_dir
        from gouache.tiny.package import builtin_adapters

        folders = [Path(folder)] if folder is not None else [models_dir("embeddings"), builtin_adapters("embeddings")]
        files = []
        for f in folders:  # the user's files first: on a clash of names they win over the shipped examples
            files += sorted(p for p in f.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()) if f.is_dir() else []
        paths = {}
        for p in files:
            paths.setdefault(p.stem, p)
        for p in files:
            stat = p.stat()
            token = stored_token(str(p), stat.st_mtime_ns, stat.st_size)
            if token and token not in paths:  # the stem wins; between two files' tokens, the first file
                paths[token] = p
        return cls(paths)

    def names(self) -> list[str]:
        return sorted(self.paths)

    def get(self, name: str) -> Embedding:
        if name not in self.loaded:
            self.loaded[name] = read_embedding(self.paths[name])
        return self.loaded[name]

    def lookup(self, tokenizer, width: int):
        """An :data:`~gouache.prompts.chunks.EmbeddingLookup` for one tokenizer/encoder: matches
        the longest embedding name whose tokens start at the position, as A1111 does."""
        by_first: dict[int, list[tuple[list[int], str]]] = {}
        for name in self.paths:
            ids = tokenizer(name, add_special_tokens=False, verbose=False)["input_ids"]
            if ids:
                by_first.setdefault(ids[0], []).append((ids, name))
        for candidates in by_first.values():
            candidates.sort(key=lambda c: len(c[0]), reverse=True)

        def find(tokens, position):
            for ids, name in by_first.get(tokens[position], ()):
                if list(tokens[position : position + len(ids)]) == ids:
                    vectors = self.get(name).for_width(width)
                    if vectors is None:
                        return None  # trained for another model: the word stays plain text
                    self.used[name] = self.get(name)
                    return EmbeddingMatch(vectors, vectors.shape[0], len(ids))
            return None

        return find
