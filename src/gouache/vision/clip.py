"""A CLIP model: image and text embeddings, their cosine similarities, and the CLIP score.

A model is a transformers ``CLIPModel`` folder (``config.json``, weights, tokenizer files, and
optionally ``preprocessor_config.json``), loaded offline from ``$GOUACHE_HOME/clip/NAME/``, from a
path, or, when no name is given, the built-in ``gouache-tiny-clip`` shipped with gouache:

>>> with load_clip() as clip:                                   # doctest: +SKIP
...     clip.rank(image, ["a red circle", "a blue square"], top=1)
[('a red circle', 0.31)]
>>> clip_score([image], ["a red circle"], clip)                 # doctest: +SKIP
31.0

The CLIP score follows torchmetrics' ``CLIPScore`` (and A1111's CLIP-score extensions):
``100 × max(cos, 0)`` per image and its own prompt, averaged over the images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from gouache.errors import InvalidArgument, ModelLoadError
from gouache.vision.folders import ModelFolders

BUILTIN = "gouache-tiny-clip"
BATCH = 32  # images or texts embedded per forward pass
CACHED = 64  # lists of texts whose embeddings a Clip keeps (interrogation's flavour lists)


CLIPS = ModelFolders("CLIP model", BUILTIN, "clip", "clip", "--clip", "CLIPModel folders", "CLIP")


def builtin_clip_dir() -> Path:
    """Where the built-in CLIP ships: ``gouache/models/weights/clip/gouache-tiny-clip/``."""
    return CLIPS.builtin_dir()


def clip_dir() -> Path:
    """The user's CLIP models: ``$GOUACHE_HOME/clip/`` (one folder per model)."""
    return CLIPS.user_dir()


def listed_clips() -> dict[str, Path]:
    """Every CLIP model a name can pick: the built-in (when installed), then ``$GOUACHE_HOME/clip/*``."""
    return CLIPS.listed()


def find_clip(name_or_path: str | None = None) -> Path:
    """The folder of a CLIP model: a path, a name under ``$GOUACHE_HOME/clip/``, or the built-in (None)."""
    return CLIPS.find(name_or_path)


