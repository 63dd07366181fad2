"""Running `gouache` in-process as a user would, and an input image for the image-to-image commands."""

import numpy as np
import pytest
from PIL import Image

from gouache.cli import main


@pytest.fixture
def run(capsys):
    """``run(*argv) -> (exit code, stdout, stderr)`` of ``gouache *argv``."""

    def call(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return call


@pytest.fixture(scope="module")
def init_png(tmp_path_factory):
    """A 64×64 noise image: every pixel differs, so unchanged pixels are easy to check."""
    path = tmp_path_factory.mktemp("in") / "init.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    return path
