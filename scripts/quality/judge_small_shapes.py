"""How well the judge reads small shapes, drawn and through gouache-tiny's VAE: why the either-way
motion clips (gouache.tiny.motion.EITHER_WAY_SIZE) start at 31 % of the side (20 px of 64).

    python scripts/quality/judge_small_shapes.py --n 60

For each size, N random shapes of the shapes world (centred within 12 px of the middle) are drawn,
read by gouache.tiny.judge.read_image as drawn and after a VAE encode/decode round trip, and the
share read right (colour, shape and background) printed.
"""

import argparse
import dataclasses
import random

import numpy as np
import torch
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="shapes per size")
    parser.add_argument("--sizes", default="12,14,16,18,20,22", help="shape sizes in px (of 64)")
    args = parser.parse_args()

    from gouache.pipelines.model import load_model
    from gouache.tiny.judge import read_image
    from gouache.tiny.shapes import draw, random_spec

    vae = load_model().pipeline.vae
    rng = random.Random(0)
    for size in (float(s) for s in args.sizes.split(",")):
        drawn = through_vae = 0
        for _ in range(args.n):
            spec = dataclasses.replace(random_spec(rng, 64), size=size, cx=rng.uniform(20, 44), cy=rng.uniform(20, 44))
            image, truth = draw(spec, 64), (spec.colour, spec.shape, spec.background)
            drawn += read_image(image).as_tuple() == truth
            x = torch.tensor(np.asarray(image.convert("RGB")), dtype=torch.float32).permute(2, 0, 1)[None] / 127.5 - 1
            with torch.no_grad():
                y = vae.decode(vae.encode(x).latent_dist.mean).sample[0]
            back = Image.fromarray(((y.permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy())
            through_vae += read_image(back).as_tuple() == truth
        print(f"{size:4.0f} px: read right {drawn / args.n:6.1%} as drawn, {through_vae / args.n:6.1%} through the VAE")


if __name__ == "__main__":
    main()
