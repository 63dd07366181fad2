"""Load a single-file checkpoint (``.safetensors`` / ``.ckpt``) as a diffusers pipeline, fully offline.

How it works, and why this way:

1. :func:`read_state_dict` reads the file once — ``.safetensors`` with safetensors, pickles *only*
   with ``torch.load(..., weights_only=True)`` so a checkpoint can never run code.
2. :func:`~gouache.models.detect.detect_architecture` names the architecture from the keys.
3. The architecture's diffusers config folder ships inside the package (``configs/<arch>/``, JSON
   only); gouache-tiny's is written at run time from :mod:`gouache.models.tiny_architecture`.
4. Each component is converted from the in-memory state dict by diffusers' own converters —
   ``UNet2DConditionModel.from_single_file(state_dict, config=<folder>, subfolder="unet",
   local_files_only=True)``, the same for ``AutoencoderKL``, and for the CLIP text encoders the
   helper diffusers' pipeline-level ``from_single_file`` calls,
   ``create_diffusers_clip_model_from_ldm`` — so no key mapping is rewritten here.
5. Tokenizers come from :func:`~gouache.models.clip_tokenizer.load_clip_tokenizer` (CLIP's BPE from
   the openai-clip package), the scheduler from the config folder; the pipeline class and its flags
   from the folder's ``model_index.json``.

We do not call the pipeline-level ``StableDiffusionPipeline.from_single_file(path, config=...)``: it
works offline with a local config folder too, but it takes only a path and reads the file again
itself; converting per component from the dict we already hold reads a multi-GB file once and keeps
the loading rules (weights_only, clear errors) ours.
"""

from __future__ import annotations

import json
import pickle
import re
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from gouache.errors import GouacheError, InvalidArgument, ModelLoadError
from gouache.models.clip_tokenizer import load_clip_tokenizer
from gouache.models.detect import (
    ARCHITECTURES,
    CONV_IN,
    Architecture,
    check_prediction_type,
    detect_architecture,
)

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


# --- reading -----------------------------------------------------------------------------------


def _read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except SafetensorError as e:
        raise ModelLoadError(f"{path}: not a readable .safetensors file, truncated or corrupt ({e})") from e


def _read_pickle(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+) was not an allowed global", str(e))
        if found:
            raise ModelLoadError(
                f"{path}: refused to load: the file pickles a Python object ({found.group(1)}), not just "
                "tensors, and gouache only loads pickles with torch.load(weights_only=True); "
                "use a .safetensors version of this model"
            ) from e
        raise ModelLoadError(
            f"{path}: not a readable PyTorch checkpoint: corrupt, or holding pickled code that "
            "torch.load(weights_only=True) refuses; use a .safetensors version of this model"
        ) from e
    # a damaged pickle can fail anywhere in the unpickler, with any of these
    except (EOFError, OSError, RuntimeError, ValueError, IndexError, KeyError, TypeError, UnicodeDecodeError,
            struct.error) as e:
        raise ModelLoadError(
            f"{path}: not a readable PyTorch checkpoint, truncated or corrupt ({type(e).__name__}: {e})"
        ) from e


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a single-file checkpoint, on the CPU, as a flat ``{key: tensor}`` dict.

    ``.safetensors`` is read with safetensors; ``.ckpt``/``.pt``/``.pth``/``.bin`` only with
    ``torch.load(path, map_location="cpu", weights_only=True)``, and a Lightning-style nested
    ``"state_dict"`` is unwrapped. Anything unreadable raises :class:`ModelLoadError` in one line.

    >>> sd = read_state_dict("v1-5-pruned-emaonly.safetensors")      # doctest: +SKIP
    >>> sd["model.diffusion_model.input_blocks.0.0.weight"].shape     # doctest: +SKIP
    torch.Size([320, 4, 3, 3])
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SINGLE_FILE_SUFFIXES:
        raise ModelLoadError(
            f"{path}: unsupported checkpoint extension {suffix or '(none)'!r}; "
            f"expected one of {', '.join(SINGLE_FILE_SUFFIXES)}"
        )
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path}: the file is empty (0 bytes); was the download interrupted?")
    state = _read_safetensors(path) if suffix == ".safetensors" else _read_pickle(path)
    while isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelLoadError(f"{path}: holds no tensors")
    return tensors


# --- config folders ----------------------------------------------------------------------------


def tiny_config_and_scale():
    """gouache-tiny's (TinyConfig, VAE scaling factor): from the shipped meta JSON, else defaults and 1.0.

    The scaling factor is measured on the trained VAE's latents, so without the shipped meta file
    there is nothing to read it from; 1.0 is the neutral choice and callers can override it.
    """
    from gouache.models.builtin import shipped_files
    from gouache.models.tiny_architecture import TinyConfig

    _, meta_path = shipped_files()
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return TinyConfig.from_dict(meta["config"]), float(meta["scaling_factor"])
    return TinyConfig(), 1.0


