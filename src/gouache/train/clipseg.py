"""``gouache train clipseg``: the built-in CLIPSeg, ``gouache-tiny-clipseg``, masks from words on gouache-tiny's CLIP.

A transformers ``CLIPSegForImageSegmentation`` (Lüddecke & Ecker, 2022): a CLIP whose text
embedding of the query conditions (FiLM) a small transformer decoder over the activations of the
CLIP's vision layers ``extract_layers``, and a transposed convolution that turns each patch's token
back into its pixels. Its CLIP starts as ``gouache-tiny-clip`` (weights copied; CLIPSeg's CLIP has
CLIP's own key names); the decoder starts at random. Everything trains (with ``--freeze-vision``
the vision tower stays as the CLIP's, as CLIPSeg's paper keeps it), with the per-pixel binary
cross-entropy plus the Dice loss (:func:`dice_loss`) against the query's true region (:mod:`gouache.tiny.masks`: the shape, the
background, or nothing). The result is a transformers folder with a ``CLIPSegProcessor``, so
``CLIPSegForImageSegmentation.from_pretrained`` loads it, as it does CIDAS' ``clipseg-rd64-refined``.

Validation measures the bar: the mean IoU of "the {shape}"-style and "the background"-style
queries on 64 seen-pair and 64 held-out-pair images, and how often a query naming something the
image does not show gets an empty mask (:func:`mask_figures`).

>>> train_clipseg(ClipSegTrainConfig("shapes", "runs/tiny-clipseg", steps=3000))   # doctest: +SKIP
PosixPath('runs/tiny-clipseg/gouache-tiny-clipseg')
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gouache.errors import InvalidArgument, check_int, check_number
from gouache.train.driver import run
from gouache.train.pairs import RESOLUTION, PairTrainConfig, PairTrainer, pixels

TOWERS = ("vision_width", "vision_layers", "text_width", "text_layers", "patch_size")  # the CLIP's, not flags


@dataclass(kw_only=True)
class ClipSegTrainConfig(PairTrainConfig):
    """:class:`PairTrainConfig` with the CLIP it starts from and the decoder's sizes (the towers are the CLIP's)."""

    name: str = "gouache-tiny-clipseg"
    clip: str = "gouache-tiny-clip"  # a CLIP name or folder (gouache.vision.clip.find_clip)
    reduce_dim: int = 64  # the decoder's width
    extract_layers: str = "1,2,3"  # the vision layers the decoder reads, comma-separated (0 is the first)
    dice: float = 1.0  # weight of the Dice loss added to the per-pixel cross-entropy (0: cross-entropy alone)
    freeze_vision: bool = False  # True: the vision tower stays as the CLIP's (CLIPSeg's paper)
    grey: float = 0.5  # of the queries naming no colour, the share shown in greys (gouache.tiny.masks.item_for)
    batch_size: int = 64
    lr: float = 1e-3
    steps: int = 3000

    TRAINS = "the built-in CLIPSeg"
    UNUSED = PairTrainConfig.UNUSED + TOWERS
    SIZES = ("clip", "reduce_dim", "extract_layers", "freeze_vision", "dice", "grey")

    def validate(self) -> None:
        super().validate()
        check_int("reduce_dim", self.reduce_dim, 16, 1024)
        check_number("dice", self.dice, 0, 100, " (the Dice loss's weight; 0: cross-entropy alone)")
        check_number("grey", self.grey, 0, 1, " (the share of colour-free queries shown in greys)")
        if self.reduce_dim % 16:
            raise InvalidArgument(f"`reduce_dim` must be a multiple of 16 (the decoder's heads are 16 wide), "
                                  f"got {self.reduce_dim}")
        self.layers()

    def layers(self) -> list[int]:
        """``extract_layers`` as a list of increasing layer indices."""
        try:
            layers = [int(x) for x in str(self.extract_layers).split(",")]
        except ValueError:
            layers = []
        if not layers or layers != sorted(set(layers)) or layers[0] < 0:
            raise InvalidArgument(f"`extract_layers` must be increasing layer indices separated by commas, e.g. 1,2,3; "
                                  f"got {self.extract_layers!r}")
        return layers


def clipseg_from_clip(clip_folder: Path, cfg: ClipSegTrainConfig):
    """A ``CLIPSegForImageSegmentation`` whose CLIP is the ``CLIPModel`` in ``clip_folder`` and whose decoder is new."""
    from transformers import CLIPModel, CLIPSegConfig, CLIPSegForImageSegmentation

    clip = CLIPModel.from_pretrained(clip_folder, dtype=torch.float32)
    depth = clip.config.vision_config.num_hidden_layers
    layers = cfg.layers()
    if layers[-1] >= depth:
        raise InvalidArgument(f"`extract_layers` {cfg.extract_layers}: the CLIP's vision tower has {depth} layers "
                              f"(0 to {depth - 1})")
    config = CLIPSegConfig(text_config=clip.config.text_config.to_dict(),
                           vision_config=clip.config.vision_config.to_dict(),
                           projection_dim=clip.config.projection_dim, extract_layers=layers,
                           reduce_dim=cfg.reduce_dim, decoder_num_attention_heads=max(cfg.reduce_dim // 16, 1),
                           decoder_intermediate_size=4 * cfg.reduce_dim, conditional_layer=0)
    model = CLIPSegForImageSegmentation(config)
    with torch.no_grad():  # logits near 0 at the start: transformers leaves this layer at PyTorch's init (|logits| ~ 8)
        torch.nn.init.normal_(model.decoder.transposed_convolution.weight, std=0.02)
        torch.nn.init.zeros_(model.decoder.transposed_convolution.bias)
    missing, unexpected = model.clip.load_state_dict(clip.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise InvalidArgument(f"{clip_folder}: not a CLIP CLIPSeg can start from (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    return model


@torch.no_grad()
def calibrate(model, pixel_values: torch.Tensor) -> None:
    """Scale the decoder's input layers (``reduces``) so that each gives unit-RMS features on these
    images. A CLIP's residual stream is large (a small CLIP's: RMS ~25 after ``reduce`` at PyTorch's
    init) and the decoder is post-norm: each layer's ``reduce(activation)`` would drown the
    previous layer's normalised output, and with it the text's FiLM, so the masks could not follow the words."""
    vision = model.clip.vision_model(pixel_values=pixel_values, output_hidden_states=True)
    for layer, reduce in zip(model.extract_layers, model.decoder.reduces):
        rms = reduce(vision.hidden_states[layer + 1]).pow(2).mean().sqrt().clamp_min(1e-6)
        reduce.weight.div_(rms)
        reduce.bias.div_(rms)


def clipseg_processor(clip_folder: Path):
    """A ``CLIPSegProcessor``: the CLIP's tokenizer, 64×64 images normalised as the CLIP saw them."""
    from transformers import CLIPSegProcessor, CLIPTokenizer, ViTImageProcessor

    from gouache.train.pairs import MEAN, STD

    images = ViTImageProcessor(size={"height": RESOLUTION, "width": RESOLUTION}, resample=3,
                               image_mean=MEAN.flatten().tolist(), image_std=STD.flatten().tolist())
    return CLIPSegProcessor(image_processor=images, tokenizer=CLIPTokenizer.from_pretrained(clip_folder))


