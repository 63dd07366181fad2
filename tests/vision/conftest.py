"""Fixtures of the vision tests: a tiny random-weight CLIP model in a folder (quality is not
checked, only shapes, normalisation, ranking and the doors' behaviour)."""

from pathlib import Path

import pytest


def write_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A ``CLIPModel`` of hidden size 32, one layer per tower, 32 px images in 8 px patches, with
    gouache's CLIP tokenizer files and no ``preprocessor_config.json`` (the loader derives it)."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from gouache.models.clip_tokenizer import write_tokenizer_files

    torch.manual_seed(seed)
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(text_config=dict(vocab_size=49408, max_position_embeddings=77, **tower),
                        vision_config=dict(image_size=32, patch_size=8, **tower), projection_dim=16)
    CLIPModel(config).save_pretrained(folder)
    write_tokenizer_files(folder)
    return Path(folder)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """The folder of a tiny random CLIP (written once per session)."""
    return write_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "tiny-clip")


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_dir):
    """The tiny CLIP, loaded once per session."""
    from gouache.vision.clip import load_clip

    return load_clip(tiny_clip_dir)


@pytest.fixture
def shapes_images():
    """Four 48×48 images of distinct flat colours and shapes."""
    from PIL import Image, ImageDraw

    images = []
    for fill, box in (("red", (8, 8, 40, 40)), ("blue", (0, 0, 24, 48)), ("green", (20, 4, 44, 30)), ("yellow", (4, 24, 44, 44))):
        im = Image.new("RGB", (48, 48), "white")
        ImageDraw.Draw(im).ellipse(box, fill=fill)
        images.append(im)
    return images
