"""Textual-inversion embeddings, used in a prompt by writing their name (the file's stem).

Formats read (facts from AUTOMATIC1111's ``EmbeddingDatabase.load_from_file`` and diffusers'
textual-inversion loader):

* A1111 ``.pt``: ``{"string_to_param": {"*": tensor[n, D]}, "name": ..., ...}``
* SDXL: ``{"clip_l": tensor[n, 768], "clip_g": tensor[n, 1280]}`` (``.safetensors``)
* a single key holding the vectors: diffusers' ``learned_embeds`` (``{"<token>": tensor}``) and other
  tools' ``{"emb_params": tensor[n, D]}``; a 1-D tensor is one vector.

``.safetensors`` is read with safetensors; ``.pt``/``.bin`` only with ``torch.load(weights_only=True)``.
An embedding whose width does not match the text encoder is not used with it (as A1111 skips it).

>>> library = EmbeddingLibrary.scan()                  # $GOUACHE_HOME/embeddings   # doctest: +SKIP
>>> library.names()                                                                   # doctest: +SKIP
['bad-hands', 'shapes-style']
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch

from gouache.errors import ModelLoadError
from gouache.prompts.chunks import EmbeddingMatch

SUFFIXES = (".safetensors", ".pt", ".bin")


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


@dataclass
class EmbeddingLibrary:
    """The embeddings a prompt can name: ``{name: path}``, read lazily, records which were used."""

    paths: dict[str, Path]
    loaded: dict[str, Embedding] = field(default_factory=dict)
    used: dict[str, Embedding] = field(default_factory=dict)

    @classmethod
    def scan(cls, folder: str | Path | None = None) -> "EmbeddingLibrary":
        from gouache.models.home import models_dir

        folder = Path(folder) if folder is not None else models_dir("embeddings")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()) if folder.is_dir() else []
        return cls({p.stem: p for p in files})

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
