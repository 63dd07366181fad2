"""Tell a single-file checkpoint's architecture from its state-dict keys and a few tensor shapes.

Single-file checkpoints (``.safetensors`` / ``.ckpt``) use the original CompVis/Stability key layout
and carry no config, so the architecture is read off the keys:

==================  ====================================================================
architecture        what gives it away
==================  ====================================================================
``sd15``            ``cond_stage_model.transformer.text_model.*`` (OpenAI CLIP ViT-L/14),
                    UNet ``conv_in`` with 320 output channels
``gouache-tiny``    the same key layout, ``conv_in`` as wide as :class:`~gouache.models.tiny_architecture.TinyConfig`'s
                    first UNet block (64)
``sd2-v``/``sd2``   ``cond_stage_model.model.transformer.*`` (OpenCLIP ViT-H/14)
``sdxl``            ``conditioner.embedders.1.model.*`` (OpenCLIP bigG) beside embedders.0 (CLIP-L)
``sdxl-refiner``    only ``conditioner.embedders.0.model.*`` (OpenCLIP bigG)
``*-inpaint``       ``model.diffusion_model.input_blocks.0.0.weight`` with 9 input channels
                    (4 latent + 1 mask + 4 masked-image latent)
==================  ====================================================================

SD 2.x's 768×768 v-prediction model and its 512×512 epsilon "base" model have identical keys and
shapes, so the keys cannot tell them apart. We default to ``sd2-v`` (the better known SD 2.0/2.1
release, and what diffusers' own loader assumes); pass ``prediction_type="epsilon"`` for a base model.

>>> detect_architecture(sd.keys(), {k: tuple(v.shape) for k, v in sd.items()})   # doctest: +SKIP
'sd15'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from gouache.errors import InvalidArgument, ModelLoadError

EOS_PAD, BANG_PAD = "<|endoftext|>", "!"  # SD 1.x / CLIP-L pad with end-of-text, OpenCLIP towers with "!"
PREDICTION_TYPES = ("epsilon", "v_prediction")

CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
SD1_TEXT = "cond_stage_model.transformer."
SD2_TEXT = "cond_stage_model.model."
XL_CLIP_L = "conditioner.embedders.0.transformer."
XL_BIGG = "conditioner.embedders.1.model."
REFINER_BIGG = "conditioner.embedders.0.model."


@dataclass(frozen=True)
class Architecture:
    """One architecture a single file can have: its shipped config folder and how to tokenize for it."""

    name: str
    title: str
    pads: Mapping[str, str]  # tokenizer component → pad token
    config_folder: str | None  # under gouache/models/configs; None: built at run time (gouache-tiny)

    def config_path(self) -> Path:
        """The shipped diffusers-format config folder (JSON only, no weights, no tokenizer files)."""
        if self.config_folder is None:
            raise ValueError(f"{self.name} has no shipped config folder")
        return Path(str(resources.files("gouache.models") / "configs" / self.config_folder))


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("sd15", "Stable Diffusion 1.x", {"tokenizer": EOS_PAD}, "sd15"),
        Architecture("sd15-inpaint", "Stable Diffusion 1.x inpainting", {"tokenizer": EOS_PAD}, "sd15-inpaint"),
        Architecture("sd2-v", "Stable Diffusion 2.x 768 v-prediction", {"tokenizer": BANG_PAD}, "sd2-v"),
        Architecture("sd2", "Stable Diffusion 2.x base (epsilon)", {"tokenizer": BANG_PAD}, "sd2"),
        Architecture("sd2-inpaint", "Stable Diffusion 2.x inpainting", {"tokenizer": BANG_PAD}, "sd2-inpaint"),
        Architecture("sdxl", "Stable Diffusion XL base", {"tokenizer": EOS_PAD, "tokenizer_2": BANG_PAD}, "sdxl"),
        Architecture(
            "sdxl-inpaint",
            "Stable Diffusion XL inpainting",
            {"tokenizer": EOS_PAD, "tokenizer_2": BANG_PAD},
            "sdxl-inpaint",
        ),
        Architecture("sdxl-refiner", "Stable Diffusion XL refiner", {"tokenizer_2": BANG_PAD}, "sdxl-refiner"),
        Architecture("gouache-tiny", "gouache-tiny (SD 1.x layout, tiny)", {"tokenizer": EOS_PAD}, None),
    )
}


def _tiny_width() -> int:
    from gouache.models.tiny_architecture import TinyConfig

    return TinyConfig().unet_channels[0]


def _has_prefix(keys: Sequence[str], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def _describe(keys: Sequence[str]) -> str:
    """A one-line summary of a state dict's key layout for error messages: top prefixes with counts."""
    if not keys:
        return "an empty state dict"
    heads = Counter(".".join(k.split(".")[:2]) for k in keys)
    top = ", ".join(f"{head}.* ({n})" for head, n in heads.most_common(5))
    hint = ""
    if any(k.startswith(("lora_", "lora_unet_", "lora_te")) or ".lora_" in k for k in keys):
        hint = " — this looks like a LoRA; put it in the lora/ folder"
    elif any(k.startswith(("encoder.down", "decoder.up")) for k in keys):
        hint = " — this looks like a VAE on its own, not a full checkpoint"
    elif any(k.startswith(("down_blocks.", "conv_in.")) for k in keys):
        hint = " — this looks like a diffusers-format UNet on its own, not a full checkpoint"
    return f"{len(keys)} tensors: {top}{hint}"


