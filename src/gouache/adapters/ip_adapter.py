"""IP-Adapter weights: found by name, read in the layouts people have, checked against the model.

Where they are looked for, first first: ``$GOUACHE_HOME/ip-adapter/`` (any depth), then the ones
gouache ships (``gouache-tiny-ip-adapter``, in ``gouache/models/weights/ip-adapter/``). The layouts:

- h94's single files, ``ip-adapter_sd15.safetensors`` and friends: keys ``image_proj.*`` (the image
  projection: ``proj.weight``/``norm.*`` for the plain adapter, the Resampler's ``latents``,
  ``proj_in``, ``layers.*`` for the "plus" ones) and ``ip_adapter.{2i+1}.to_k_ip.weight`` /
  ``to_v_ip.weight`` for cross-attention layer ``i``; the ``.bin`` is the nested dict
  ``{"image_proj": …, "ip_adapter": …}``, read only with ``torch.load(weights_only=True)``;
- the SDXL ones, the same keys for SDXL's 70 cross-attention layers;
- a folder (what diffusers' ``load_ip_adapter(folder, weight_name=…)`` reads, h94's ``models/``):
  weight files beside an ``image_encoder/`` folder.

The image projection is converted by diffusers' own ``_convert_ip_adapter_image_proj_to_diffusers``.
The image encoder is a transformers ``CLIPVisionModelWithProjection`` folder: the one a ``NAME.json``
beside the weights names (``{"image_encoder": "PATH or CLIP name"}``; the built-in adapter's names
``gouache-tiny-clip``, whose vision tower it reads), else ``image_encoder/`` beside the weights.
A full ``CLIPModel`` folder works too (its vision tower is taken).

>>> adapter = load_ip_adapter("gouache-tiny-ip-adapter", model.unet)   # doctest: +SKIP
>>> adapter.title, adapter.tokens                                      # doctest: +SKIP
('gouache-tiny-ip-adapter [1a2b3c4d]', 4)
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from gouache.adapters.ip_attention import cross_attention_layers
from gouache.errors import GouacheError, InvalidArgument, ModelLoadError

SUFFIXES = (".safetensors", ".bin")
BUILTIN = "gouache-tiny-ip-adapter"
KIND = "ip-adapter"  # the models folder and the shipped examples' folder
ENCODER_FOLDER = "image_encoder"
# (cross-attention layers, text width) -> the base they fit, for messages
BASES = {(16, 768): "SD 1.5", (16, 1024): "SD 2.x", (70, 2048): "SDXL"}


@dataclass(frozen=True)
class IPAdapterEntry:
    """An IP-Adapter on disk: its listed name and weights file."""

    name: str
    path: Path


def _folders() -> list[Path]:
    from gouache.models.builtin import builtin_adapters
    from gouache.models.home import models_dir

    return [models_dir(KIND), builtin_adapters(KIND)]


def _is_model_folder(folder: Path) -> bool:
    """A transformers or diffusers model folder (an image encoder), not a folder of adapters."""
    return folder.name == ENCODER_FOLDER or (folder / "config.json").is_file()


def _entries(root: Path) -> list[IPAdapterEntry]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        folder = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not _is_model_folder(folder / d))
        for name in sorted(filenames):
            path = folder / name
            if not name.startswith(".") and path.suffix.lower() in SUFFIXES:
                found.append(IPAdapterEntry(PurePosixPath(path.relative_to(root).with_suffix("").as_posix()).as_posix(),
                                            path))
    return found


def list_ip_adapters() -> list[IPAdapterEntry]:
    """Every IP-Adapter a name can pick: the user's folder, then the shipped ones."""
    return [e for folder in _folders() if folder.is_dir() for e in _entries(folder)]


def _tiers(e: IPAdapterEntry) -> tuple[tuple[str, ...], ...]:
    parent = PurePosixPath(e.name).parent
    alone = bool(parent.name) and len([p for p in e.path.parent.iterdir() if p.suffix.lower() in SUFFIXES]) == 1
    return (e.name,), (e.path.name, e.name + e.path.suffix), (e.path.stem,), ((parent.name,) if alone else ())


def _names():
    from gouache.models.names import Names

    return Names("IP-Adapter", [_entries(f) for f in _folders() if f.is_dir()], _tiers, lambda e: e.name)


def _hint() -> str:
    return f". Put IP-Adapter files (with their {ENCODER_FOLDER}/ folder) in {_folders()[0]} (or set GOUACHE_HOME)"


