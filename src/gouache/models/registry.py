"""The models gouache can load by name: the built-in gouache-tiny plus ``$GOUACHE_HOME/checkpoints``.

``checkpoints/`` holds diffusers folders (anything with a ``model_index.json``) and single-file
checkpoints (``.safetensors``, ``.ckpt``, ``.pt``), in subfolders too. A model is named by its path
relative to ``checkpoints/`` (``anime/foo.safetensors``), and can be asked for by that name, by its
file or folder name, with or without the extension, by A1111's title (``foo.safetensors [6ce0161689]``)
or ``model_name`` (``anime_foo``), or by any existing path (the rule, shared with ControlNets and
LoRA: :mod:`gouache.models.names`). ``None``, ``""`` and ``"gouache-tiny"`` mean the built-in model;
a checkpoint called ``gouache-tiny`` is therefore reachable only by its file name or path.

>>> pipe, entry = load_pipeline("v1-5-pruned-emaonly")     # doctest: +SKIP
>>> entry.kind, entry.path.name                             # doctest: +SKIP
('single-file', 'v1-5-pruned-emaonly.safetensors')
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gouache.errors import GouacheError, InvalidArgument, ModelLoadError
from gouache.models import builtin
from gouache.models.home import models_dir
from gouache.models.names import Names

logger = logging.getLogger(__name__)

BUILTIN = builtin.NAME
KINDS = ("builtin", "diffusers", "single-file")
LISTED_SUFFIXES = (".safetensors", ".ckpt", ".pt")  # what a scan of checkpoints/ picks up
PATH_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")  # what an explicit path may be


def model_title(name: str, short_hash: str | None) -> str:
    """A1111's title of a model, ``name [hash]`` (what :data:`gouache.models.names.A1111_TITLE` reads); the name alone
    while the hash is not known.

    >>> model_title("gouache-tiny", "1a2b3c4d5e"), model_title("edges", None)
    ('gouache-tiny [1a2b3c4d5e]', 'edges')
    """
    return f"{name} [{short_hash}]" if short_hash else name


@dataclass(frozen=True)
class ModelEntry:
    """One loadable model. ``size`` is bytes on disk (0 for the built-in before its weights exist)."""

    name: str
    path: Path
    kind: str  # one of KINDS
    size: int


def _builtin_entry() -> ModelEntry:
    weights, _ = builtin.shipped_files()
    return ModelEntry(BUILTIN, weights, "builtin", weights.stat().st_size if weights.is_file() else 0)


def _folder_size(folder: Path) -> int:
    total = 0
    for f in folder.rglob("*"):
        try:
            total += f.stat().st_size if f.is_file() else 0
        except OSError:  # a dangling link or a file removed meanwhile: not this listing's problem
            continue
    return total


def _is_diffusers_folder(path: Path) -> bool:
    return (path / "model_index.json").is_file()


def list_models() -> list[ModelEntry]:
    """The built-in model first, then everything under ``models_dir("checkpoints")`` by name."""
    root = models_dir("checkpoints")
    found: list[ModelEntry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        folder = Path(dirpath)
        if folder != root and _is_diffusers_folder(folder):
            found.append(ModelEntry(folder.relative_to(root).as_posix(), folder, "diffusers", _folder_size(folder)))
            dirnames.clear()  # a diffusers folder's insides are not models of their own
            continue
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            path = folder / name
            if not name.startswith(".") and path.suffix.lower() in LISTED_SUFFIXES:
                try:
                    size = path.stat().st_size
                except OSError as err:  # a dangling link, a file without permission: listed elsewhere, skipped here
                    logger.warning("gouache: skipping checkpoint %s: %s", path, err.strerror or err)
                    continue
                found.append(ModelEntry(path.relative_to(root).as_posix(), path, "single-file", size))
    return [_builtin_entry(), *sorted(found, key=lambda e: e.name.lower())]


def _entry_for_path(path: Path) -> ModelEntry:
    root = models_dir("checkpoints")
    try:
        name = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        name = path.name
    if path.is_dir():
        if not _is_diffusers_folder(path):
            raise ModelLoadError(f"{path}: a folder, but not a diffusers model (it has no model_index.json)")
        return ModelEntry(name, path, "diffusers", _folder_size(path))
    if path.suffix.lower() not in PATH_SUFFIXES:
        raise ModelLoadError(
            f"{path}: unsupported checkpoint extension {path.suffix or '(none)'!r}; "
            f"expected one of {', '.join(PATH_SUFFIXES)} or a diffusers folder"
        )
    return ModelEntry(name, path, "single-file", path.stat().st_size)


def _stem(entry: ModelEntry) -> str:
    return entry.name[: -len(entry.path.suffix)] if entry.kind == "single-file" else entry.name


def model_name(entry: ModelEntry) -> str:
    """A1111's ``model_name``: the name without its extension, ``/`` replaced by ``_``."""
    return _stem(entry).replace("/", "_")


