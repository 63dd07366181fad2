"""The training loop: checkpoints are complete or absent, and a killed run resumes exactly."""

import json

import pytest
import torch

from gouache.errors import InvalidArgument
from gouache.train.loop import LoopConfig, last_checkpoint, train


class Regression:
    """A tiny objective: fit y = 3x - 1 with batches derived from their index."""

    name = "regression"

    def __init__(self, fail_at=None):
        torch.manual_seed(0)
        self.model = torch.nn.Linear(1, 1)
        self.fail_at = fail_at

    def trainable(self):
        return self.model

    def loss(self, model, index):
        if index == self.fail_at:
            raise KeyboardInterrupt("killed")
        g = torch.Generator().manual_seed(index)
        x = torch.randn(16, 1, generator=g)
        return torch.nn.functional.mse_loss(model(x), 3 * x - 1)

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


def config(tmp_path, **kw):
    return LoopConfig(out_dir=tmp_path, steps=8, lr=0.3, warmup_steps=2, checkpoint_minutes=0, log_every=100, **kw)


def test_trains_and_keeps_last_checkpoints(tmp_path):
    objective = Regression()
    before = objective.loss(objective.model, 999).item()
    path = train(objective, config(tmp_path / "a"), log=lambda s: None)
    objective.model.load_state_dict(torch.load(path, weights_only=True))
    assert objective.loss(objective.model, 999).item() < before / 2
    ckpts = sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir())
    assert ckpts == ["step-0000007", "step-0000008"]


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    straight = torch.load(train(Regression(), config(tmp_path / "straight"), log=lambda s: None), weights_only=True)
    with pytest.raises(KeyboardInterrupt):
        train(Regression(fail_at=5), config(tmp_path / "resumed"), log=lambda s: None)
    assert last_checkpoint(tmp_path / "resumed" / "checkpoints").name == "step-0000005"
    # a half-written checkpoint from the moment of the kill is ignored
    (tmp_path / "resumed" / "checkpoints" / ".step-0000006.tmp").mkdir()
    logs = []
    resumed = torch.load(train(Regression(), config(tmp_path / "resumed"), log=logs.append), weights_only=True)
    assert any("resumed from" in line and "step 5" in line for line in logs)
    for k in straight:
        assert torch.equal(straight[k], resumed[k])
    assert json.loads((tmp_path / "resumed" / "checkpoints" / "step-0000008" / "state.json").read_text()) == {"step": 8}


@pytest.mark.parametrize("field,value", [("steps", 0), ("lr", -1.0), ("grad_accum", 0), ("mixed_precision", "fp8")])
def test_bad_config(tmp_path, field, value):
    cfg = config(tmp_path)
    setattr(cfg, field, value)
    with pytest.raises(InvalidArgument, match=field):
        train(Regression(), cfg)
