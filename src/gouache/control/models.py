"""Find and load ControlNets: ``$GOUACHE_HOME/controlnet``, paths, and gouache-tiny's built-in one.

``controlnet/`` holds diffusers folders (``config.json`` + ``diffusion_pytorch_model.safetensors``,
what ``ControlNetModel.save_pretrained`` and ``gouache train controlnet`` write) and single files
(``.safetensors``, ``.pth``, ``.ckpt``: the original ``control_model.*`` layout of
``control_v11p_sd15_canny.pth`` and friends, or diffusers keys in one file). A single file is
converted by diffusers' own ``ControlNetModel.from_single_file``, offline, with a config that is
either a ``NAME.json`` beside it or derived from the base model's UNet (a ControlNet is a copy of
its base UNet's encoder, so the base says its shape; :func:`derived_config`).

Names: a folder's or file's path relative to ``controlnet/``, with or without the extension, or
A1111's title ``name [hash]``; any existing path; or a built-in name (:data:`BUILTIN`). The rule is
the one for checkpoints and LoRA (:mod:`gouache.models.names`).

>>> resolve_controlnet("gouache-tiny-edges").kind
'builtin'
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gouache.errors import GouacheError, InvalidArgument, ModelLoadError
from gouache.models.builtin import builtin_adapters
from gouache.models.home import models_dir
from gouache.models.names import Names

SINGLE_FILE_SUFFIXES = (".safetensors", ".pth", ".ckpt", ".pt", ".bin")
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"

# the edge ControlNet trained for gouache-tiny (docs/controlnet.md), shipped as a diffusers folder
BUILTIN_EDGES = "gouache-tiny-edges"
BUILTIN = (BUILTIN_EDGES,)
# (base model name, preprocessor) -> the ControlNet used when a control names no model
DEFAULTS = {("gouache-tiny", "canny"): BUILTIN_EDGES}


@dataclass(frozen=True)
class ControlNetEntry:
    name: str
    path: Path
    kind: str  # "builtin", "diffusers" or "single-file"


@dataclass
class LoadedControlNet:
    """A ``diffusers.ControlNetModel`` with the name and hash its infotext records."""

    net: object
    name: str
    hash: str  # 8 hex digits of the weights' SHA-256 (as the A1111 extension lists models)

    @property
    def title(self) -> str:
        from gouache.models.registry import model_title

        return model_title(self.name, self.hash)


def builtin_folder(name: str = BUILTIN_EDGES) -> Path:
    return builtin_adapters("controlnet") / name


def _is_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("diffusion_pytorch_model*"))


def list_controlnets() -> list[ControlNetEntry]:
    """The built-in ControlNets (those whose weights are installed), then ``controlnet/`` by name."""
    found = [ControlNetEntry(n, builtin_folder(n), "builtin") for n in BUILTIN if _is_folder(builtin_folder(n))]
    root = models_dir("controlnet")
    for dirpath, dirnames, filenames in os.walk(root):
        folder = Path(dirpath)
        if folder != root and _is_folder(folder):
            found.append(ControlNetEntry(folder.relative_to(root).as_posix(), folder, "diffusers"))
            dirnames.clear()
            continue
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "annotators"]
        for name in filenames:
            path = folder / name
            if not name.startswith(".") and path.suffix.lower() in SINGLE_FILE_SUFFIXES:
                found.append(ControlNetEntry(path.relative_to(root).as_posix(), path, "single-file"))
    return found


def _entry_for_path(path: Path) -> ControlNetEntry:
    if path.is_dir():
        if not _is_folder(path):
            raise ModelLoadError(f"{path}: a folder, but not a diffusers ControlNet (config.json + {WEIGHTS_FILE})")
        return ControlNetEntry(path.name, path, "diffusers")
    if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        raise ModelLoadError(f"{path}: unsupported ControlNet file {path.suffix!r}; "
                             f"expected one of {', '.join(SINGLE_FILE_SUFFIXES)} or a diffusers folder")
    return ControlNetEntry(path.stem, path, "single-file")


def _tiers(e: ControlNetEntry) -> tuple[tuple[str, ...], ...]:
    stems = (e.path.stem, e.name.rsplit(".", 1)[0]) if e.kind == "single-file" else ()
    return (e.name,), (e.path.name,), stems


def controlnet_names() -> Names[ControlNetEntry]:
    """Every listed ControlNet by name (:mod:`gouache.models.names`), the built-ins among them."""
    return Names("ControlNet", (list_controlnets(),), _tiers, lambda e: e.name)


def _where(hint: str) -> str:
    return f". Put ControlNet folders or files in {models_dir('controlnet')} (or set GOUACHE_HOME){hint}"


def resolve_controlnet(name_or_path) -> ControlNetEntry:
    """The :class:`ControlNetEntry` a name or path refers to; unknown names list the installed ones."""
    text = str(name_or_path).strip()
    if not text:
        raise InvalidArgument("a ControlNet name is empty; give a name from $GOUACHE_HOME/controlnet or a path")
    return controlnet_names().resolve(text, _entry_for_path, SINGLE_FILE_SUFFIXES, _where(", or pass a path"))


def find_listed_controlnet(name: str, hint: str = ", or pass a path") -> ControlNetEntry:
    """The installed ControlNet ``name`` means — its listed name, file name or stem, an A1111 title's
    ``name [hash]`` allowed — looked up in :func:`list_controlnets`, never opened as a path (the
    server's rule for names from requests); unknown names list the installed ones."""
    return controlnet_names().lookup(name, _where(hint))


def default_controlnet(model_name: str, preprocessor: str) -> str:
    """The ControlNet a control without a model uses with ``model_name``; raises when there is none."""
    name = DEFAULTS.get((model_name, preprocessor))
    if name is None:
        known = "; ".join(f"{p} with {m} uses {n}" for (m, p), n in DEFAULTS.items())
        raise InvalidArgument(f"no default ControlNet for preprocessor {preprocessor!r} with model {model_name}; "
                              f"name one (--control-model NAME, Python: ControlSpec(model=...)). Defaults: {known}")
    return name


def weights_hash(entry: ControlNetEntry) -> str:
    from gouache.models.hashing import sha256_of

    files = [entry.path] if entry.path.is_file() else sorted(entry.path.glob("diffusion_pytorch_model*.safetensors"))
    return sha256_of(files)[:8] if files else ""


def derived_config(unet, state: dict | None = None) -> dict:
    """The config of a ControlNet for ``unet``: ``ControlNetModel.from_unet`` built on the meta device
    (no memory), with the conditioning embedding's channels read from ``state`` when it has them."""
    import torch
    from diffusers import ControlNetModel

    channels = _embedding_channels(state or {})
    kwargs = {"conditioning_embedding_out_channels": channels} if channels else {}
    with torch.device("meta"):
        net = ControlNetModel.from_unet(unet, load_weights_from_unet=False, **kwargs)
    return {k: v for k, v in dict(net.config).items() if not k.startswith("_")}


def _embedding_channels(state: dict) -> tuple[int, ...] | None:
    prefix = "controlnet_cond_embedding."
    if prefix + "conv_in.weight" not in state:
        return None
    channels = [state[prefix + "conv_in.weight"].shape[0]]
    i = 1
    while f"{prefix}blocks.{i}.weight" in state:
        channels.append(state[f"{prefix}blocks.{i}.weight"].shape[0])
        i += 2
    return tuple(channels)


def load_controlnet(name_or_path, base=None, dtype=None, device: str | None = None) -> LoadedControlNet:
    """Load a ControlNet offline; ``base`` (a :class:`~gouache.pipelines.model.LoadedModel`) gives the
    dtype and device, and the config of a single file that has no ``.json`` beside it.

    >>> cn = load_controlnet("gouache-tiny-edges", load_model())     # doctest: +SKIP
    >>> cn.title                                                       # doctest: +SKIP
    'gouache-tiny-edges [1a2b3c4d]'
    """
    import torch

    entry = resolve_controlnet(name_or_path)
    dtype = dtype or (base.dtype if base is not None else torch.float32)
    device = device or (base.device if base is not None else "cpu")
    try:
        net = _load_folder(entry.path, dtype) if entry.kind != "single-file" else _load_single_file(entry.path, base, dtype)
    except GouacheError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
        raise ModelLoadError(f"{entry.path}: cannot load ControlNet {entry.name!r}: {type(e).__name__}: {e}") from e
    if str(device) != "cpu":
        net.to(device)
    net.eval().requires_grad_(False)
    return LoadedControlNet(net, entry.name, weights_hash(entry))


def _load_folder(folder: Path, dtype):
    from diffusers import ControlNetModel

    from gouache.models.registry import _dtype_kwargs

    return ControlNetModel.from_pretrained(folder, local_files_only=True, **_dtype_kwargs(dtype))


def _load_single_file(path: Path, base, dtype):
    from diffusers import ControlNetModel

    from gouache.models.single_file import read_state_dict

    sidecar = path.with_suffix(".json")
    with tempfile.TemporaryDirectory(prefix="gouache-controlnet-") as tmp:
        if sidecar.is_file():
            config = json.loads(sidecar.read_text())
        elif base is not None:
            config = derived_config(base.unet, read_state_dict(path))
        else:
            raise InvalidArgument(f"{path}: a single-file ControlNet needs its base model (base=) or a "
                                  f"{sidecar.name} config beside it to know its shape")
        (Path(tmp) / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel", **config}))
        from gouache.models.registry import _dtype_kwargs

        return ControlNetModel.from_single_file(str(path), config=tmp, local_files_only=True, **_dtype_kwargs(dtype))
