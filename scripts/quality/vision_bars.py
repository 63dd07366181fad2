"""The bars of the built-in CLIP and captioner, on 64 seen-pair and 64 held-out-pair images (fixed seeds).

CLIP: zero-shot rank 1 among the world's 336 captions (bar: 95 % seen, 85 % held-out). Captioner:
the exact caption by greedy decoding (bar: 97 % seen, 90 % held-out). A FOLDER is a transformers
folder (the shipped one, a run's result) or a run folder, whose newest checkpoint is measured
(its weights in the run's architecture, with the run's processor).

    python scripts/quality/vision_bars.py clip src/gouache/models/weights/clip/gouache-tiny-clip
    python scripts/quality/vision_bars.py captioner /work/main/runs/tiny-captioner [--misses 5]

``--export DEST`` also writes what was measured as a transformers folder (fp16), as the run's end
would: a run stopped early ships its newest checkpoint this way.
"""

import argparse
import json
from pathlib import Path

import torch

from gouache.tiny.vision_eval import bars, caption_exact, clip_rank1

BARS = {"clip": {"seen": 0.95, "held_out": 0.85}, "captioner": {"seen": 0.97, "held_out": 0.90}}


def load(kind: str, folder: Path):
    """(model, processor, what was loaded) from a transformers folder or a run folder's newest checkpoint."""
    from transformers import AutoProcessor, BlipForConditionalGeneration, CLIPModel

    cls = CLIPModel if kind == "clip" else BlipForConditionalGeneration
    if (folder / "config.json").is_file():
        return cls.from_pretrained(folder, dtype=torch.float32), AutoProcessor.from_pretrained(folder), str(folder)
    return _from_checkpoint(kind, folder)


def _from_checkpoint(kind: str, run: Path):
    from safetensors.torch import load_file
    from transformers import AutoProcessor

    from gouache.train.captioner import CaptionerTrainConfig, blip_config
    from gouache.train.checkpoints import last_checkpoint
    from gouache.train.clip import ClipTrainConfig, clip_config

    ckpt = last_checkpoint(run / "checkpoints")
    if ckpt is None:
        raise SystemExit(f"{run} holds neither a transformers folder nor a checkpoint")
    saved = json.loads((run / f"{kind}_config.json").read_text())
    processor = AutoProcessor.from_pretrained(run / "processor")
    if kind == "clip":
        from transformers import CLIPModel

        cfg = ClipTrainConfig(**{k: v for k, v in saved.items() if k in ClipTrainConfig.__dataclass_fields__})
        model = CLIPModel(clip_config(cfg))
    else:
        from transformers import BlipForConditionalGeneration

        cfg = CaptionerTrainConfig(**{k: v for k, v in saved.items() if k in CaptionerTrainConfig.__dataclass_fields__})
        model = BlipForConditionalGeneration(blip_config(cfg, processor.tokenizer))
    model.load_state_dict(load_file(str(ckpt / "trainable_0.safetensors")), strict=False)
    return model, processor, str(ckpt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=tuple(BARS))
    ap.add_argument("folder", type=Path)
    ap.add_argument("--n", type=int, default=64, help="images per set")
    ap.add_argument("--misses", type=int, default=0, help="print this many misses of each set")
    ap.add_argument("--export", type=Path, help="write the measured model (fp16) and its processor to this folder")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, processor, what = load(args.kind, args.folder)
    figures = bars(clip_rank1 if args.kind == "clip" else caption_exact, model, processor, args.n)
    print(f"{args.kind} {what}")
    for name, rate in figures.items():
        bar = BARS[args.kind][name]
        print(f"  {name:>8}: {rate.summary()} (bar {bar:.0%}: {'met' if rate.rate >= bar else 'NOT met'})")
        for wanted, given in rate.misses[: args.misses]:
            print(f"            {wanted!r} -> {given!r}")
    if args.export:
        _export(model, processor, args.export)


def _export(model, processor, dest: Path) -> None:
    import tempfile

    from gouache.train.pairs import save_folder

    with tempfile.TemporaryDirectory() as tmp:
        processor.save_pretrained(tmp)
        dest.parent.mkdir(parents=True, exist_ok=True)
        print(f"exported {save_folder(model, Path(tmp), dest)}")


if __name__ == "__main__":
    main()
