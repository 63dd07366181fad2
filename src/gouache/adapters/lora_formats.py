"""LoRA files in the community's layouts, rewritten into the one layout gouache hands to diffusers.

Layouts read (facts in ``reference/lora-ti-formats.md``):

* kohya-ss / A1111 "LoRA": ``lora_unet_<module>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``,
  ``lora_te_text_model_<module>...`` (``lora_te1_``/``lora_te2_`` for SDXL's two encoders), including
  LyCORIS LoCon's 3x3 convolutions (``down [r, in, 3, 3]``, ``up [out, r, 1, 1]``);
* diffusers: ``unet.<module>.lora.down.weight`` / ``.lora.up.weight``, text encoders'
  ``lora_linear_layer.down/up``;
* PEFT: ``unet.<module>.lora_A.weight`` / ``.lora_B.weight`` (what diffusers saves today), and a PEFT
  adapter folder (``adapter_model.safetensors`` with ``base_model.model.<module>`` keys beside
  ``adapter_config.json``, whose ``lora_alpha / r`` is the scale);
* diffusers' legacy attention processors: ``<block>.attn1.processor.to_q_lora.down.weight``.

Every module is looked up by its real name in the loaded model (kohya's underscored names are matched
against the model's own module names, so no name-repair rules are guessed), every shape is checked,
and kohya's ``alpha / rank`` is folded into the up matrix. The result has scale 1: PEFT's names for
the UNet, ``unet.<module>.lora_A.weight`` (down) / ``.lora_B.weight`` (up · alpha/rank), and diffusers'
``text_encoder.<module>.lora_linear_layer.down/up.weight`` for text encoders (diffusers' loader maps
those to PEFT's for every layer; a PEFT-named text-encoder dict of MLP layers only, it cannot read).
This diffusers' ``load_lora_weights`` reads with no guessing of its own. It also sidesteps a silent
loss in diffusers' kohya converter (text-encoder attention keys of a file without ``out_proj``
became ``to_q_lora`` keys that loaded nowhere, with only a warning). A layout not listed here
on an SDXL model (kohya files with SGM block names) is left to diffusers' own converters; on an SD
1.x/2.x model a key that names no layer is an error, never silently dropped.

>>> sd = read_lora_file("pixel-art.safetensors")                            # doctest: +SKIP
>>> normalise(sd, model.pipeline, "pixel-art.safetensors")                  # doctest: +SKIP
{'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight': tensor(...), ...}
"""

from __future__ import annotations

import json
import math
import pickle
import re
from pathlib import Path

import torch

from gouache.errors import ModelLoadError

COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
KOHYA_PREFIXES = {"lora_unet_": "unet", "lora_te_": "text_encoder", "lora_te1_": "text_encoder",
                  "lora_te2_": "text_encoder_2"}
# key ending -> role; longest first so ".lora.down.weight" is not read as ".down.weight"
SUFFIXES = {
    ".lora_down.weight": "down", ".lora_up.weight": "up", ".alpha": "alpha",
    ".lora_A.weight": "down", ".lora_B.weight": "up",
    ".lora.down.weight": "down", ".lora.up.weight": "up",
    ".lora_linear_layer.down.weight": "down", ".lora_linear_layer.up.weight": "up",
}
LEGACY = re.compile(r"^(.*)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$")
PEFT_ADAPTER = "adapter_model.safetensors"