@dataclass
class Clip:
    """A loaded CLIP model; a context manager whose exit (or :meth:`close`) releases it."""

    model: Any  # transformers.CLIPModel, in eval mode
    tokenizer: Any  # its CLIPTokenizer
    processor: Any  # its CLIPImageProcessor
    name: str
    device: str = "cpu"
    _cached: dict = field(default_factory=dict, repr=False)  # texts -> embeddings, for lists asked again

    def __enter__(self) -> "Clip":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Drop the weights (and the CUDA cache they held); the object cannot embed afterwards."""
        import gc

        import torch

        self.model = None
        self._cached.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _live(self):
        if self.model is None:
            raise InvalidArgument(f"the CLIP model {self.name!r} was closed; load it again")
        return self.model

    def image_embeds(self, images: Sequence) -> "torch.Tensor":  # noqa: F821
        """One unit-length row per PIL image, shape (len(images), dim), on the CPU in float32."""
        import torch

        model, rows = self._live(), []
        for start in range(0, len(images), BATCH):
            batch = [im.convert("RGB") for im in images[start:start + BATCH]]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                out = model.get_image_features(pixel_values=pixels.to(self.device, model.dtype))
            rows.append(_features(out))
        return _normalised(rows, model)

    def text_embeds(self, texts: Sequence[str], cache: bool = False) -> "torch.Tensor":  # noqa: F821
        """One unit-length row per text (cut at the model's context length), shape (len(texts), dim);
        ``cache`` keeps the result for the same texts next time (a list asked for again and again)."""
        key = tuple(texts)
        if cache and key in self._cached:
            return self._cached[key]
        embeds = self._text_embeds(key)
        if cache:
            if len(self._cached) >= CACHED:
                self._cached.clear()
            self._cached[key] = embeds
        return embeds

    def _text_embeds(self, texts: tuple[str, ...]):
        import torch

        model, rows = self._live(), []
        length = model.config.text_config.max_position_embeddings
        for start in range(0, len(texts), BATCH):
            tokens = self.tokenizer(list(texts[start:start + BATCH]), padding=True, truncation=True,
                                    max_length=length, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                out = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
            rows.append(_features(out))
        return _normalised(rows, model)

    def similarity(self, images: Sequence, texts: Sequence[str]) -> "torch.Tensor":  # noqa: F821
        """The cosine of every image with every text: shape (len(images), len(texts)), in [-1, 1]."""
        return self.image_embeds(images) @ self.text_embeds(texts).T

    def rank(self, image, texts: Sequence[str], top: int | None = None) -> list[tuple[str, float]]:
        """``texts`` by their cosine with ``image``, best first (the ``top`` best, or all)."""
        if not texts:
            return []
        scores = self.similarity([image], texts)[0].tolist()
        order = sorted(range(len(texts)), key=lambda i: -scores[i])
        return [(texts[i], scores[i]) for i in order[:top]]


def _features(out):
    """The projected embedding of ``get_*_features``: a tensor (transformers 4) or an output's pooler (5)."""
    return out if hasattr(out, "dim") else out.pooler_output


def _normalised(rows: list, model):
    import torch

    if not rows:
        dim = model.config.projection_dim
        return torch.zeros(0, dim)
    embeds = torch.cat(rows).float().cpu()
    return embeds / embeds.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def load_clip(name_or_path: str | Path | None = None, device: str = "cpu") -> Clip:
    """A CLIP model by name (``$GOUACHE_HOME/clip/NAME``), path, or the built-in (None), offline."""
    import torch

    folder = find_clip(name_or_path)
    _check_config(folder)
    try:
        from transformers import AutoTokenizer, CLIPModel

        model, info = CLIPModel.from_pretrained(folder, local_files_only=True, output_loading_info=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        processor = _image_processor(folder, model.config.vision_config.image_size)
    except Exception as err:  # noqa: BLE001 - missing, truncated or mismatched files raise many kinds
        raise ModelLoadError(f"{folder}: not a loadable CLIP model ({_first_line(err)})") from None
    missing = info.get("missing_keys") or []
    if missing:
        raise ModelLoadError(f"{folder}: the weights lack {len(missing)} of the model's tensors "
                             f"(e.g. {sorted(missing)[0]}); not a complete CLIPModel")
    model.to(device=device, dtype=torch.float32).eval()
    return Clip(model, tokenizer, processor, name=str(name_or_path or BUILTIN), device=device)


def _check_config(folder: Path) -> None:
    """A folder whose ``config.json`` is not a CLIPModel's (a UNet's, a text encoder's) is refused by name."""
    import json

    try:
        kind = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as err:
        raise ModelLoadError(f"{folder}: not a loadable CLIP model (config.json: {_first_line(err)})") from None
    if kind != "clip":
        raise ModelLoadError(f"{folder}: config.json describes {kind or 'no model_type'!r}, not a CLIPModel "
                             "(model_type 'clip'); give the folder of a whole CLIP model")


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def _image_processor(folder: Path, size: int):
    """The folder's ``preprocessor_config.json``, else CLIP's preprocessing at the model's image size."""
    from transformers import CLIPImageProcessor

    if (folder / "preprocessor_config.json").is_file():
        return CLIPImageProcessor.from_pretrained(folder, local_files_only=True)
    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def clip_score(images: Sequence, prompts: Sequence[str], clip: Clip) -> float:
    """The mean CLIP score of each image with its own prompt: ``100 × max(cos, 0)`` (torchmetrics'
    ``CLIPScore``), from 0 to 100."""
    if len(images) != len(prompts):
        raise InvalidArgument(f"clip_score needs one prompt per image, got {len(images)} images and "
                              f"{len(prompts)} prompts")
    if not images:
        raise InvalidArgument("clip_score needs at least one image")
    cos = (clip.image_embeds(images) * clip.text_embeds(prompts)).sum(-1)
    return float((100 * cos.clamp_min(0)).mean())