def check_prediction_type(prediction_type: str | None) -> str | None:
    if prediction_type is not None and prediction_type not in PREDICTION_TYPES:
        raise InvalidArgument(
            f"`prediction_type` must be one of {', '.join(PREDICTION_TYPES)} (or None to guess), "
            f"not {prediction_type!r}"
        )
    return prediction_type


def detect_architecture(
    keys: Iterable[str], shapes: Mapping[str, Sequence[int]], prediction_type: str | None = None
) -> str:
    """The architecture name (a key of :data:`ARCHITECTURES`) of a single-file checkpoint.

    ``shapes`` needs only the UNet's first conv, ``model.diffusion_model.input_blocks.0.0.weight``;
    passing every tensor's shape is fine. ``prediction_type`` only chooses between ``sd2-v`` (the
    default) and ``sd2`` — see the module docstring.

    >>> detect_architecture(["model.diffusion_model.input_blocks.0.0.weight",
    ...                      "cond_stage_model.transformer.text_model.final_layer_norm.weight"],
    ...                     {"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3)})
    'sd15'
    """
    check_prediction_type(prediction_type)
    keys = list(keys)
    if CONV_IN not in keys or CONV_IN not in shapes:
        raise ModelLoadError(f"no Stable Diffusion UNet (`{CONV_IN}`) in the checkpoint; found {_describe(keys)}")
    width, in_channels = int(shapes[CONV_IN][0]), int(shapes[CONV_IN][1])
    if in_channels not in (4, 9):
        raise ModelLoadError(
            f"the UNet takes {in_channels} input channels; gouache knows 4 (text-to-image) and 9 (inpainting)"
        )
    inpaint = in_channels == 9

    if _has_prefix(keys, XL_BIGG):
        return "sdxl-inpaint" if inpaint else "sdxl"
    if _has_prefix(keys, REFINER_BIGG):
        if inpaint:
            raise ModelLoadError("an SDXL refiner with a 9-channel (inpainting) UNet is not a known architecture")
        return "sdxl-refiner"
    if _has_prefix(keys, SD2_TEXT):
        if inpaint:
            return "sd2-inpaint"
        return "sd2" if prediction_type == "epsilon" else "sd2-v"
    if _has_prefix(keys, SD1_TEXT):
        if width == 320:
            return "sd15-inpaint" if inpaint else "sd15"
        if width == _tiny_width() and not inpaint:
            return "gouache-tiny"
        raise ModelLoadError(
            f"SD 1.x key layout, but the UNet's first block is {width} channels wide "
            f"(with {in_channels} input channels); gouache knows 320 (SD 1.x) and {_tiny_width()} (gouache-tiny)"
        )
    raise ModelLoadError(f"a UNet but no known text encoder in the checkpoint; found {_describe(keys)}")
