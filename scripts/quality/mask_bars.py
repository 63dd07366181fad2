"""The editing bars of issue #21 that rest on the segmenter, measured on the shapes world (fixed seeds).

1. **Masks from words**: mean IoU of the mask with the true region, for "the {shape}"-style and
   "the background"-style queries, on N seen-pair and N held-out-pair images, filled and outlined
   (bar 0.85); and how often a query naming something absent gets an empty mask.
2. **Background removal**: ``remove_background``'s alpha > 0.5 against the shape's pixels, IoU (bar 0.9).
3. **Background replacement** (``gouache edit background``'s defaults, gouache-tiny): each image's
   background changed to another named colour; right when the judge reads the new background and
   the shape's colour and kind kept (bar 90 %), and the shape not repainted: its pixels within 12
   levels of the original (bar: 95 % of them).

    python scripts/quality/mask_bars.py src/gouache/models/weights/clipseg/gouache-tiny-clipseg
    python scripts/quality/mask_bars.py /work/main/runs/tiny-clipseg [--n 64] [--export DEST] [--skip-edit]

A FOLDER is a transformers folder or a run folder, whose newest checkpoint is measured;
``--export DEST`` writes what was measured as a transformers folder (fp16).
"""

import argparse
import json
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from gouache.cli.edit import KEEP_EDGES
from gouache.errors import InvalidArgument
from gouache.tiny.masks import coverage, evaluation_items, iou
from gouache.train.clipseg import mask_figures

BARS = {"mask": 0.85, "removal": 0.9, "edit": 0.9, "kept_pixels": 0.95}


def load(folder: Path):
    """(model, processor, what) from a transformers folder or a run's newest checkpoint."""
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    if (folder / "config.json").is_file():
        return (CLIPSegForImageSegmentation.from_pretrained(folder, dtype=torch.float32),
                CLIPSegProcessor.from_pretrained(folder), str(folder))
    from safetensors.torch import load_file

    from gouache.train.checkpoints import last_checkpoint
    from gouache.train.clipseg import ClipSegTrainConfig, clipseg_from_clip
    from gouache.vision.clip import find_clip

    ckpt = last_checkpoint(folder / "checkpoints")
    if ckpt is None:
        raise SystemExit(f"{folder} holds neither a transformers folder nor a checkpoint")
    saved = json.loads((folder / "clipseg_config.json").read_text())
    cfg = ClipSegTrainConfig(**{k: v for k, v in saved.items() if k in ClipSegTrainConfig.__dataclass_fields__})
    model = clipseg_from_clip(find_clip(cfg.clip), cfg)
    model.load_state_dict(load_file(str(ckpt / "trainable_0.safetensors")), strict=False)
    return model, CLIPSegProcessor.from_pretrained(folder / "processor"), str(ckpt)


def door_iou(segmenter, n: int) -> dict[str, float]:
    """Mean IoU of the masks every door makes (``words_mask`` with the defaults: threshold 0.5, refined
    at radius 4), by set and kind, by style, and for the shape by query (a mask that matches nothing
    counts as empty)."""
    from gouache.vision.segment import MaskOptions, mask_image

    out = {}
    for name, held_out in (("seen", False), ("held_out", True)):
        for kind in ("shape", "background"):
            scores, by = [], {}
            for item in evaluation_items(held_out, kind, n):
                try:
                    m = np.asarray(mask_image(item.image, item.query, MaskOptions(), segmenter), np.float32) / 255.0
                except InvalidArgument:
                    m = np.zeros(item.image.size[::-1], np.float32)
                score = iou(m, item.target)
                scores.append(score)
                by.setdefault(item.spec.style, []).append(score)
                if kind == "shape":
                    form = item.query.replace(item.spec.colour, "{colour}").replace(item.spec.shape, "{shape}")
                    by.setdefault(form, []).append(score)
            out[f"{name}_{kind}"] = round(float(np.mean(scores)), 4)
            # the bar names the queries: "the {shape}" and "the background", on every image
            words = [f"the {it.spec.shape}" if kind == "shape" else "the background"
                     for it in evaluation_items(held_out, kind, n)]
            exact = []
            for item, query in zip(evaluation_items(held_out, kind, n), words):
                try:
                    m = np.asarray(mask_image(item.image, query, MaskOptions(), segmenter), np.float32) / 255.0
                except InvalidArgument:
                    m = np.zeros(item.image.size[::-1], np.float32)
                exact.append(iou(m, item.target))
            out[f"{name}_{kind} (bar's query: {'the {shape}' if kind == 'shape' else 'the background'})"] = \
                round(float(np.mean(exact)), 4)
            out.update({f"{name}_{kind} [{k}]": round(float(np.mean(v)), 4) for k, v in by.items()})
    return out


