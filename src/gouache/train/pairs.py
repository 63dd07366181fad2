"""What the built-in CLIP's and captioner's trainers share: the shapes pairs, the saved folder, the bars.

Both train a transformers model of their own from scratch (no base model: ``needs_base`` is False)
on :mod:`gouache.tiny.pairs` (``DATASET`` is ``shapes``), and write it as a transformers folder in
``OUT/NAME``: ``config.json``, ``model.safetensors`` in ``save_dtype``, and the processor's files
(tokenizer and image processor), so ``from_pretrained(OUT/NAME)`` loads it. The processor is
written into the run folder (``OUT/processor``) when the run starts. Validation measures the
model's bar on 64 seen and 64 held-out images (:mod:`gouache.tiny.vision_eval`) and appends the
figures to ``OUT/validation/figures.jsonl``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from gouache.errors import InvalidArgument, check_int
from gouache.train.config import SAVE_DTYPES, TrainConfig, check_choice, check_name
from gouache.train.driver import Trainer

PAIRS_UNUSED = ("base", "resolution", "crop", "flip", "cache_latents", "caption_dropout", "min_snr_gamma",
                "noise_offset", "validation_prompts", "validation_seed", "validation_steps")
RESOLUTION = 64  # the shapes world's images
# OpenAI CLIP's normalisation, which CLIPImageProcessor and BlipImageProcessor apply by default
MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


@dataclass(kw_only=True)
class PairTrainConfig(TrainConfig):
    """:class:`TrainConfig` for a model trained from scratch on the shapes pairs."""

    name: str = "model"
    save_dtype: str = "fp16"
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 100
    eval_n: int = 64  # images per set (seen, held-out) at each validation
    # the towers: a ViT over the 64² image, a transformer over the text
    vision_width: int = 128
    vision_layers: int = 4
    text_width: int = 128
    text_layers: int = 2
    patch_size: int = 8

    UNUSED = PAIRS_UNUSED
    SIZES = ("vision_width", "vision_layers", "text_width", "text_layers", "patch_size")  # kept on resume

    def validate(self) -> None:
        super().validate()
        if str(self.dataset) != "shapes":
            raise InvalidArgument(f"{self.TRAINS} trains on the procedural dataset `shapes`, got {self.dataset!r}")
        check_int("batch_size", self.batch_size, 1, 294)  # captions differ within a batch: 294 seen ones
        check_name("name", self.name, "folder")
        check_choice("save_dtype", self.save_dtype, SAVE_DTYPES)
        check_int("eval_n", self.eval_n, 1, 10_000)
        for f in ("vision_width", "text_width"):
            check_int(f, getattr(self, f), 32, 4096)
            if getattr(self, f) % 32:
                raise InvalidArgument(f"`{f}` must be a multiple of 32 (heads are 32 wide), got {getattr(self, f)}")
        check_int("vision_layers", self.vision_layers, 1, 48)
        check_int("text_layers", self.text_layers, 1, 48)
        check_int("patch_size", self.patch_size, 2, RESOLUTION)

    def sizes(self) -> dict[str, str]:
        """The architecture (``SIZES``), keyed by flag: what a resumed run must keep."""
        return {"--" + k.replace("_", "-"): str(getattr(self, k)) for k in self.SIZES}


def pixels(items) -> torch.Tensor:
    """The images of ``items`` as the processors give them: (N, 3, 64, 64), scaled to [0, 1], normalised."""
    arr = np.stack([np.asarray(it.image, dtype=np.float32) for it in items]) / 255.0
    return (torch.from_numpy(arr).permute(0, 3, 1, 2) - MEAN) / STD


class PairTrainer(Trainer):
    """A :class:`Trainer` of a model of its own on the shapes pairs; a subclass builds ``self.net`` and
    ``self.processor`` and says how a batch's loss is computed and which bar it measures."""

    needs_base = False
    validation_kind = "figures"
    measure: ClassVar  # gouache.tiny.vision_eval.clip_rank1 or caption_exact

    def __init__(self, cfg: PairTrainConfig, model, dataset):
        super().__init__(cfg, model, dataset)
        self.net, self.processor = self.build(cfg)
        self.processor.save_pretrained(Path(cfg.out_dir) / "processor")

    def build(self, cfg: PairTrainConfig):
        """``(model, processor)``: the untrained model and its processor."""
        raise NotImplementedError

    def trainable(self):
        return self.net

    @classmethod
    def outputs(cls, cfg: PairTrainConfig) -> list[Path]:
        return [Path(cfg.out_dir) / cfg.name]

    @classmethod
    def load_data(cls, cfg: PairTrainConfig, model):
        from gouache.tiny.pairs import training_batch

        return lambda index: training_batch(cfg.seed, index, cfg.batch_size, RESOLUTION)

    @torch.no_grad()
    def validate(self, model, step: int, folder: Path) -> Path:
        """The bar on ``eval_n`` seen and held-out images, appended to ``folder/figures.jsonl``."""
        from gouache.tiny.vision_eval import bars

        figures = bars(type(self).measure, model, self.processor, self.cfg.eval_n)
        folder.mkdir(parents=True, exist_ok=True)
        row = {"step": step, **{k: round(r.rate, 4) for k, r in figures.items()}}
        with open(folder / "figures.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        return folder / "figures.jsonl"

    def finish(self, model, out_dir: Path) -> Path:
        return save_folder(model, Path(out_dir) / "processor", Path(out_dir) / self.cfg.name, self.cfg.save_dtype)


def save_folder(model, processor_dir: Path, dest: Path, dtype: str = "fp16") -> Path:
    """``model`` (cast to ``dtype``) with the processor files of ``processor_dir`` as one transformers
    folder ``dest``, written beside it and renamed into place."""
    import copy

    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    copy.deepcopy(model).to(SAVE_DTYPES[dtype]).save_pretrained(tmp, safe_serialization=True)
    for f in processor_dir.iterdir():
        shutil.copy2(f, tmp / f.name)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest
