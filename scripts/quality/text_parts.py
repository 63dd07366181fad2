"""How well a gouache-tiny reads the parts of a caption, and whether whole captions still work.

For each part of a caption that stage 4 of the recipe teaches (``gouache train base --extend-text``,
:data:`gouache.train.base.CAPTION_PARTS`), N images of seen colour-shape pairs are generated from
the part alone and judged on what the part names (``on a blue background``: the background; ``a red
circle``: the colour and the kind). Whole captions are measured as ``gouache evaluate`` does (seen
and held-out pairs). Run it on the shipped model and on a candidate, side by side:

    python scripts/quality/text_parts.py                                   # the shipped gouache-tiny
    python scripts/quality/text_parts.py runs/tiny-text-parts/gouache-tiny.safetensors [--n 64]
"""

import argparse
import json
import random

from gouache.pipelines.model import load_model
from gouache.pipelines.request import GenerationRequest
from gouache.pipelines.txt2img import txt2img
from gouache.tiny.judge import read_image
from gouache.tiny.shapes import random_spec
from gouache.train.base import CAPTION_PARTS


def part_figures(model, n: int, steps: int, seed: int = 3000) -> dict[str, float]:
    """{part template: share of its n images whose named attributes the judge reads right}."""
    out = {}
    for t, (template, _) in enumerate(CAPTION_PARTS):
        rng, right = random.Random(seed + t), 0
        for i in range(n):
            spec = random_spec(rng)
            prompt = template.format(colour=spec.colour, shape=spec.shape, background=spec.background)
            read = read_image(txt2img(model, GenerationRequest(prompt, seed=seed + i, steps=steps))[0].image)
            named = [(k, getattr(spec, k)) for k in ("colour", "shape", "background") if "{" + k + "}" in template]
            right += all(getattr(read, k) == v for k, v in named)
        out[template] = round(right / n, 4)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", default=None, help="a packed gouache-tiny .safetensors (default: the shipped one)")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--whole", action="store_true", help="also whole captions, seen and held-out (gouache evaluate)")
    args = p.parse_args()
    if args.model and args.model.endswith(".safetensors"):  # a packed gouache-tiny: as a diffusers folder
        import tempfile
        from pathlib import Path

        from gouache.train.base import pipeline_folder

        args.model = str(pipeline_folder(Path(args.model), Path(tempfile.mkdtemp()) / "model"))
    model = load_model(args.model)
    figures = {"model": args.model or "gouache-tiny", "parts": part_figures(model, args.n, args.steps)}
    if args.whole:
        from gouache.tiny.evaluate import EvalConfig, evaluate

        figures["whole"] = {k: round(s.rate(), 4) for k, s in evaluate(EvalConfig(args.model, n=args.n,
                                                                                   steps=args.steps)).items()}
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
