"""The shipped gouache-tiny-clip, -captioner and -clipseg: transformers folders that load offline and see the shapes."""

from pathlib import Path

import pytest
import torch

import gouache.models

WEIGHTS = Path(gouache.models.__file__).parent / "weights"
CLIP = WEIGHTS / "clip" / "gouache-tiny-clip"
CAPTIONER = WEIGHTS / "captioner" / "gouache-tiny-captioner"


def _shipped(folder: Path):
    if not (folder / "model.safetensors").is_file():
        pytest.skip(f"{folder.name} is not shipped yet")
    assert (folder / "model.safetensors").stat().st_size < 11 * 2**20  # float16, about 10 MB at most
    return folder


def test_the_clip_ranks_its_own_captions_first():
    from transformers import CLIPModel, CLIPProcessor

    from gouache.tiny.pairs import evaluation_items
    from gouache.tiny.vision_eval import clip_rank1

    folder = _shipped(CLIP)
    model = CLIPModel.from_pretrained(folder, dtype=torch.float32)
    processor = CLIPProcessor.from_pretrained(folder)
    assert clip_rank1(model, processor, evaluation_items(False, 16, seed=7)).rate >= 0.9


def test_the_captioner_writes_the_captions():
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from gouache.tiny.pairs import evaluation_items
    from gouache.tiny.vision_eval import caption_exact

    folder = _shipped(CAPTIONER)
    model = BlipForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
    processor = BlipProcessor.from_pretrained(folder)
    assert caption_exact(model, processor, evaluation_items(False, 16, seed=7)).rate >= 0.9


CLIPSEG = WEIGHTS / "clipseg" / "gouache-tiny-clipseg"


@pytest.mark.parametrize("held_out", [False, True])
def test_the_clipseg_masks_what_the_words_name(held_out):
    """Mean IoU of 16 images per kind (both styles, the mask's edge refined as `gouache mask` does by
    default); the full figures are scripts/quality/mask_bars.py's."""
    import numpy as np
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    from gouache.tiny.masks import evaluation_items, iou
    from gouache.train.clipseg import predict
    from gouache.vision.segment import MaskOptions, refine

    folder = _shipped(CLIPSEG)
    model = CLIPSegForImageSegmentation.from_pretrained(folder, dtype=torch.float32)
    processor = CLIPSegProcessor.from_pretrained(folder)
    radius = MaskOptions().refine
    for kind in ("shape", "background"):
        items = evaluation_items(held_out, kind, 16, seed=7)
        probs = predict(model, processor, [it.image for it in items], [it.query for it in items])
        if radius:
            probs = [refine(it.image, p, radius) for p, it in zip(probs, items)]
        assert np.mean([iou(p, it.target) for p, it in zip(probs, items)]) >= 0.8, kind
    nothing = evaluation_items(held_out, "none", 16, seed=7)
    probs = predict(model, processor, [it.image for it in nothing], [it.query for it in nothing])
    assert np.mean([(p <= 0.5).all() for p in probs]) >= 0.75
