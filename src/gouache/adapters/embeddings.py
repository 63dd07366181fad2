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

Names: the user's files answer to the file's stem, as in A1111, and also to the token stored in the
file (a diffusers file's key, such as ``<sks>``, or an A1111 file's ``name``). A stem wins over
another file's token. The examples shipped with gouache answer only to their stored token, so the
shipped ``sks.safetensors`` (``{"<sks>": tensor}``) is ``a <sks> on a blue background`` and leaves
the plain word ``sks`` (the usual DreamBooth/LoRA trigger word) alone.

A file that is no embedding (unreadable, another layout, a checkpoint in the wrong folder) is
reported once per process by a warning naming it, and the scan goes on: prompts that do not name
it are unaffected, and a prompt that names it fails with a :class:`ModelLoadError` saying why.

>>> library = EmbeddingLibrary.scan()                  # $GOUACHE_HOME/embeddings   # doctest: +SKIP
>>> library.names()                                                                   # doctest: +SKIP
['<sks>', 'bad-hands', 'shapes-style']
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import torch

from gouache.errors import ModelLoadError
from gouache.prompts.chunks import EmbeddingMatch

SUFFIXES = (".safetensors", ".pt", ".bin")
GENERIC_KEYS = {"emb_params", "emp_params", "*", "clip_l", "clip_g"}  # single keys that name no token
MAX_EMBEDDING_BYTES = 16 << 20  # 75 vectors of 1280 floats are 400 KB: a larger file is something else

log = logging.getLogger(__name__)


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
    """Read an embedding file in any of the formats above; a file that is none raises :class:`ModelLoadError`."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ModelLoadError(f"{path}: not an embedding file; expected one of {', '.join(SUFFIXES)}")
    return Embedding(path.stem, path, _vectors(path, _read(path)))


def _vectors(path: Path, data: dict) -> dict[str, torch.Tensor]:
    """The vector sets of a file's contents, checked: ``{"": [n, D]}`` or ``{"clip_l": …, "clip_g": …}``."""
    if "string_to_param" in data:
        params = data["string_to_param"]
        params = getattr(params, "_parameters", params)
        if not isinstance(params, dict) or len(params) != 1:
            found = len(params) if isinstance(params, dict) else type(params).__name__
            raise ModelLoadError(f"{path}: an A1111 embedding must hold exactly one vector set, found {found}")
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
    if not all(isinstance(v, torch.Tensor) and v.ndim in (1, 2) and v.numel() for v in vectors.values()):
        raise ModelLoadError(f"{path}: embedding vectors must be a [n, width] tensor")
    return {k: (v.unsqueeze(0) if v.ndim == 1 else v).detach().float() for k, v in vectors.items()}


def _read(path: Path) -> dict:
    try:
        with warnings.catch_warnings():  # torch warns about a junk file's "pickle protocol": the error says it
            warnings.simplefilter("ignore")
            if path.suffix.lower() == ".safetensors":
                from safetensors.torch import load_file

                return load_file(str(path))
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - safetensors, and torch's weights-only unpickler on junk bytes, fail
        # with any of SafetensorError, OSError, UnpicklingError, KeyError, IndexError, UnicodeDecodeError...
        raise ModelLoadError(f"{path}: cannot read the embedding ({type(e).__name__}: {_one_line(e)})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: holds a {type(data).__name__}, not an embedding")
    return data


def _one_line(e: Exception) -> str:
    """The gist of an error: torch's weights-only errors are a page of advice around one line of reason."""
    text = str(e).split("WeightsUnpickler error:", 1)[-1]
    line = next((l.strip() for l in text.splitlines() if l.strip()), "")
    return line if len(line) <= 200 else line[:200] + "…"


@lru_cache(maxsize=4096)
def inspect_file(path: str, mtime_ns: int, size: int) -> tuple[str | None, str | None]:
    """``(token, problem)`` of an embedding file: the token it names its embedding by (diffusers: the
    single key; A1111: ``name``) or None, and why it is no embedding, or None.

    Cached per (path, modification time, size), so scanning at every generation reads each file once
    and a broken file is reported once (again only when it changes).
    """
    try:
        if size > MAX_EMBEDDING_BYTES:
            raise ModelLoadError(f"{path}: {size / 2**20:.0f} MB is too large for a textual-inversion embedding "
                                 "(a checkpoint or LoRA in the embeddings folder?)")
        data = _read(Path(path))
        _vectors(Path(path), data)
    except ModelLoadError as e:
        log.warning("gouache: warning: cannot use embedding %s", e)
        return None, str(e)
    return _token(data), None


def _token(data: dict) -> str | None:
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
    problems: dict[Path, str] = field(default_factory=dict)  # files that are no embedding: why

    @classmethod
    def scan(cls, folder: str | Path | None = None) -> "EmbeddingLibrary":
        """Every embedding file in ``folder`` (default ``$GOUACHE_HOME/embeddings``, then the shipped
        examples) by its stem and by the token it stores; a shipped example by its token only. Cheap
        enough for every generation: a file is read once per modification."""
        from gouache.models.builtin import builtin_adapters
        from gouache.models.home import models_dir

        user = _files(Path(folder) if folder is not None else models_dir("embeddings"))
        shipped = _files(builtin_adapters("embeddings")) if folder is None else []
        paths, problems, tokens, mine = {}, {}, [], set(user)
        for p in user + shipped:
            stat = p.stat()
            token, problem = inspect_file(str(p), stat.st_mtime_ns, stat.st_size)
            if problem:
                problems[p] = problem
            tokens.append((token, p))
            if p in mine or not token:  # a shipped example answers to its stem only if it stores no token
                paths.setdefault(p.stem, p)  # the user's files first: they win over the shipped examples
        for token, p in tokens:
            if token and token not in paths:  # the stem wins; between two files' tokens, the first file
                paths[token] = p
        return cls(paths, problems=problems)

    def names(self) -> list[str]:
        return sorted(self.paths)

    def get(self, name: str) -> Embedding:
        if name not in self.loaded:
            path = self.paths[name]
            if path in self.problems:
                raise ModelLoadError(f"embedding {name!r} cannot be used: {self.problems[path]}")
            self.loaded[name] = read_embedding(path)
        return self.loaded[name]

    def lookup(self, tokenizer, width: int):
        """An :data:`~gouache.prompts.chunks.EmbeddingLookup` for one tokenizer/encoder: matches
        the longest embedding name whose tokens start at the position, as A1111 does."""
        by_first: dict[int, list[tuple[list[int], str]]] = {}
        for name in self.paths:
            for ids in _token_forms(tokenizer, name):
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


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()) if folder.is_dir() else []


def _token_forms(tokenizer, name: str) -> list[list[int]]:
    """The ids ``name`` has in a prompt: alone (``<sks>`` ends in ``></w>``), and touching the next
    character (``<sks>,`` is ``<``, ``sks``, ``>``, ``,``: CLIP's BPE marks a word's end on its last
    piece). The trainer reads ``<cats>, a photo`` as ``<cats> , a photo`` (``train.embedding.spaced``);
    this makes generation read the prompt the same way."""
    forms = []
    alone = tokenizer(name, add_special_tokens=False, verbose=False)["input_ids"]
    if alone:
        forms.append(list(alone))
    touching = tokenizer(name + ",", add_special_tokens=False, verbose=False)["input_ids"]
    comma = tokenizer(",", add_special_tokens=False, verbose=False)["input_ids"]
    if comma and len(touching) > len(comma) and touching[-len(comma):] == comma:
        touching = list(touching[: -len(comma)])
        if touching and touching not in forms:
            forms.append(touching)
    return forms
