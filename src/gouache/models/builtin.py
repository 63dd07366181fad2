"""The built-in gouache-tiny and the examples that ship with it: where their files lie in the
package, the packed format, and the diffusers folder the model becomes on first use.

Everything gouache ships trained lies under :func:`weights_dir` (``gouache/models/weights``):
``gouache-tiny.safetensors`` + ``gouache-tiny.json``, and the examples by kind (``lora/``,
``embeddings/``, ``controlnet/``). The packed model is one ``.safetensors`` file (every component's
weights, prefixed ``vae.``, ``text_encoder.``, ``unet.``, stored in float16 to stay small) and a JSON
file with the architecture it is rebuilt from (:class:`~gouache.models.tiny_architecture.TinyConfig`),
the VAE's latent scaling factor and the model's facts (:mod:`gouache.models.facts`). On first use
:func:`materialize` writes a complete folder — weights, configs, tokenizer files, scheduler,
``model_index.json``, ``gouache.json`` — that plain ``diffusers.StableDiffusionPipeline.from_pretrained``
loads. Nothing here imports torch until weights are read or written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from importlib import resources
from pathlib import Path

from gouache.errors import ModelLoadError, UnknownName
from gouache.models.facts import ModelFacts, read_facts, write_facts
from gouache.models.tiny_architecture import SCHEDULER_CONFIG, TinyConfig, build_text_encoder, build_unet, build_vae

NAME = "gouache-tiny"
COMPONENTS = ("vae", "text_encoder", "unet")
EXAMPLE_KINDS = ("lora", "embeddings", "controlnet", "ip-adapter", "motion")


def weights_dir() -> Path:
    """The package's folder of shipped weights: the built-in model and every example below it."""
    return Path(str(resources.files("gouache.models") / "weights"))


def shipped_files() -> tuple[Path, Path]:
    """The packed built-in model: ``(weights, json)``."""
    base = weights_dir()
    return base / f"{NAME}.safetensors", base / f"{NAME}.json"


def builtin_adapters(kind: str) -> Path:
    """The folder of the examples of ``kind`` that ship with gouache-tiny: ``lora`` (gouache-outline,
    gouache-tiny-lcm), ``embeddings`` (sks), ``controlnet`` (gouache-tiny-edges), ``ip-adapter``
    (gouache-tiny-ip-adapter) or ``motion`` (gouache-tiny-motion)."""
    if kind not in EXAMPLE_KINDS:
        raise UnknownName(f"no shipped examples of kind {kind!r}; kinds: {', '.join(EXAMPLE_KINDS)}")
    return weights_dir() / kind


def pack(vae, text_encoder, unet, cfg: TinyConfig, out: Path, facts: ModelFacts | None = None,
         extra: dict | None = None) -> Path:
    """Write the packed pair ``{out}.safetensors`` + ``{out}.json`` from trained components; the
    ``.json`` carries ``facts`` and then ``extra``'s keys (which win)."""
    import torch
    from safetensors.torch import save_file

    tensors = {}
    for prefix, module in zip(COMPONENTS, (vae, text_encoder, unet)):
        for k, v in module.state_dict().items():
            tensors[f"{prefix}.{k}"] = v.detach().to(torch.float16).contiguous()
    meta = {"name": NAME, "config": cfg.to_dict(), "scaling_factor": vae.config.scaling_factor,
            **(facts.to_dict() if facts is not None else {}), **(extra or {})}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".safetensors.tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.chmod(tmp, 0o644)  # a file to ship and share, not a private one
    os.replace(tmp, out.with_suffix(".safetensors"))
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return out.with_suffix(".safetensors")


def load_components(weights: Path, meta_path: Path) -> tuple:
    """Build (vae, text_encoder, unet, meta) from a packed pair, in float32."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        meta = json.loads(Path(meta_path).read_text())
        cfg = TinyConfig.from_dict(meta["config"])
        state = load_file(str(weights))
        meta["scaling_factor"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, SafetensorError) as e:
        raise ModelLoadError(f"{weights}: not a packed gouache-tiny (its .safetensors and .json side by side, "
                             f"as `gouache train base` writes them): {type(e).__name__}: {e}") from None
    modules = (build_vae(cfg), build_text_encoder(cfg), build_unet(cfg))
    for prefix, module in zip(COMPONENTS, modules):
        sub = {k[len(prefix) + 1 :]: v.float() for k, v in state.items() if k.startswith(prefix + ".")}
        missing, unexpected = module.load_state_dict(sub, strict=False)
        # transformers keeps `position_ids` as a non-persistent buffer in some versions
        missing = [m for m in missing if not m.endswith("position_ids")]
        if missing or unexpected:
            raise ModelLoadError(f"{weights}: {prefix} weights do not match ({missing[:3]} {unexpected[:3]})")
    modules[0].register_to_config(scaling_factor=meta["scaling_factor"])
    return (*modules, meta)


PIPELINE_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.30.0",
    "feature_extractor": [None, None],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", SCHEDULER_CONFIG["_class_name"]],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def write_pipeline_folder(vae, text_encoder, unet, folder: Path, facts: ModelFacts | None = None) -> Path:
    """Write a diffusers ``StableDiffusionPipeline`` folder atomically (temp folder + rename), with
    ``facts`` in its ``gouache.json`` when given."""
    from gouache.models.clip_tokenizer import write_tokenizer_files

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    vae.save_pretrained(tmp / "vae", safe_serialization=True)
    text_encoder.save_pretrained(tmp / "text_encoder", safe_serialization=True)
    unet.save_pretrained(tmp / "unet", safe_serialization=True)
    write_tokenizer_files(tmp / "tokenizer")
    (tmp / "scheduler").mkdir()
    (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER_CONFIG, indent=2))
    (tmp / "model_index.json").write_text(json.dumps(PIPELINE_INDEX, indent=2))
    if facts is not None:
        write_facts(tmp, facts)
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, folder)
    return folder


def shipped_hash() -> str:
    weights, _ = shipped_files()
    return hashlib.sha256(weights.read_bytes()).hexdigest()


def materialize(models_root: Path) -> Path:
    """The built-in model as a diffusers folder under ``models_root``, written on first use, its
    ``gouache.json`` carrying the facts of the packed ``.json``.

    The folder name carries the first hex digits of the shipped weights' hash and of the configs it
    writes (scheduler, facts), so a new release never meets a stale folder.
    """
    weights, meta = shipped_files()
    if not weights.is_file():
        raise ModelLoadError(f"the built-in model's weights are missing from the package: {weights}")
    facts = read_facts(weights)
    configs = {"scheduler": SCHEDULER_CONFIG, "facts": facts.to_dict()}
    digest = hashlib.sha256(json.dumps(configs, sort_keys=True).encode()).hexdigest()
    folder = Path(models_root) / f"{NAME}-{shipped_hash()[:10]}-{digest[:6]}"
    if (folder / "model_index.json").is_file():
        return folder
    vae, te, unet, _ = load_components(weights, meta)
    return write_pipeline_folder(vae, te, unet, folder, facts)
