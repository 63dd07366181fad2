"""Fixtures the trainer tests share."""

import pytest


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory):
    """``make(name, count, **shape_options)``: gouache-tiny shapes drawn with
    :func:`gouache.tiny.shapes.write_folder` and prepared at 64x64, as ``gouache dataset`` does."""
    from gouache.data.prepare import PrepareConfig, prepare
    from gouache.tiny.shapes import write_folder

    def make(name: str, count: int, **options):
        root = tmp_path_factory.mktemp(name)
        write_folder(root / "raw", count, **options)
        prepare(PrepareConfig(src=root / "raw", dst=root / "data", resolution=64), report=lambda s: None)
        return root / "data"

    return make
