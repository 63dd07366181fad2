"""LoRA named in prompts (``<lora:name:weight>``), on the command line (``--lora name:0.8``) or in
Python: found in ``$GOUACHE_HOME/lora``, loaded once per model, and switched on with their
text-encoder and UNet multipliers for each generation; several at once, each with its own weights.

Files are read in kohya/A1111 (LoRA and LyCORIS LoCon), diffusers, PEFT (files and adapter folders)
and legacy attention-processor layouts (:mod:`gouache.adapters.lora_formats` rewrites them into the
layout diffusers reads), then loaded through diffusers' LoRA loader into peft layers. The effect of
a LoRA at multiplier ``m`` is A1111's and kohya's ``W + m · (up @ down) · alpha / rank``.

>>> requests = lora_requests("a castle <lora:pixel-art:0.7>")       # doctest: +SKIP
>>> [(r.name, r.te, r.unet) for r in requests]                      # doctest: +SKIP
[('pixel-art', 0.7, 0.7)]
>>> fuse(model, requests)          # merged into the weights: no LoRA cost per step    # doctest: +SKIP
>>> unfuse(model)                  # the base weights back                             # doctest: +SKIP

A request in Python is a prompt tag (``GenerationRequest("a castle <lora:pixel-art:0.7>")``) or a
:class:`LoraRequest` given to :func:`activate` / :func:`fuse`. A LoRA outside the lora folder is
given by its path, in Python and on the command line only: :func:`use_lora_file` loads it under its
stem, which prompt tags then name (prompt tags themselves, and so the HTTP API, name LoRA only).

>>> name = use_lora_file(model, "runs/cats/cats.safetensors")    # 'cats'           # doctest: +SKIP
>>> txt2img(model, GenerationRequest(f"a cat <lora:{name}:0.8>"))                    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gouache.adapters.lora_formats import PEFT_ADAPTER, normalise, peft_scale, read_lora_file
from gouache.errors import InvalidArgument, ModelLoadError, UnknownName

SUFFIXES = (".safetensors", ".pt", ".ckpt", ".bin")


@dataclass(frozen=True)
class LoraRequest:
    """One LoRA and its multipliers: ``te`` for the text encoder(s), ``unet`` for the UNet
    (``<lora:name:te:unet>``)."""

    name: str
    te: float
    unet: float
    path: Path | None = None  # a file (or PEFT adapter folder) outside the lora folder; None: found by name


def lora_requests(prompt: str) -> list[LoraRequest]:
    """The ``<lora:...>`` tags of a prompt, with A1111's multiplier rules (first number: text
    encoder, second: UNet, defaulting to the first)."""
    from gouache.prompts.compose import extract_extra_networks, lora_multipliers

    _, networks = extract_extra_networks(prompt)
    out = []
    for net in networks:
        if net.kind == "lora":
            m = lora_multipliers(net)
            out.append(LoraRequest(net.name, m.te, m.unet))
    return out


def _lora_folders(folder: Path | None = None) -> list[Path]:
    """Where LoRA are looked for, first first: ``folder``, or the user's then the shipped examples."""
    from gouache.models.builtin import builtin_adapters
    from gouache.models.home import models_dir

    return [Path(folder)] if folder is not None else [models_dir("lora"), builtin_adapters("lora")]


def _lora_files(folder: Path) -> list[tuple[Path, PurePosixPath]]:
    """``(file, its name in the folder)`` for each LoRA under ``folder``: the path without the
    extension, a PEFT adapter folder's path for its ``adapter_model.safetensors``."""
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    return [(p, PurePosixPath(p.relative_to(folder).parent.as_posix() if p.name == PEFT_ADAPTER
                              else p.relative_to(folder).with_suffix("").as_posix())) for p in files]


def list_loras() -> dict[str, Path]:
    """Every LoRA a prompt can name: ``{name: file}``, the user's folder first, then the shipped examples."""
    out: dict[str, Path] = {}
    for folder in _lora_folders():
        for p, name in _lora_files(folder):
            out.setdefault(name.name, p)
    return out


