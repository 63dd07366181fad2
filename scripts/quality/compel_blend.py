"""Does compel's ``.blend()`` move gouache-tiny's image from one prompt to the other?

For each blend weight w in 0…1 and each seed, generates
``("a red circle on a blue background", "a yellow circle on a blue background").blend(w, 1-w)``
with ``prompt_syntax="compel"`` and prints, per w: how many images the judge reads red, orange and
yellow, and the shape's mean green channel (red ≈ 30, yellow ≈ 210; the shape is every pixel far
from the border's colour). Also prints how often the two plain prompts read as their own colour.

Run: OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python scripts/quality/compel_blend.py --seeds 16
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

RED, YELLOW = "a red circle on a blue background", "a yellow circle on a blue background"


def shape_green(image) -> float:
    a = np.asarray(image.convert("RGB")).astype(float)
    border = np.median(np.concatenate([a[:2].reshape(-1, 3), a[-2:].reshape(-1, 3)]), axis=0)
    shape = np.linalg.norm(a - border, axis=-1) > 100
    return float(a[shape][:, 1].mean()) if shape.any() else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--weights", default="1,0.75,0.6,0.5,0.4,0.25,0")
    args = ap.parse_args()

    from gouache import txt2img
    from gouache.pipelines.model import load_model
    from gouache.tiny.judge import read_image

    model = load_model()
    seeds = range(1000, 1000 + args.seeds)
    for prompt, colour in ((RED, "red"), (YELLOW, "yellow")):
        hits = sum(read_image(txt2img(prompt, model=model, seed=s, steps=args.steps)[0].image).colour == colour
                   for s in seeds)
        print(f"plain {prompt!r} (A1111 syntax): {hits}/{args.seeds} read {colour}")
    print(f"{'w (red)':>8}  {'red':>4} {'orange':>6} {'yellow':>6} {'other':>5}  shape green (mean ± sd)")
    for w in (float(x) for x in args.weights.split(",")):
        prompt = f'("{RED}", "{YELLOW}").blend({w:g}, {1 - w:g})'
        colours, greens = Counter(), []
        for s in seeds:
            image = txt2img(prompt, model=model, seed=s, steps=args.steps, prompt_syntax="compel")[0].image
            c = read_image(image).colour
            colours[c if c in ("red", "orange", "yellow") else "other"] += 1
            greens.append(shape_green(image))
        g = np.array(greens)
        print(f"{w:>8g}  {colours['red']:>4} {colours['orange']:>6} {colours['yellow']:>6} {colours['other']:>5}  "
              f"{np.nanmean(g):6.1f} ± {np.nanstd(g):5.1f}")


if __name__ == "__main__":
    main()
