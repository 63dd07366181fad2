"""Fit gouache-tiny's "Approx cheap" preview: a linear map from the 4 latent channels to RGB.

Encodes 400 images of the shapes dataset (seed 1, not the training seed), box-filters each image
down to the latents' 8x8 grid, and solves least squares for RGB in [-1, 1] = latent @ M + b.
Prints the constants stored in gouache.sampling.preview (TINY_LATENT_RGB, TINY_LATENT_RGB_BIAS).

Run: OMP_NUM_THREADS=2 .venv/bin/python scripts/fit_preview.py
"""
import numpy as np
import torch
from PIL import Image

from gouache.pipelines.model import load_model
from gouache.tiny.shapes import ShapesDataset

N = 400
model = load_model()
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
rms = np.sqrt(((A @ coef - Y) ** 2).mean()) * 127.5
no_bias, *_ = np.linalg.lstsq(X, Y, rcond=None)
rms0 = np.sqrt(((X @ no_bias - Y) ** 2).mean()) * 127.5
print("matrix (rows: latent channels, columns: R, G, B):")
print(np.array2string(coef[:4], precision=4, separator=", "))
print("bias:", np.array2string(coef[4], precision=4, separator=", "))
print(f"RMS error {rms:.1f} levels of 255 (without the bias: {rms0:.1f})")