def _tiers(entry: tuple[Path, PurePosixPath]) -> tuple[tuple[str, ...], ...]:
    p, name = entry
    if p.name == PEFT_ADAPTER:
        return (str(name),), (), (name.name,)
    return (str(name),), (p.name, f"{name}{p.suffix}"), (p.stem,)


def find_lora(name: str, folder: Path | None = None) -> Path:
    """The file of a LoRA named in a prompt: its path in the lora folder with or without the
    extension, its file name, or its stem; a PEFT adapter folder (``NAME/adapter_model.safetensors``)
    is named by its folder. Without ``folder``, the user's ``$GOUACHE_HOME/lora`` comes first, then
    the examples that ship with gouache (``gouache-outline``, trained for gouache-tiny). The rule is
    the one for checkpoints and ControlNets (:mod:`gouache.models.names`)."""
    from gouache.models.names import Names

    folders = _lora_folders(folder)
    names = Names("LoRA", [_lora_files(f) for f in folders], _tiers, lambda e: str(e[1]))
    hint = f". Put LoRA files or PEFT adapter folders in {folders[0]} (or set GOUACHE_HOME)"
    return names.lookup(name, hint)[0]


def lora_path(path: str | Path) -> Path:
    """The LoRA file at ``path`` (a ``.safetensors``/``.pt``/``.ckpt``/``.bin`` file or a PEFT adapter
    folder), checked: one :class:`UnknownName` or :class:`InvalidArgument` saying what is wrong."""
    p = Path(path).expanduser()
    if p.is_dir():
        if not (p / PEFT_ADAPTER).is_file():
            raise InvalidArgument(f"LoRA folder {p} has no {PEFT_ADAPTER}; give a LoRA file or a PEFT adapter folder")
        return p / PEFT_ADAPTER
    if not p.is_file():
        raise UnknownName(f"LoRA file {p} not found")
    if p.suffix.lower() not in SUFFIXES:
        raise InvalidArgument(f"LoRA file {p}: expected one of {', '.join(SUFFIXES)} or a PEFT adapter folder")
    return p


def lora_name(path: str | Path) -> str:
    """The name prompt tags and infotexts use for the LoRA at ``path``: the file's stem, or a PEFT
    adapter folder's name (as :func:`list_loras` names them)."""
    p = Path(path)
    p = p.parent if p.name == PEFT_ADAPTER else p
    return p.name if p.is_dir() or p.suffix.lower() not in SUFFIXES else p.stem


def use_lora_file(model, path: str | Path, name: str | None = None) -> str:
    """Load the LoRA at ``path`` into ``model`` as ``name`` (default: :func:`lora_name`), so that the
    prompt tag ``<lora:NAME:WEIGHT>`` uses this file rather than one found in the lora folder, and the
    infotext records NAME with this file's hash; returns NAME. Loading the same file again does nothing.

    >>> use_lora_file(model, "runs/cats/cats.safetensors")     # doctest: +SKIP
    'cats'
    """
    file = lora_path(path)
    name = name or lora_name(file)
    loaded: dict[str, tuple[Path, str]] = model.__dict__.setdefault("_loras", {})
    if name in loaded:
        if loaded[name][0].resolve() == file.resolve():
            return name
        unfuse(model)  # another file under this name: it replaces the one loaded before
        model.pipeline.delete_adapters([_adapter_name(name)])
        del loaded[name]
    load_lora(model, name, file)
    loaded[name] = (file, short_hash(file))
    return name


