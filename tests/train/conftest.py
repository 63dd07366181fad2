"""Fixtures the trainer tests share."""

import pytest
import torch


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


class Regression:
    """A tiny objective for the loop's tests: fit y = 3x - 1 with batches derived from their index.
    ``fail_at``: the micro-batch index whose loss raises KeyboardInterrupt (a kill); ``nan_at``: whose
    loss is NaN."""

    name = "regression"

    def __init__(self, fail_at=None, nan_at=None):
        torch.manual_seed(0)
        self.model = torch.nn.Linear(1, 1)
        self.fail_at, self.nan_at = fail_at, nan_at

    def trainable(self):
        return self.model

    def loss(self, model, index):
        if index == self.fail_at:
            raise KeyboardInterrupt("killed")
        g = torch.Generator().manual_seed(index)
        x = torch.randn(16, 1, generator=g)
        loss = torch.nn.functional.mse_loss(model(x), 3 * x - 1)
        return loss * float("nan") if index == self.nan_at else loss

    def after_step(self, model):
        pass

    def save_extra(self, folder):
        (folder / "extra.json").write_text("{}")

    def load_extra(self, folder):
        assert (folder / "extra.json").is_file()

    def finish(self, model, out_dir):
        path = out_dir / "final.pt"
        torch.save(model.state_dict(), path)
        return path


@pytest.fixture
def regression():
    """The :class:`Regression` objective class."""
    return Regression


@pytest.fixture
def loop_config():
    """``loop_config(out_dir, **fields)``: 8 steps of :class:`Regression`, a checkpoint every step."""
    from gouache.train.loop import LoopConfig

    def make(out_dir, **kw):
        return LoopConfig(**{"out_dir": out_dir, "steps": 8, "lr": 0.3, "warmup_steps": 2, "checkpoint_minutes": 0,
                             "log_every": 100, **kw})

    return make