def find_ip_adapter(name: str) -> IPAdapterEntry:
    """The listed IP-Adapter ``name`` means (its path in the folder with or without the extension,
    its file name, its stem, the folder that holds only it, or A1111's ``name [hash]``), never opened
    as a path: the rule for names from the API. Unknown names list what is installed."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument("an IP-Adapter name is empty; give a name from $GOUACHE_HOME/ip-adapter, "
                              f"e.g. {BUILTIN}")
    return _names().lookup(name, _hint())


def resolve_ip_adapter(name_or_path: str | Path) -> IPAdapterEntry:
    """A listed name, or (Python and the command line) a weights file or a folder holding one."""
    text = str(name_or_path).strip()
    if not text:
        raise InvalidArgument("an IP-Adapter name is empty; give a name from $GOUACHE_HOME/ip-adapter or a path")
    return _names().resolve(text, _entry_for_path, SUFFIXES, _hint())


def _entry_for_path(path: Path) -> IPAdapterEntry:
    if path.is_dir():
        files = [p for p in sorted(path.iterdir()) if p.suffix.lower() in SUFFIXES and p.is_file()]
        if len(files) != 1:
            raise ModelLoadError(f"{path}: an IP-Adapter folder holds one weights file ({', '.join(SUFFIXES)}) beside "
                                 f"its {ENCODER_FOLDER}/; found {len(files)}")
        return IPAdapterEntry(path.name, files[0])
    if path.suffix.lower() not in SUFFIXES:
        raise ModelLoadError(f"{path}: unsupported IP-Adapter file {path.suffix!r}; expected one of {', '.join(SUFFIXES)}")
    return IPAdapterEntry(path.stem, path)


def read_ip_adapter_file(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    """``{"image_proj": {...}, "ip_adapter": {...}}`` of an h94 file (diffusers' ``load_ip_adapter``
    split of a ``.safetensors``; a ``.bin`` holds the nested dict itself)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            flat = load_file(str(path))
            state = {part: {k.removeprefix(part + "."): v for k, v in flat.items() if k.startswith(part + ".")}
                     for part in ("image_proj", "ip_adapter")}
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as e:
        raise ModelLoadError(f"{path}: cannot read this IP-Adapter file: {_first_line(e)}") from None
    if not (isinstance(state, dict) and all(isinstance(state.get(p), dict) and state[p] for p in ("image_proj", "ip_adapter"))):
        raise ModelLoadError(f"{path}: not an IP-Adapter: it has no image_proj.* and ip_adapter.* weights "
                             "(h94's layout)")
    return state


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def describe(layers: int, width: int) -> str:
    """``"16 cross-attention layers of text width 768 (SD 1.5)"``."""
    base = BASES.get((layers, width))
    return f"{layers} cross-attention layers of text width {width}" + (f" ({base})" if base else "")