def write_tiny_config_folder(folder: Path) -> Path:
    """A diffusers config folder (configs only) for gouache-tiny, from its architecture's module configs."""
    from accelerate import init_empty_weights

    from gouache.models.tiny_architecture import SCHEDULER_CONFIG, build_text_encoder, build_unet, build_vae

    cfg, scale = tiny_config_and_scale()
    with init_empty_weights():  # only the configs are needed, not initialised weights
        vae, text_encoder, unet = build_vae(cfg), build_text_encoder(cfg), build_unet(cfg)
    vae.register_to_config(scaling_factor=scale)
    vae.save_config(folder / "vae")
    unet.save_config(folder / "unet")
    text_encoder.config.save_pretrained(folder / "text_encoder")
    (folder / "scheduler").mkdir(parents=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER_CONFIG, indent=2))
    index = json.loads((ARCHITECTURES["sd15"].config_path() / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", SCHEDULER_CONFIG["_class_name"]]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder


@contextmanager
def config_folder(arch: Architecture) -> Iterator[Path]:
    """The architecture's diffusers config folder: shipped, or a temporary one for gouache-tiny."""
    if arch.config_folder is not None:
        yield arch.config_path()
        return
    with tempfile.TemporaryDirectory(prefix="gouache-config-") as tmp:
        yield write_tiny_config_folder(Path(tmp))


# --- assembling --------------------------------------------------------------------------------


def _check_no_missing_weights(name: str, module: torch.nn.Module) -> None:
    # Loading goes through empty (meta) modules; a tensor the checkpoint lacked stays on "meta".
    missing = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if missing:
        raise ModelLoadError(f"the checkpoint has no weights for {len(missing)} {name} tensors, e.g. {missing[0]}")


def _load_component(name: str, library: str, class_name: str, state: dict, folder: Path, dtype, arch):
    import diffusers
    import transformers
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm

    if name.startswith("tokenizer"):
        return load_clip_tokenizer(pad_token=arch.pads[name])
    if name == "scheduler":
        return getattr(diffusers, class_name).from_pretrained(folder, subfolder="scheduler", local_files_only=True)
    if name in ("unet", "vae"):
        module = getattr(diffusers, class_name).from_single_file(
            state, config=str(folder), subfolder=name, local_files_only=True
        )
        # Cast with torch's own Module.to: diffusers 0.42's ModelMixin.to(dtype) (which its
        # `torch_dtype=` path calls) logs a spurious "modules that should be kept in float32: []".
        torch.nn.Module.to(module, dtype)
    elif name.startswith("text_encoder"):
        module = create_diffusers_clip_model_from_ldm(
            getattr(transformers, class_name),
            state,
            subfolder=name,
            config=str(folder),
            torch_dtype=dtype,
            local_files_only=True,
        )
    else:
        raise ModelLoadError(f"config {folder} names a component gouache cannot load: {name} ({library}.{class_name})")
    _check_no_missing_weights(name, module)
    return module


def build_pipeline(state: dict, arch: Architecture, folder: Path, dtype):
    """Assemble the pipeline ``model_index.json`` in ``folder`` describes, converting weights from ``state``."""
    import diffusers

    index = json.loads((folder / "model_index.json").read_text())
    components, flags = {}, {}
    for name, value in index.items():
        if name.startswith("_"):
            continue
        if not isinstance(value, list):
            flags[name] = value  # requires_safety_checker, force_zeros_for_empty_prompt, ...
        elif value[0] is None:
            components[name] = None  # safety checker, feature extractor, refiner's first text encoder
        else:
            components[name] = _load_component(name, value[0], value[1], state, folder, dtype, arch)
    return getattr(diffusers, index["_class_name"])(**components, **flags)


def load_single_file(
    path: str | Path,
    dtype: torch.dtype = torch.float32,
    prediction_type: str | None = None,
    scaling_factor: float | None = None,
):
    """A diffusers pipeline from a single-file checkpoint, without network access.

    The pipeline class follows the architecture: ``StableDiffusionPipeline`` (SD 1.x, SD 2.x,
    gouache-tiny), ``StableDiffusionInpaintPipeline`` (9-channel UNets), ``StableDiffusionXLPipeline``,
    ``StableDiffusionXLInpaintPipeline``, and ``StableDiffusionXLImg2ImgPipeline`` for the refiner.
    ``prediction_type`` ("epsilon" / "v_prediction") overrides the scheduler's and picks SD 2.x's
    variant (default: 768 v-prediction, see :mod:`gouache.models.detect`). ``scaling_factor``
    overrides the VAE's latent scale (gouache-tiny without its shipped meta file falls back to 1.0).

    >>> pipe = load_single_file("v1-5-pruned-emaonly.safetensors")       # doctest: +SKIP
    >>> pipe("a red circle", num_inference_steps=20).images[0]           # doctest: +SKIP
    """
    # 1. Check inputs
    check_prediction_type(prediction_type)
    if not isinstance(dtype, torch.dtype):
        raise InvalidArgument(f"`dtype` must be a torch.dtype such as torch.float16, not {dtype!r}")
    path = Path(path)

    # 2. Read the weights and name the architecture
    state = read_state_dict(path)
    shapes = {CONV_IN: tuple(state[CONV_IN].shape)} if CONV_IN in state else {}
    try:
        arch = ARCHITECTURES[detect_architecture(state.keys(), shapes, prediction_type)]
    except ModelLoadError as e:
        raise ModelLoadError(f"{path}: {e}") from e

    # 3. Convert each component against the architecture's config folder
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    try:
        with config_folder(arch) as folder:
            pipe = build_pipeline(state, arch, folder, dtype)
    except GouacheError as e:
        raise ModelLoadError(f"{path} ({arch.title}): {e}") from e
    except (SingleFileComponentError, OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
        raise ModelLoadError(f"{path}: cannot build a {arch.title} pipeline from it: {type(e).__name__}: {e}") from e

    # 4. Caller overrides
    if prediction_type is not None and pipe.scheduler.config.get("prediction_type") != prediction_type:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=prediction_type)
    if scaling_factor is not None:
        pipe.vae.register_to_config(scaling_factor=float(scaling_factor))
    return pipe
