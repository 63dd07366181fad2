"""Does the built-in edge ControlNet put gouache-tiny's shape where the control edges say?

For each of 32 cases a shape spec is drawn (colour, kind, background, position, size; seeded),
its Canny edges are the control map (``--control canny:drawn.png``), and the prompt names its colour, kind and background. The
image is generated with the ControlNet and without (same seed). Measured:

* **IoU** of the generated shape's mask (pixels whose nearest palette colour is not the image's
  background, as read by :mod:`gouache.tiny.judge`, specks removed) with the drawn shape's mask;
* **colour** and **background** as the judge reads them, against the prompt;
* **chance**: the IoU of each case's drawn shape with the next case's (a shape placed as the
  dataset places shapes, ignoring the control).

    python scripts/quality/controlnet_iou.py [--controlnet NAME_OR_PATH] [--cases 32] [--steps 20] [--out DIR]

Prints a table and the summary; ``--out`` also writes ``cases.json`` and a grid
(control | with ControlNet | without) per case.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np


def shape_mask(image, background: str | None = None) -> np.ndarray:
    """Pixels that are not of the background palette colour (the judge's reading of the border if
    ``background`` is None), after the judge's 3×3 majority filter."""
    from gouache.tiny import judge
    from gouache.tiny.shapes import COLOURS

    arr = np.asarray(image.convert("RGB"))
    labels = judge._nearest(arr)
    bg = COLOURS.index(background) if background else COLOURS.index(judge.read_image(image).background)
    return judge._majority_filter(labels != bg)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def cases(n: int, seed: int):
    from gouache.tiny.shapes import random_spec

    rng = random.Random(seed)
    return [random_spec(rng, 64) for _ in range(n)]


def run(controlnet: str | None, n: int, steps: int, seed: int, out: Path | None) -> dict:
    from gouache.control.models import BUILTIN_EDGES, load_controlnet
    from gouache.control.preprocessors import canny
    from gouache.control.spec import ControlSpec
    from gouache.pipelines.model import load_model
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.txt2img import txt2img
    from gouache.tiny import judge
    from gouache.tiny.shapes import caption, draw

    model = load_model()
    net = load_controlnet(controlnet or BUILTIN_EDGES, model)
    rows, grid, truths = [], [], []
    for k, spec in enumerate(cases(n, seed)):
        drawn = draw(spec)
        edges = canny(drawn)
        truth = shape_mask(drawn, spec.background)
        truths.append(truth)
        prompt = caption(spec.colour, spec.shape, spec.background)
        row = {"case": k, "prompt": prompt, "cx": round(spec.cx, 1), "cy": round(spec.cy, 1), "size": round(spec.size, 1)}
        # the drawn image goes in as a user's would: the pipeline makes its Canny edges (``edges``, shown in the grid)
        for label, controls in (("with", [ControlSpec("canny", drawn, net)]), ("without", [])):
            image = txt2img(model, GenerationRequest(prompt, seed=seed + k, steps=steps, controls=controls))[0].image
            reading = judge.read_image(image)
            row[label] = {"iou": round(iou(shape_mask(image), truth), 3), "colour": reading.colour == spec.colour,
                          "background": reading.background == spec.background, "shape": reading.shape == spec.shape}
            grid.append(image)
        grid.insert(len(grid) - 2, edges)
        rows.append(row)
        w, wo = row["with"], row["without"]
        print(f"{k:2d} {prompt:<45} IoU {w['iou']:.2f} (without {wo['iou']:.2f}) colour {w['colour']!s:5} "
              f"background {w['background']!s:5}", flush=True)
    summary = {}
    for label in ("with", "without"):
        ious = [r[label]["iou"] for r in rows]
        summary[label] = {
            "mean_iou": round(float(np.mean(ious)), 3),
            "iou_ge_0.6": round(float(np.mean([v >= 0.6 for v in ious])), 3),
            "colour": round(float(np.mean([r[label]["colour"] for r in rows])), 3),
            "background": round(float(np.mean([r[label]["background"] for r in rows])), 3),
            "colour_and_background": round(float(np.mean([r[label]["colour"] and r[label]["background"] for r in rows])), 3),
            "shape": round(float(np.mean([r[label]["shape"] for r in rows])), 3),
        }
    # chance: how well a shape put anywhere the dataset puts shapes overlaps this one (the next case's shape)
    chance = [iou(truths[(k + 1) % n], truths[k]) for k in range(n)]
    summary["chance"] = {"mean_iou": round(float(np.mean(chance)), 3),
                         "iou_ge_0.6": round(float(np.mean([v >= 0.6 for v in chance])), 3)}
    result = {"controlnet": net.title, "cases": n, "steps": steps, "seed": seed, "summary": summary, "rows": rows}
    if out is not None:
        from gouache.images import image_grid

        out.mkdir(parents=True, exist_ok=True)
        (out / "cases.json").write_text(json.dumps(result, indent=1))
        image_grid(grid, cols=3).save(out / "grid.png")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--controlnet", default=None, help="name or path (default: the built-in gouache-tiny-edges)")
    p.add_argument("--cases", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    result = run(args.controlnet, args.cases, args.steps, args.seed, args.out)
    for label, s in result["summary"].items():
        if label == "chance":
            print(f"   chance (another case's shape): IoU >= 0.6 in {s['iou_ge_0.6']:.0%} (mean IoU {s['mean_iou']:.2f})")
            continue
        print(f"{label:>7} ControlNet: IoU >= 0.6 in {s['iou_ge_0.6']:.0%} (mean IoU {s['mean_iou']:.2f}); colour "
              f"{s['colour']:.0%}, background {s['background']:.0%}, both {s['colour_and_background']:.0%}; "
              f"shape {s['shape']:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