def removal_iou(segmenter, n: int) -> dict[str, float]:
    from gouache.vision.segment import remove_background

    out = {}
    for name, held_out in (("seen", False), ("held_out", True)):
        scores = []
        for item in evaluation_items(held_out, "shape", n):
            try:
                alpha = np.asarray(remove_background(item.image, segmenter))[..., 3] / 255.0
            except InvalidArgument:  # no object found: nothing right
                alpha = np.zeros(item.image.size[::-1])
            scores.append(iou(alpha, coverage(item.image, item.spec)))
        out[name] = float(np.mean(scores))
    return out


def edit_figures(segmenter_folder: Path, n: int, keep_edges: float = KEEP_EDGES) -> dict[str, float]:
    """Background replacement on ``n`` seen and ``n`` held-out images with gouache-tiny, as ``gouache
    edit background`` makes it (``keep_edges``: its ``--keep-edges``)."""
    from gouache.cli.edit import BACKGROUND_DEFAULTS, request_keeping_edges
    from gouache.pipelines.inpaint import inpaint
    from gouache.pipelines.model import load_model
    from gouache.pipelines.request import InpaintRequest, MASKED_CONTENT
    from gouache.tiny.judge import read_image
    from gouache.tiny.shapes import COLOURS

    model = load_model()
    fill = {v.split()[-1]: k for k, v in MASKED_CONTENT.items()}[BACKGROUND_DEFAULTS["inpainting_fill"]]
    defaults = {**BACKGROUND_DEFAULTS, "inpainting_fill": fill}
    out = {}
    for name, held_out in (("seen", False), ("held_out", True)):
        rng, right, kept = random.Random(5 + held_out), 0, []
        for i, item in enumerate(evaluation_items(held_out, "background", n)):
            spec = item.spec
            new = rng.choice([c for c in COLOURS if c not in (spec.colour, spec.background)])
            prompt = item.spec.caption.replace(f"on a {spec.background} background", f"on a {new} background")
            req = InpaintRequest(prompt, init_image=item.image, mask_prompt="the background",
                                 segmenter=str(segmenter_folder), seed=i + 1, **defaults)
            image = inpaint(model, request_keeping_edges(model, req, keep_edges))[0].image
            r = read_image(image)
            right += (r.background, r.colour, r.shape) == (new, spec.colour, spec.shape)
            inside = coverage(item.image, spec) >= 0.99
            diff = np.abs(np.asarray(image, np.int16) - np.asarray(item.image, np.int16)).max(-1)
            kept.append(float((diff[inside] <= 12).mean()) if inside.any() else 1.0)
        out[f"{name}_right"] = right / n
        out[f"{name}_kept_pixels"] = float(np.mean(kept))
        out[f"{name}_images_kept_95"] = float(np.mean([k >= 0.95 for k in kept]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--n", type=int, default=64, help="images per set")
    ap.add_argument("--export", type=Path, help="write the measured model (fp16) and its processor to this folder")
    ap.add_argument("--skip-edit", action="store_true", help="leave out the background replacement (slow)")
    ap.add_argument("--edit-only", action="store_true", help="only the background replacement, with the shipped "
                    "CLIPSeg when FOLDER is `shipped`")
    ap.add_argument("--keep-edges", type=float, default=KEEP_EDGES, help="edit background's --keep-edges")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.edit_only:
        folder = "gouache-tiny-clipseg" if str(args.folder) == "shipped" else args.folder
        print("background replacement:", json.dumps(edit_figures(folder, args.n, args.keep_edges)))
        return
    model, processor, what = load(args.folder)
    print(f"CLIPSeg {what}")
    print("masks (mean IoU; *_none: empty masks for absent things):", json.dumps(mask_figures(model, processor, args.n)))
    from gouache.vision.segment import Segmenter

    segmenter = Segmenter("clipseg", "measured", model.eval(), processor)
    print("masks as the doors make them (refined):", json.dumps(door_iou(segmenter, args.n), indent=1))
    print("removal (IoU of alpha > 0.5 with the shape):", json.dumps(removal_iou(segmenter, args.n)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = _export(model, processor, args.export or Path(tmp) / "clipseg")
        if not args.skip_edit:
            print("background replacement:", json.dumps(edit_figures(folder, args.n, args.keep_edges)))
    print("bars:", json.dumps(BARS))


def _export(model, processor, dest: Path) -> Path:
    from gouache.train.pairs import save_folder

    with tempfile.TemporaryDirectory() as tmp:
        processor.save_pretrained(tmp)
        dest.parent.mkdir(parents=True, exist_ok=True)
        return save_folder(model, Path(tmp), dest)


if __name__ == "__main__":
    main()
