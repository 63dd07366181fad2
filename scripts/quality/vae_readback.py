"""How well a gouache-tiny VAE draws each style: encode and decode N procedural images of filled
shapes and of outlines (indices far from any training stream) and count those the judge reads back
as the right colour, shape, background *and* style.

    python scripts/quality/vae_readback.py VAE_FOLDER [--n 200]   # e.g. runs/tiny/vae
"""

import argparse

import numpy as np
import torch
from diffusers import AutoencoderKL
from PIL import Image

from gouache.tiny.judge import read_image
from gouache.tiny.shapes import ShapesDataset

torch.set_num_threads(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vae", help="a diffusers AutoencoderKL folder")
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    vae = AutoencoderKL.from_pretrained(args.vae).eval()
    for style in ("filled", "outline"):
        ds, right, start = ShapesDataset(seed=777, style=style), 0, 5_000_000
        with torch.no_grad():
            for first in range(0, args.n, 50):
                size = min(50, args.n - first)
                arr, _ = ds.batch(start + first, size)
                recon = vae.decode(vae.encode(torch.from_numpy(arr)).latent_dist.mode()).sample
                pixels = ((recon.clamp(-1, 1).permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)
                for k in range(size):
                    spec, reading = ds.spec(start + first + k), read_image(Image.fromarray(pixels[k]))
                    right += reading.as_tuple() == (spec.colour, spec.shape, spec.background) and reading.style == style
        print(f"{style:8} {right} / {args.n} read back right")


if __name__ == "__main__":
    main()