def read_lora_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a LoRA file (``.safetensors`` with safetensors, anything else only with
    ``torch.load(weights_only=True)``), or one :class:`ModelLoadError` line saying why not."""
    from safetensors import SafetensorError

    path = Path(path)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, EOFError, OSError, RuntimeError, ValueError) as e:
        raise ModelLoadError(f"{path}: cannot read this LoRA file ({type(e).__name__}: {_first_line(e)})") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelLoadError(f"{path}: not a LoRA file (it holds no tensors by name)")
    return data


def peft_scale(path: Path) -> float | None:
    """``lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA) of a PEFT adapter folder's config, or None for
    a file that is not ``adapter_model.safetensors``."""
    config_path = path.with_name("adapter_config.json")
    if path.name != PEFT_ADAPTER or not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text())
        r, alpha = float(config["r"]), float(config.get("lora_alpha", config["r"]))
    except (ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(f"{config_path}: not a PEFT LoraConfig ({type(e).__name__}: {e})") from None
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ModelLoadError(f"{config_path}: per-module rank_pattern/alpha_pattern is not supported")
    return alpha / (math.sqrt(r) if config.get("use_rslora") else r)


def normalise(state_dict: dict[str, torch.Tensor], pipe, path: Path, scale: float | None = None
              ) -> dict[str, torch.Tensor] | None:
    """``state_dict`` in the layout above, with scale 1, for the components of ``pipe``, or None when it
    is in none of the layouts above but looks like LoRA for SDXL (left to diffusers).

    ``scale`` multiplies every module's update (a PEFT folder's ``lora_alpha / r``); kohya's
    per-module ``alpha / rank`` is applied on top.
    """
    modules = _module_index(pipe)
    parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        found = _parse(key, modules)
        if found is None:
            if not any(s in key.lower() for s in ("lora", "alpha", "hada", "lokr")):
                raise ModelLoadError(f"{path}: not a LoRA file (unexpected key {key!r})")
            if "text_encoder_2" in modules:
                return None  # SDXL kohya files name UNet blocks the SGM way: diffusers maps those
            raise ModelLoadError(f"{path}: {key!r} names no layer of this model: a LoRA for another model "
                                 "(SDXL, SD 2) or a layout gouache does not read (LoHa, LoKr)")
        target, role = found
        parts.setdefault(target, {})[role] = tensor
    if not parts:
        raise ModelLoadError(f"{path}: not a LoRA file (it holds no tensors)")
    out = {}
    for (component, name), p in parts.items():
        if "down" not in p or "up" not in p:
            raise ModelLoadError(f"{path}: module {name} of the {component} lacks its "
                                 f"{'up' if 'down' in p else 'down'} weights; the file is incomplete")
        down, up = p["down"].float(), p["up"].float()
        _check_shapes(path, component, name, down, up, modules[component][name].weight)
        rank = down.shape[0]
        alpha = float(p["alpha"]) if "alpha" in p and float(p["alpha"]) != 0 else rank  # kohya: no alpha = rank
        factor = (alpha / rank) * (1.0 if scale is None else scale)
        # text encoders: diffusers' own names, which its loader maps to PEFT's for every layer (it cannot
        # tell the type of a PEFT-named dict that holds only MLP layers, and raises)
        a, b = ("lora_A", "lora_B") if component == "unet" else ("lora_linear_layer.down", "lora_linear_layer.up")
        out[f"{component}.{name}.{a}.weight"] = down
        out[f"{component}.{name}.{b}.weight"] = up * factor
    return out


def _module_index(pipe) -> dict[str, dict[str, torch.nn.Module]]:
    """component -> {module name: Linear/Conv2d} for every LoRA-able layer of the pipeline, and
    "flat:" + component -> {name with "_" for ".": name}."""
    index = {}
    for component in COMPONENTS:
        model = getattr(pipe, component, None)
        if model is not None:
            layers = ((n, getattr(m, "base_layer", m)) for n, m in model.named_modules()  # peft wraps loaded ones
                      if ".lora_" not in n and not n.endswith(".base_layer"))
            index[component] = {n: m for n, m in layers if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}
            index["flat:" + component] = {n.replace(".", "_"): n for n in index[component]}  # kohya's names
    return index


def _parse(key: str, modules: dict) -> tuple[tuple[str, str], str] | None:
    """((component, module name), "down"/"up"/"alpha") of one key, or None if no layout fits."""
    legacy = LEGACY.match(key)
    if legacy:
        block, proj, role = legacy.groups()
        return _find("unet", f"{block}.{proj}" + (".0" if proj == "to_out" else ""), modules), role
    for suffix, role in SUFFIXES.items():
        if key.endswith(suffix):
            target = _target(key[: -len(suffix)], modules)
            return (target, role) if target is not None else None
    return None


def _target(stem: str, modules: dict) -> tuple[str, str] | None:
    for prefix, component in KOHYA_PREFIXES.items():
        if stem.startswith(prefix):  # underscored path: matched against the model's own names
            flat = stem[len(prefix):]
            names = modules.get("flat:" + component, {})
            name = names.get(flat) or names.get(flat.removeprefix("text_model_"))
            return (component, name) if name is not None else None
    stem = stem.removeprefix("base_model.model.")
    for component in COMPONENTS:
        if stem.startswith(component + "."):
            return _find(component, stem[len(component) + 1:], modules)
    return _find("unet", stem, modules)  # no prefix: a UNet-only file (attn procs, PEFT folder)


def _find(component: str, name: str, modules: dict) -> tuple[str, str] | None:
    names = modules.get(component, {})
    for candidate in (name, name.removeprefix("text_model."), "text_model." + name):
        if candidate in names:
            return component, candidate
    return None


def _check_shapes(path, component, name, down, up, weight) -> None:
    out_features, in_features = weight.shape[:2]
    ok = (down.ndim == up.ndim == weight.ndim and up.shape[1] == down.shape[0]
          and down.shape[1] == in_features and up.shape[0] == out_features
          and (weight.ndim == 2 or (down.shape[2:] == weight.shape[2:] and up.shape[2:] == (1, 1))))
    if not ok:
        raise ModelLoadError(f"{path}: LoRA weights down {tuple(down.shape)} / up {tuple(up.shape)} do not fit "
                             f"{component} module {name} {tuple(weight.shape)}; was it made for another model?")


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0]
