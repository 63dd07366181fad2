"""Canny on a 1024×1024 image: gouache's numpy/scipy implementation (and OpenCV's, if installed).

    python benchmarks/canny.py            # prints the median of 5 runs
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from PIL import Image, ImageDraw

from gouache.control.preprocessors import canny_edges


def test_image(size: int = 1024, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (size, size), (35, 70, 220))
    d = ImageDraw.Draw(im)
    for _ in range(40):
        x, y, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(20, 150))]
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x - r, y - r, x + r, y + r], fill=colour)
    noise = rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(im) + noise, 0, 255).astype(np.uint8))


def timed(fn, runs: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    image = test_image()
    print(f"gouache canny (numpy/scipy), 1024x1024: {timed(lambda: canny_edges(image)) * 1000:.0f} ms (median of 5)")
    try:
        import cv2
    except ImportError:
        print("OpenCV not installed: no comparison")
        return
    arr = np.asarray(image)
    print(f"cv2.Canny, 1024x1024: {timed(lambda: cv2.Canny(arr, 100, 200)) * 1000:.0f} ms (median of 5)")
    ours, theirs = canny_edges(image), cv2.Canny(arr, 100, 200) > 0
    print(f"agreement with OpenCV: {(ours == theirs).mean():.4f} of pixels")


if __name__ == "__main__":
    main()