def layer_weights(state: dict, unet, name: str, model_name: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(to_k_ip, to_v_ip)`` weights per cross-attention layer of ``unet``, checked: an adapter made
    for another base is one :class:`InvalidArgument` naming both (an SDXL IP-Adapter on SD 1.5)."""
    ip = state["ip_adapter"]
    if any("lora" in k for k in ip):
        raise InvalidArgument(f"IP-Adapter {name!r} is a FaceID adapter (it has LoRA weights); FaceID needs "
                              "InsightFace face embeddings, which gouache does not compute")
    keys = sorted({int(k.split(".")[0]) for k in ip if k.split(".")[0].isdigit()})
    layers = cross_attention_layers(unet)
    widths = {ip[f"{k}.to_k_ip.weight"].shape[1] for k in keys if f"{k}.to_k_ip.weight" in ip}
    mine = describe(len(keys), next(iter(widths)) if len(widths) == 1 else -1)
    theirs = describe(len(layers), unet.config.cross_attention_dim)
    wrong = InvalidArgument(f"IP-Adapter {name!r} is for another kind of model than {model_name}: it adapts {mine}, "
                            f"the model has {theirs}; use an IP-Adapter made for this base")
    if keys != [2 * i + 1 for i in range(len(layers))]:
        raise wrong
    out = []
    for i, (_, attn) in enumerate(layers):
        k, v = ip.get(f"{2 * i + 1}.to_k_ip.weight"), ip.get(f"{2 * i + 1}.to_v_ip.weight")
        shape = (attn.to_k.out_features, attn.to_k.in_features)
        if k is None or v is None or tuple(k.shape) != shape or tuple(v.shape) != shape:
            raise wrong
        out.append((k, v))
    return out


def image_proj_kind(image_proj: dict) -> str:
    """Which projection a file's ``image_proj`` is: ``embeds`` (one image embedding in, h94's plain
    and SDXL adapters) or ``hidden`` (the encoder's penultimate hidden states: "plus", "full face")."""
    if "perceiver_resampler.proj_in.weight" in image_proj or ("norm.weight" in image_proj and "proj.0.weight" in image_proj):
        raise InvalidArgument("this is a FaceID IP-Adapter; FaceID needs InsightFace face embeddings, which gouache "
                              "does not compute")
    return "embeds" if "proj.weight" in image_proj else "hidden"


def expected_width(image_proj: dict) -> int:
    """The width of what the projection reads: the image embedding's or the hidden states'."""
    for key in ("proj.weight", "proj_in.weight", "proj.0.weight"):
        if key in image_proj:
            return int(image_proj[key].shape[1])
    raise ModelLoadError("the IP-Adapter's image_proj has none of proj, proj_in or proj.0 (an unknown projection)")


@dataclass
class LoadedIPAdapter:
    """An IP-Adapter ready for a UNet: its image projection, one ``to_k_ip``/``to_v_ip`` per
    cross-attention layer, and its image encoder with the encoder's image processor."""

    name: str
    hash: str  # 8 hex digits of the file's SHA-256, as sd-webui-controlnet titles its models
    path: Path
    image_proj: torch.nn.Module
    to_k: torch.nn.ModuleList
    to_v: torch.nn.ModuleList
    encoder: Any  # transformers.CLIPVisionModelWithProjection
    processor: Any  # transformers.CLIPImageProcessor
    kind: str  # "embeds" or "hidden" (image_proj_kind)
    tokens: int  # image tokens per image

    @property
    def title(self) -> str:
        from gouache.models.registry import model_title

        return model_title(self.name, self.hash)

    @torch.no_grad()
    def encode(self, images: list) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embeds, negative)`` of PIL ``images`` for one generation, batch-first ``(1, n_images, ...)``
        as ``MultiIPAdapterImageProjection`` reads them. The negative is h94's and diffusers': zero
        embeddings, or for "plus" adapters the hidden states of an all-zero image."""
        p = next(self.encoder.parameters())
        pixels = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
        pixels = pixels.to(p.device, p.dtype)
        if self.kind == "embeds":
            embeds = self.encoder(pixel_values=pixels).image_embeds
            negative = torch.zeros_like(embeds)
        else:
            embeds = self.encoder(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
            negative = self.encoder(pixel_values=torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
        return embeds[None], negative[None]


def load_ip_adapter(name_or_path, unet, model_name: str = "the model", dtype=None, device=None) -> LoadedIPAdapter:
    """Load an IP-Adapter for ``unet`` (its name, or a path in Python and on the command line), with
    its image encoder, in ``dtype`` on ``device`` (the UNet's by default). An adapter for another
    base, or an encoder of the wrong width, is one clear error before anything is installed."""
    entry = name_or_path if isinstance(name_or_path, IPAdapterEntry) else resolve_ip_adapter(name_or_path)
    p = next(unet.parameters())
    dtype, device = dtype or p.dtype, device or p.device
    state = read_ip_adapter_file(entry.path)
    kind = image_proj_kind(state["image_proj"])
    weights = layer_weights(state, unet, entry.name, model_name)
    try:
        image_proj = unet._convert_ip_adapter_image_proj_to_diffusers(state["image_proj"], low_cpu_mem_usage=False)
    except (RuntimeError, KeyError, ValueError, IndexError) as e:
        raise ModelLoadError(f"{entry.path}: cannot read its image projection: {_first_line(e)}") from None
    encoder, processor = load_image_encoder(encoder_folder(entry), expected_width(state["image_proj"]), kind, entry.name)
    to_k = torch.nn.ModuleList([_linear(k) for k, _ in weights])
    to_v = torch.nn.ModuleList([_linear(v) for _, v in weights])
    modules = [image_proj, to_k, to_v, encoder]
    for m in modules:
        m.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return LoadedIPAdapter(entry.name, file_hash(entry.path), entry.path, image_proj, to_k, to_v, encoder, processor,
                           kind, _tokens(image_proj, encoder))


def _tokens(image_proj, encoder) -> int:
    """Image tokens per image: the plain projection's (4), the Resampler's queries, or the encoder's
    patches and class token (full face)."""
    if hasattr(image_proj, "num_image_text_embeds"):
        return int(image_proj.num_image_text_embeds)
    if hasattr(image_proj, "latents"):
        return int(image_proj.latents.shape[1])
    return (encoder.config.image_size // encoder.config.patch_size) ** 2 + 1


def _linear(weight: torch.Tensor) -> torch.nn.Linear:
    layer = torch.nn.utils.skip_init(torch.nn.Linear, weight.shape[1], weight.shape[0], bias=False)
    layer.weight = torch.nn.Parameter(weight.detach().clone().float(), requires_grad=False)
    return layer


def file_hash(path: Path) -> str:
    """8 hex digits of the file's SHA-256 (cached by path, mtime and size)."""
    from gouache.models.hashing import full_sha256

    return full_sha256(path)[:8]


def encoder_folder(entry: IPAdapterEntry) -> Path:
    """The image encoder of an adapter: the one ``NAME.json`` beside its weights names, else
    ``image_encoder/`` beside them; neither is one :class:`ModelLoadError` saying where to put it."""
    sidecar = entry.path.with_suffix(".json")
    if sidecar.is_file():
        try:
            named = json.loads(sidecar.read_text(encoding="utf-8")).get("image_encoder")
        except (OSError, ValueError, AttributeError) as e:
            raise ModelLoadError(f"{sidecar}: unreadable ({_first_line(e)}); expected {{\"image_encoder\": ...}}") from None
        if named is not None:
            return named_encoder(str(named), sidecar.parent, str(sidecar))
    beside = entry.path.parent / ENCODER_FOLDER
    if (beside / "config.json").is_file():
        return beside
    raise ModelLoadError(f"IP-Adapter {entry.name!r} has no image encoder: put its CLIPVisionModelWithProjection "
                         f"folder at {beside}, or name it in {sidecar} as {{\"image_encoder\": \"PATH\"}}")


def named_encoder(named: str, beside: Path = Path("."), where: str = "image encoder") -> Path:
    """An image encoder by what a sidecar (or ``gouache train ip-adapter --image-encoder``) names: a
    path (relative to ``beside``), the built-in CLIP's name (``gouache-tiny-clip``), or a CLIP
    folder's name in ``$GOUACHE_HOME/clip``."""
    from gouache.models.builtin import weights_dir
    from gouache.models.home import gouache_home

    for folder in (Path(beside) / named, weights_dir() / "clip" / named, gouache_home() / "clip" / named):
        if (folder / "config.json").is_file():
            return folder
    raise ModelLoadError(f"{where}: image encoder {named!r} not found (a model folder by path, the built-in "
                         "gouache-tiny-clip, or a folder in $GOUACHE_HOME/clip)")


def load_image_encoder(folder: Path, width: int, kind: str, name: str = "the IP-Adapter"):
    """``(CLIPVisionModelWithProjection, CLIPImageProcessor)`` from ``folder`` (a vision model, or a
    full CLIPModel whose vision tower is taken), checked to give what the projection reads."""
    from transformers import CLIPImageProcessor

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        encoder = _vision_tower(folder) if config.get("model_type") == "clip" else _vision_model(folder)
    except GouacheError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelLoadError(f"{folder}: cannot load the image encoder: {_first_line(e)}") from None
    gives = encoder.config.projection_dim if kind == "embeds" else encoder.config.hidden_size
    if gives != width:
        what = "image embeddings" if kind == "embeds" else "hidden states"
        raise InvalidArgument(f"IP-Adapter {name!r} reads {what} of width {width}, but its image encoder {folder} gives "
                              f"{gives}; give it its own encoder (a NAME.json beside the weights: "
                              "{\"image_encoder\": \"PATH\"})")
    size = encoder.config.image_size
    has_config = any((folder / f).is_file() for f in ("preprocessor_config.json", "processor_config.json"))
    processor = (CLIPImageProcessor.from_pretrained(folder, local_files_only=True) if has_config else
                 CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}))
    return encoder, processor


def _vision_model(folder: Path):
    from transformers import CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True)


def _vision_tower(folder: Path):
    """A CLIPModel folder's vision tower and projection as a ``CLIPVisionModelWithProjection`` (the
    vision config's own ``projection_dim`` is not the model's: the top-level one is)."""
    from transformers import CLIPConfig, CLIPVisionModelWithProjection

    config = CLIPConfig.from_pretrained(folder, local_files_only=True)
    vision = config.vision_config
    vision.projection_dim = config.projection_dim
    model = CLIPVisionModelWithProjection(vision)
    state = _folder_state(folder)
    keep = {k: v for k, v in state.items() if k.startswith(("vision_model.", "visual_projection."))}
    missing, _ = model.load_state_dict(keep, strict=False)
    if missing:
        raise ModelLoadError(f"{folder}: the CLIP model lacks vision weights {missing[:3]}")
    return model


def _folder_state(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if files:
        return {k: v for f in files for k, v in load_file(str(f)).items()}
    bins = sorted(folder.glob("*.bin"))
    if not bins:
        raise ModelLoadError(f"{folder}: no weights (model.safetensors or pytorch_model.bin)")
    return {k: v for f in bins for k, v in torch.load(f, map_location="cpu", weights_only=True).items()}

