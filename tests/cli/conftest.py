"""An input image for the image-to-image commands (the `run` fixture is in tests/conftest.py)."""

import numpy as np
import pytest
from PIL import Image



@pytest.fixture(scope="module")
def init_png(tmp_path_factory):
    """A 64×64 noise image: every pixel differs, so unchanged pixels are easy to check."""
    path = tmp_path_factory.mktemp("in") / "init.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    return path
