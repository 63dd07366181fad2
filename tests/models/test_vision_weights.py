"""The shipped gouache-tiny-clip and gouache-tiny-captioner: transformers folders that load offline and see the shapes."""

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