def logits(model, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``model``'s mask logits (N, H, W), as its ``forward`` computes them but with gradients through
    the vision tower too (``forward`` runs it under ``no_grad``: CLIPSeg's paper freezes it)."""
    vision = model.clip.vision_model(pixel_values=pixel_values, output_hidden_states=True)
    activations = [vision.hidden_states[i + 1] for i in model.extract_layers]
    cond = model.get_conditional_embeddings(batch_size=pixel_values.shape[0], input_ids=input_ids,
                                            attention_mask=attention_mask)
    out = model.decoder(activations, cond).logits
    return out if out.dim() == 3 else out.unsqueeze(0)


class ClipSegTrainer(PairTrainer):
    """Per-pixel binary cross-entropy of each query's mask, plus its Dice loss."""

    name = "clipseg"
    makes = "CLIPSeg models"
    config_file = "clipseg_config.json"

    def build(self, cfg: ClipSegTrainConfig):
        from gouache.vision.clip import find_clip

        folder = find_clip(cfg.clip)
        model = clipseg_from_clip(folder, cfg)
        calibrate(model, pixels(self.dataset(-1)))
        model.clip.vision_model.requires_grad_(not cfg.freeze_vision)
        return model, clipseg_processor(folder)

    @classmethod
    def resume_settings(cls, cfg: ClipSegTrainConfig) -> dict[str, str]:
        return cfg.sizes()

    @classmethod
    def load_data(cls, cfg: ClipSegTrainConfig, model):
        from gouache.tiny.masks import training_batch

        return lambda index: training_batch(cfg.seed, index, cfg.batch_size, RESOLUTION, cfg.grey)

    def loss(self, model, index: int):
        items = self.dataset(index)
        text = self.processor.tokenizer([it.query for it in items], padding=True, return_tensors="pt")
        target = torch.from_numpy(np.stack([it.target for it in items]))
        out = logits(model, pixels(items), text["input_ids"], text["attention_mask"])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out, target)
        return loss + self.cfg.dice * dice_loss(out, target) if self.cfg.dice else loss

    @torch.no_grad()
    def validate(self, model, step: int, folder: Path) -> Path:
        figures = mask_figures(model, self.processor, self.cfg.eval_n)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "figures.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **figures}) + "\n")
        return folder / "figures.jsonl"


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − the soft Dice coefficient of each mask (+1 smoothing, so an empty target asks for an empty
    mask), averaged. Each image counts the same whatever its region's size, which the per-pixel
    cross-entropy does not give a thin outline: with it alone an outlined shape's mask stays at IoU ~0.2."""
    p = torch.sigmoid(logits)
    inter = (p * target).sum((1, 2))
    return (1 - (2 * inter + 1) / (p.sum((1, 2)) + target.sum((1, 2)) + 1)).mean()


@torch.no_grad()
def predict(model, processor, images, texts: list[str]) -> np.ndarray:
    """The mask probabilities (N, 64, 64) of each image and its query."""
    model.eval()
    dtype = next(model.parameters()).dtype
    text = processor.tokenizer(texts, padding=True, return_tensors="pt")
    px = processor.image_processor(images=images, return_tensors="pt")["pixel_values"].to(dtype)
    out = model(input_ids=text["input_ids"], attention_mask=text["attention_mask"], pixel_values=px).logits
    out = out if out.dim() == 3 else out.unsqueeze(0)
    return torch.sigmoid(out.float()).numpy()


def mask_figures(model, processor, n: int = 64) -> dict[str, float]:
    """The bar on ``n`` seen and ``n`` held-out images: mean IoU of the shape and background queries
    (``seen_shape``, ``held_out_background``, ...) and the share of empty masks for queries that
    name nothing on the image (``seen_none``, ``held_out_none``)."""
    from gouache.tiny.masks import evaluation_items, iou

    out = {}
    for name, held_out in (("seen", False), ("held_out", True)):
        for kind in ("shape", "background", "none"):
            items = evaluation_items(held_out, kind, n)
            probs = np.concatenate([predict(model, processor, [it.image for it in items[i:i + 64]],
                                            [it.query for it in items[i:i + 64]]) for i in range(0, n, 64)])
            if kind == "none":
                out[f"{name}_none"] = round(float(np.mean([(p <= 0.5).all() for p in probs])), 4)
            else:
                out[f"{name}_{kind}"] = round(float(np.mean([iou(p, it.target) for p, it in zip(probs, items)])), 4)
    return out


def train_clipseg(cfg: ClipSegTrainConfig, log=print) -> Path:
    """Train (or resume) the built-in CLIPSeg; returns the transformers folder written."""
    return run(cfg, ClipSegTrainer, log)
