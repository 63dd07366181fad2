"""Read a prepared dataset: an *imagefolder* (Hugging Face's convention) with ``metadata.jsonl``.

``gouache dataset prepare`` writes it; the trainers read it here, and ``datasets.load_dataset(
"imagefolder", data_dir=...)`` reads the same folder. Each line of ``metadata.jsonl`` is
``{"file_name": "0001.png", "text": "a red circle on a blue background"}``.

Training batches are derived from their index (see :mod:`gouache.train.loop`), so a resumed run sees
the same images, crops and flips it would have seen without the interruption.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gouache.errors import InvalidArgument

CROPS = ("center", "random")


def read_imagefolder(path: str | Path) -> list[tuple[Path, str]]:
    """``[(image path, caption), ...]`` of a prepared dataset, in file order."""
    folder = Path(path)
    meta = folder / "metadata.jsonl"
    if not meta.is_file():
        hint = "" if not folder.is_dir() else "; make one with `gouache dataset prepare SRC DST`"
        raise InvalidArgument(f"dataset {folder} has no metadata.jsonl{hint}")
    items = []
    for n, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            file, text = row["file_name"], row.get("text", row.get("caption", ""))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InvalidArgument(f"{meta}:{n}: expected a JSON object with `file_name` and `text`") from None
        image = (folder / file).resolve()
        if folder.resolve() not in image.parents:
            raise InvalidArgument(f"{meta}:{n}: {file!r} is outside the dataset folder")
        if not image.is_file():
            raise InvalidArgument(f"{meta}:{n}: image {file!r} is missing")
        items.append((image, str(text)))
    if not items:
        raise InvalidArgument(f"dataset {folder} is empty")
    return items


@dataclass
class ImageFolderDataset:
    """Images and captions of a prepared dataset as training tensors in [-1, 1].

    Images of one size form a bucket; a batch is drawn from one bucket (aspect-ratio buckets as
    kohya's trainers use them). ``crop="random"`` takes a random ``resolution`` crop from images
    larger than it; ``flip`` mirrors half of the images.
    """

    path: Path
    resolution: int = 512
    crop: str = "center"
    flip: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise InvalidArgument(f"`crop` must be one of {', '.join(CROPS)}, got {self.crop!r}")
        self.items = read_imagefolder(self.path)
        self._images = [_load(p) for p, _ in self.items]  # prepared datasets are small; kept in memory
        self.buckets: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(self._images):
            self.buckets.setdefault(self._target_size(im), []).append(i)

    def __len__(self) -> int:
        return len(self.items)

    def _target_size(self, image: Image.Image) -> tuple[int, int]:
        w, h = image.size
        if (w, h) == (self.resolution, self.resolution) or w == h:
            return (self.resolution, self.resolution)
        return (w // 8 * 8, h // 8 * 8)  # a bucket prepared by `gouache dataset prepare --mode bucket`

    def pick(self, index: int, batch_size: int) -> list[tuple[int, bool, int, int]]:
        """The items of batch ``index``: (item, flipped, crop x, crop y), the same on every run."""
        rng = random.Random(self.seed * 1_000_003 + index)
        sizes = sorted(self.buckets)
        size = rng.choices(sizes, weights=[len(self.buckets[s]) for s in sizes])[0]
        chosen = [rng.choice(self.buckets[size]) for _ in range(batch_size)]
        out = []
        for i in chosen:
            w, h = self._images[i].size
            tw, th = size
            x = rng.randint(0, max(w - tw, 0)) if self.crop == "random" else max(w - tw, 0) // 2
            y = rng.randint(0, max(h - th, 0)) if self.crop == "random" else max(h - th, 0) // 2
            out.append((i, self.flip and rng.random() < 0.5, x, y))
        return out

    def batch(self, index: int, batch_size: int) -> tuple[torch.Tensor, list[str]]:
        """Batch ``index`` as (N, 3, H, W) floats in [-1, 1] and its captions."""
        pixels, captions = [], []
        for i, flipped, x, y in self.pick(index, batch_size):
            pixels.append(self.pixels(i, flipped, x, y))
            captions.append(self.items[i][1])
        return torch.stack(pixels), captions

    def pixels(self, i: int, flipped: bool = False, x: int | None = None, y: int | None = None) -> torch.Tensor:
        image = self._images[i]
        tw, th = self._target_size(image)
        if image.size != (tw, th):
            if min(image.size) < min(tw, th) or (x is None and y is None):
                scale = max(tw / image.width, th / image.height)
                image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
            x = (image.width - tw) // 2 if x is None or x + tw > image.width else x
            y = (image.height - th) // 2 if y is None or y + th > image.height else y
            image = image.crop((x, y, x + tw, y + th))
        if flipped:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        arr = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0
        return torch.from_numpy(arr)


def _load(path: Path) -> Image.Image:
    from PIL import UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise InvalidArgument(f"dataset image {path} cannot be read ({type(e).__name__}); "
                              "prepare the folder again with `gouache dataset prepare`, which skips such files") from None