def short_hash(path: Path) -> str:
    """First 12 hex digits of the file's sha256, as A1111's "Lora hashes" records it."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def _adapter_name(name: str) -> str:
    return "lora_" + re.sub(r"\W", "_", name)  # peft adapter names become module attribute names


def load_lora(model, name: str, path: Path) -> None:
    """Load the LoRA file ``path`` into ``model`` as peft adapter ``name`` (switched off until
    :func:`activate`); any file that cannot be used is one :class:`ModelLoadError`."""
    pipe = model.pipeline
    state_dict = read_lora_file(path)
    converted = normalise(state_dict, pipe, path, peft_scale(path))
    try:
        pipe.load_lora_weights(converted if converted is not None else state_dict, adapter_name=_adapter_name(name))
    except (ValueError, KeyError, RuntimeError, OSError, TypeError, IndexError) as e:
        raise ModelLoadError(f"{path}: cannot load this LoRA into {model.name}: {_first_line(e)}") from None


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def activate(model, requests: list[LoraRequest]) -> dict[str, str]:
    """Load (once) and switch on exactly the requested LoRA on ``model``; returns {name: hash}.

    With no request, every LoRA loaded before is switched off, so a prompt without tags gives
    the base model's image. A model with LoRA fused into it (:func:`fuse`) stays fused for the
    same requests and is unfused first for any others.
    """
    requests = _unique(requests)
    for r in requests:
        if r.path is not None:
            use_lora_file(model, r.path, r.name)
    requests = [dataclasses.replace(r, path=None) for r in requests]  # loaded by name from here on
    if model.__dict__.get("_fused") is not None:
        if model.__dict__["_fused"] == requests:
            return {r.name: model.__dict__["_loras"][r.name][1] for r in requests}
        unfuse(model)
    pipe = model.pipeline
    loaded: dict[str, tuple[Path, str]] = model.__dict__.setdefault("_loras", {})  # name -> (file, hash)
    hashes = {}
    for r in requests:
        if r.name not in loaded:
            path = find_lora(r.name)  # by name only: prompt tags (and so the server) never name a path
            load_lora(model, r.name, path)
            loaded[r.name] = (path, short_hash(path))  # hashed once, not at every generation
        hashes[r.name] = loaded[r.name][1]
    if not loaded:
        return hashes
    if not requests:
        pipe.disable_lora()
        return hashes
    pipe.enable_lora()
    weights = [{c: (r.unet if c == "unet" else r.te) for c in _components(pipe)} for r in requests]
    pipe.set_adapters([_adapter_name(r.name) for r in requests], adapter_weights=weights)
    return hashes


def fuse(model, requests: list[LoraRequest]) -> dict[str, str]:
    """Merge the requested LoRA into the model's weights, ``W + m · (up @ down) · alpha/rank`` for
    each, so that sampling pays nothing for them (diffusers' ``fuse_lora``); returns {name: hash}.

    Generations whose prompt asks for exactly these LoRA and weights use the fused weights; any
    other request unfuses first. :func:`unfuse` gives the base weights back.

    >>> fuse(model, [LoraRequest("pixel-art", 0.7, 0.7)])          # doctest: +SKIP
    """
    requests = _unique(requests)
    if not requests:
        raise InvalidArgument("`requests` is empty: name at least one LoRA to fuse, e.g. [LoraRequest('x', 1.0, 1.0)]")
    hashes = activate(model, requests)
    if model.__dict__.get("_fused") is None:
        pipe = model.pipeline
        pipe.fuse_lora(components=_components(pipe), lora_scale=1.0,
                       adapter_names=[_adapter_name(r.name) for r in requests])
        model.__dict__["_fused"] = requests
    return hashes


def unfuse(model) -> None:
    """Take fused LoRA out of the weights again (nothing to do if none are fused)."""
    if model.__dict__.get("_fused") is None:
        return
    pipe = model.pipeline
    pipe.unfuse_lora(components=_components(pipe))
    model.__dict__["_fused"] = None


def _unique(requests: list[LoraRequest]) -> list[LoraRequest]:
    return list({r.name: r for r in requests}.values())  # a name given twice: the last one wins


def _components(pipe) -> list[str]:
    return [c for c in ("unet", "text_encoder", "text_encoder_2") if getattr(pipe, c, None) is not None]