def _tiers(entry: ModelEntry) -> tuple[tuple[str, ...], ...]:
    if entry.kind == "builtin":
        return ((entry.name,),)
    stems = (_stem(entry), entry.path.stem) if entry.kind == "single-file" else (entry.name,)
    return (entry.name,), (entry.path.name,), stems, (model_name(entry),)


def model_names() -> Names[ModelEntry]:
    """Every listed model by name (:mod:`gouache.models.names`): the built-in first, then ``checkpoints/``."""
    entries = list_models()
    return Names("model", (entries[:1], entries[1:]), _tiers, lambda e: e.name)


def resolve_model(name_or_path: str | os.PathLike | None) -> ModelEntry:
    """The :class:`ModelEntry` a name or path refers to; see the module docstring for the rules.

    >>> resolve_model(None).name
    'gouache-tiny'
    """
    text = "" if name_or_path is None else str(name_or_path).strip()
    if text in ("", BUILTIN):
        return _builtin_entry()
    return model_names().resolve(text, _entry_for_path, PATH_SUFFIXES, hint=(
        f". Put .safetensors/.ckpt files or diffusers folders in {models_dir('checkpoints')} (or set GOUACHE_HOME), "
        f"or pass a path"))


def _tokenizer_pad(folder: Path, name: str) -> str:
    """SD 2.x's and SDXL's OpenCLIP towers pad with "!", OpenAI's CLIP with end-of-text."""
    from gouache.models.detect import BANG_PAD, EOS_PAD

    encoder = folder / name.replace("tokenizer", "text_encoder") / "config.json"
    try:
        act = json.loads(encoder.read_text()).get("hidden_act")
    except (OSError, ValueError):
        act = None
    return BANG_PAD if act == "gelu" else EOS_PAD  # OpenAI CLIP uses quick_gelu, OpenCLIP gelu


def _dtype_kwargs(dtype) -> dict:
    # diffusers renamed from_pretrained's `torch_dtype` to `dtype` (with _resolve_dtype) and warns
    # on the old name; older releases know only `torch_dtype`.
    from diffusers.pipelines import pipeline_utils

    return {"dtype": dtype} if hasattr(pipeline_utils, "_resolve_dtype") else {"torch_dtype": dtype}


HEAVY_COMPONENTS = ("unet", "text_encoder", "text_encoder_2", "vae")


def _load_diffusers_folder(folder: Path, dtype):
    """``dtype``: a torch dtype, or ``dtype(unet_parameters) -> dtype`` to choose once the UNet is known.

    The big components load one at a time in fp32 (diffusers' own casting while loading is several
    times slower) and are cast before the next loads, so peak memory stays near one fp32 component
    plus the rest in the target dtype."""
    import gc
    import importlib

    import torch
    from diffusers import DiffusionPipeline

    from gouache.models.clip_tokenizer import load_clip_tokenizer

    index = json.loads((folder / "model_index.json").read_text())
    extra = {}
    for name in HEAVY_COMPONENTS:
        spec = index.get(name)
        if not isinstance(spec, list) or spec[0] not in ("diffusers", "transformers") or not (folder / name).is_dir():
            continue
        cls = getattr(importlib.import_module(spec[0]), spec[1])
        kwargs = {"local_files_only": True} if spec[0] == "transformers" else {}
        extra[name] = cls.from_pretrained(folder / name, **kwargs).eval()
        if callable(dtype) and not isinstance(dtype, torch.dtype):
            dtype = dtype(sum(p.numel() for p in extra[name].parameters())) if name == "unet" else torch.float32
        _cast(extra[name], dtype)
        gc.collect()
    for name, spec in index.items():
        if not isinstance(spec, list) or spec[0] is None or (folder / name).is_dir():
            continue
        if name.startswith("tokenizer"):  # folders converted from single files often lack these
            extra[name] = load_clip_tokenizer(pad_token=_tokenizer_pad(folder, name))
        elif name in ("safety_checker", "feature_extractor", "image_encoder"):
            extra[name] = None
    if "safety_checker" in extra:
        extra["requires_safety_checker"] = False
    if not isinstance(dtype, torch.dtype):
        dtype = torch.float32
    return DiffusionPipeline.from_pretrained(folder, local_files_only=True, **_dtype_kwargs(dtype), **extra)


