"""Fit gouache-tiny's "Approx cheap" preview: a linear map from the 4 latent channels to RGB.

Encodes 400 images of the shapes dataset (seed 1, not the training seed), box-filters each image
down to the latents' 8x8 grid, and solves least squares for RGB in [-1, 1] = latent @ M + b.
Prints the map and its error; with --write it stores the map as the model's ``latent_preview``
fact (gouache.models.facts) in the file the model declares its facts in: a packed model's .json
(the built-in's is src/gouache/models/weights/gouache-tiny.json), a folder's gouache.json.
gouache.sampling.preview reads it from there.

Run: OMP_NUM_THREADS=2 .venv/bin/python scripts/fit_preview.py [--model NAME|PATH] [--write]
"""
import argparse
import json

import numpy as np
import torch
from PIL import Image

from gouache.models.facts import facts_file, parse_facts
from gouache.pipelines.model import load_model
from gouache.tiny.shapes import ShapesDataset

N = 400


def fit(model) -> tuple[np.ndarray, float, float]:
    """``(coefficients (5, 3): 4 rows of the matrix then the bias, RMS error, RMS error without the bias)``."""
    ds = ShapesDataset(seed=1)
    pixels, _ = ds.batch(0, N)
    latents = model.encode(torch.from_numpy(pixels)).float().numpy()  # (N, 4, 8, 8)
    h, w = latents.shape[2:]
    small = np.stack([np.asarray(ds[i].image.resize((w, h), Image.Resampling.BOX), np.float32) / 127.5 - 1
                      for i in range(N)])  # (N, 8, 8, 3)
    X = latents.transpose(0, 2, 3, 1).reshape(-1, 4)
    Y = small.reshape(-1, 3)
    A = np.concatenate([X, np.ones((len(X), 1), np.float32)], axis=1)
    coef, *_ = np.linalg.lstsq(A, Y, rcond=None)
    no_bias, *_ = np.linalg.lstsq(X, Y, rcond=None)
    rms = np.sqrt(((A @ coef - Y) ** 2).mean()) * 127.5
    return coef, rms, np.sqrt(((X @ no_bias - Y) ** 2).mean()) * 127.5


def write(model, coef: np.ndarray) -> None:
    """The map, at 4 decimals, as ``latent_preview`` in the model's facts file (other keys kept)."""
    target = facts_file(model.path)
    if target is None:
        raise SystemExit(f"{model.path}: declares no facts (a .safetensors with a .json beside it, or a folder)")
    meta = json.loads(target.read_text()) if target.is_file() else {}
    meta["latent_preview"] = {"matrix": [[round(float(v), 4) for v in row] for row in coef[:4]],
                              "bias": [round(float(v), 4) for v in coef[4]]}
    parse_facts(meta, str(target))  # what gouache will read back, checked before writing
    target.write_text(json.dumps(meta, indent=2))
    print(f"wrote latent_preview into {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="model name or path (default: the built-in gouache-tiny)")
    parser.add_argument("--write", action="store_true", help="store the map in the model's facts file")
    args = parser.parse_args()
    model = load_model(args.model)
    coef, rms, rms0 = fit(model)
    print("matrix (rows: latent channels, columns: R, G, B):")
    print(np.array2string(coef[:4], precision=4, separator=", "))
    print("bias:", np.array2string(coef[4], precision=4, separator=", "))
    print(f"RMS error {rms:.1f} levels of 255 (without the bias: {rms0:.1f})")
    if args.write:
        write(model, coef)


if __name__ == "__main__":
    main()
