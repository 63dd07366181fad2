"""LoRA named in prompts (``<lora:name:weight>``): found in ``$GOUACHE_HOME/lora``, loaded once per
model through diffusers' LoRA loader (which reads diffusers/peft and kohya/A1111 key layouts into
peft layers), and switched on with their text-encoder and UNet multipliers for each generation.

>>> requests = lora_requests("a castle <lora:pixel-art:0.7>")       # doctest: +SKIP
>>> [(r.name, r.te, r.unet) for r in requests]                      # doctest: +SKIP
[('pixel-art', 0.7, 0.7)]
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from gouache.errors import ModelLoadError, UnknownName

SUFFIXES = (".safetensors", ".pt", ".ckpt", ".bin")


@dataclass(frozen=True)
class LoraRequest:
    name: str
    te: float
    unet: float


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


def find_lora(name: str, folder: Path | None = None) -> Path:
    """The file of a LoRA named in a prompt: its stem (or relative path) in the lora folder."""
    from gouache.models.home import models_dir

    folder = Path(folder) if folder is not None else models_dir("lora")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()) if folder.is_dir() else []
    for p in files:
        rel = p.relative_to(folder)
        if name in (p.stem, p.name, str(rel), str(rel.with_suffix(""))):
            return p
    available = ", ".join(p.stem for p in files) or "none"
    raise UnknownName(f"LoRA {name!r} not found in {folder} (available: {available})")


def short_hash(path: Path) -> str:
    """First 12 hex digits of the file's sha256, as A1111's "Lora hashes" records it."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def _adapter_name(name: str) -> str:
    return "lora_" + re.sub(r"\W", "_", name)  # peft adapter names become module attribute names


def activate(model, requests: list[LoraRequest]) -> dict[str, str]:
    """Load (once) and switch on exactly the requested LoRA on ``model``; returns {name: hash}.

    With no request, every LoRA loaded before is switched off, so a prompt without tags gives
    the base model's image.
    """
    requests = list({r.name: r for r in requests}.values())  # a name given twice: the last tag wins
    pipe = model.pipeline
    loaded: dict[str, tuple[Path, str]] = model.__dict__.setdefault("_loras", {})  # name -> (file, hash)
    hashes = {}
    for r in requests:
        if r.name not in loaded:
            path = find_lora(r.name)
            try:
                pipe.load_lora_weights(str(path), adapter_name=_adapter_name(r.name))
            except (ValueError, KeyError, RuntimeError, OSError) as e:
                raise ModelLoadError(f"{path}: cannot load this LoRA into {model.name}: {e}") from None
            loaded[r.name] = (path, short_hash(path))  # hashed once, not at every generation
        hashes[r.name] = loaded[r.name][1]
    if not loaded:
        return hashes
    if not requests:
        pipe.disable_lora()
        return hashes
    pipe.enable_lora()
    components = [c for c in ("unet", "text_encoder", "text_encoder_2") if getattr(pipe, c, None) is not None]
    weights = [{c: (r.unet if c == "unet" else r.te) for c in components} for r in requests]
    pipe.set_adapters([_adapter_name(r.name) for r in requests], adapter_weights=weights)
    return hashes