def _cast(module, dtype) -> None:
    """``module.to(dtype)`` without diffusers' warning that SD's components have nothing to keep in fp32."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        module.to(dtype)
    finally:
        diffusers_logging.set_verbosity(level)


@contextmanager
def quiet_libraries():
    """diffusers' and transformers' loading chatter off (their progress bars, and warnings such as
    "requires torchvision" that are not the user's to act on), put back as it was afterwards.
    gouache's own progress and errors are unaffected."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    levels = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()
    bars = diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled()
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(levels[0])
        transformers_logging.set_verbosity(levels[1])
        if bars[0]:
            diffusers_logging.enable_progress_bar()
        if bars[1]:
            transformers_logging.enable_progress_bar()


def load_pipeline(name_or_path: str | os.PathLike | None, dtype=None):
    """:func:`_load_pipeline`, with the libraries' loading chatter off (:func:`quiet_libraries`)."""
    with quiet_libraries():
        return _load_pipeline(name_or_path, dtype)


def _load_pipeline(name_or_path: str | os.PathLike | None, dtype=None):
    """``(pipeline, entry)`` for a model name or path, loaded offline; ``dtype`` defaults to float32,
    and may be ``dtype(unet_parameters) -> torch.dtype`` to choose by the model's size.

    The built-in model is materialised under ``models_dir("builtin")`` on first use and loaded with
    ``StableDiffusionPipeline.from_pretrained``; diffusers folders with
    ``DiffusionPipeline.from_pretrained(local_files_only=True)`` (missing tokenizers are built from
    openai-clip's vocabulary); single files with :func:`~gouache.models.single_file.load_single_file`.

    >>> pipe, entry = load_pipeline("gouache-tiny")      # doctest: +SKIP
    """
    entry = resolve_model(name_or_path)
    import torch

    dtype = torch.float32 if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) and not callable(dtype):
        raise InvalidArgument(f"`dtype` must be a torch.dtype such as torch.float16, not {dtype!r}")
    chosen = dtype
    if entry.kind != "diffusers" and not isinstance(dtype, torch.dtype):
        dtype = torch.float32  # small (the built-in) or one file: load in fp32, then choose and cast
    try:
        if entry.kind == "builtin":
            from diffusers import StableDiffusionPipeline

            folder = builtin.materialize(models_dir("builtin"))
            pipe = StableDiffusionPipeline.from_pretrained(
                folder,
                safety_checker=None,
                requires_safety_checker=False,
                local_files_only=True,
                **_dtype_kwargs(dtype),
            )
        elif entry.kind == "diffusers":
            pipe = _load_diffusers_folder(entry.path, dtype)
        else:
            from gouache.models.single_file import load_single_file

            pipe = load_single_file(entry.path, dtype=dtype)
    except GouacheError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
        raise ModelLoadError(
            f"{entry.path}: cannot load {entry.kind} model {entry.name!r}: {type(e).__name__}: {e}"
        ) from e
    if not isinstance(chosen, torch.dtype):
        target = chosen(sum(p.numel() for p in pipe.unet.parameters()))
        for name in HEAVY_COMPONENTS:
            if getattr(pipe, name, None) is not None:
                _cast(getattr(pipe, name), target)
    return pipe, entry
