"""The training loop: checkpoints are complete or absent, a killed run resumes exactly, the loss log
is only ever appended to, and a diverging run stops with one clear error."""

import json
import os

import pytest
import torch

from gouache.errors import GouacheError, InvalidArgument
from gouache.train.loop import last_checkpoint, read_losses, train


def quiet(_):
    pass


def test_trains_and_keeps_last_checkpoints(tmp_path, regression, loop_config):
    objective = regression()
    before = objective.loss(objective.model, 999).item()
    path = train(objective, loop_config(tmp_path / "a"), log=quiet)
    objective.model.load_state_dict(torch.load(path, weights_only=True))
    assert objective.loss(objective.model, 999).item() < before / 2
    ckpts = sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir())
    assert ckpts == ["step-0000007", "step-0000008"]


def test_killed_run_resumes_to_the_same_weights(tmp_path, regression, loop_config):
    straight = torch.load(train(regression(), loop_config(tmp_path / "straight"), log=quiet), weights_only=True)
    with pytest.raises(KeyboardInterrupt):
        train(regression(fail_at=5), loop_config(tmp_path / "resumed"), log=quiet)
    assert last_checkpoint(tmp_path / "resumed" / "checkpoints").name == "step-0000005"
    # a half-written checkpoint from the moment of the kill is ignored
    (tmp_path / "resumed" / "checkpoints" / ".step-0000006.tmp").mkdir()
    logs = []
    resumed = torch.load(train(regression(), loop_config(tmp_path / "resumed"), log=logs.append), weights_only=True)
    assert any("resumed from" in line and "step 5" in line for line in logs)
    for k in straight:
        assert torch.equal(straight[k], resumed[k])
    state = json.loads((tmp_path / "resumed" / "checkpoints" / "step-0000008" / "state.json").read_text())
    assert state["step"] == 8 and state["files"]["trainable_0.safetensors"] > 0  # every file, with its size


@pytest.mark.parametrize("field,value", [("steps", 0), ("lr", -1.0), ("grad_accum", 0), ("mixed_precision", "fp8"),
                                         ("keep_checkpoints", 1)])
def test_bad_config(tmp_path, regression, loop_config, field, value):
    cfg = loop_config(tmp_path)
    setattr(cfg, field, value)
    with pytest.raises(InvalidArgument, match=field):
        train(regression(), cfg)


def test_loss_log_is_appended_never_rewritten(tmp_path, regression, loop_config):
    out = tmp_path / "run"
    cfg = loop_config(out, checkpoint_minutes=60, checkpoint_every=2)  # checkpoints at 2, 4, 6, 8
    with pytest.raises(KeyboardInterrupt):
        train(regression(fail_at=5), cfg, log=quiet)  # killed in step 6: rows 1-5 written, checkpoint 4
    log = out / "loss.jsonl"
    with open(log, "a") as f:
        f.write('{"step": 6, "lo')  # and a line cut short by the kill
    before, inode = log.read_bytes(), log.stat().st_ino
    train(regression(), loop_config(out, checkpoint_minutes=60, checkpoint_every=2), log=quiet)
    after = log.read_bytes()
    assert log.stat().st_ino == inode and after.startswith(before)  # the same file, only appended to
    assert b'{"resumed_from": 4}' in after[len(before):]
    rows = read_losses(log)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6, 7, 8]  # step 5, written twice, once
    fifth = [json.loads(line) for line in after[len(before):].decode().splitlines() if '"step": 5' in line]
    assert rows[4] == fifth[-1]  # the resumed run's row for a step it redid


@pytest.mark.parametrize("lines,steps", [
    (['{"step": 1, "loss": 1}', '{"step": 2, "loss": 2}'], [1, 2]),
    (['{"step": 1, "loss": 1}', '{"step": 2, "lo', '{"step": 2, "loss": 3}'], [1, 2]),  # a cut line is skipped
    (['{"step": 1, "loss": 1}', '{"step": 2, "loss": 2}', '{"step": 3, "loss": 3}', '{"resumed_from": 1}',
      '{"step": 2, "loss": 5}'], [1, 2]),  # rows after the checkpoint that the resumed run did not redo go
    (['{"step": 1, "loss": 1}', '{"resumed_from": 0}', '{"step": 1, "loss": 9}'], [1]),  # started again
])
def test_read_losses_gives_one_row_per_step(tmp_path, lines, steps):
    path = tmp_path / "loss.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rows = read_losses(path)
    assert [r["step"] for r in rows] == steps
    assert rows[-1] == json.loads(lines[-1])


def test_nan_loss_is_one_clear_error_and_keeps_the_last_checkpoint(tmp_path, regression, loop_config):
    out = tmp_path / "run"
    with pytest.raises(GouacheError) as caught:
        train(regression(nan_at=5), loop_config(out), log=quiet)
    message = str(caught.value)
    assert "loss became nan at step 6" in message and "step-0000005 is kept" in message and "--lr" in message
    assert "\n" not in message
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000004", "step-0000005"]
    assert not (out / "final.pt").exists()
    assert [r["step"] for r in read_losses(out / "loss.jsonl")] == [1, 2, 3, 4, 5]  # no NaN row


def test_a_full_disk_saving_the_result_keeps_the_checkpoint(tmp_path, regression, loop_config):
    import errno

    class FullDisk(regression):
        def finish(self, model, out_dir):
            with open(out_dir / "final.pt", "wb") as f:  # a write that fails half-way
                f.write(b"half")
            os.unlink(out_dir / "final.pt")  # as an atomic writer's temporary file goes
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = tmp_path / "run"
    with pytest.raises(GouacheError) as caught:
        train(FullDisk(), loop_config(out), log=quiet)
    message = str(caught.value)
    assert "No space left on device" in message and "step-0000008" in message and "run the same command" in message
    assert not (out / "final.pt").exists()
    logs = []
    path = train(regression(), loop_config(out), log=logs.append)  # space again: saved without training again
    assert path.is_file() and not any("checkpoint" in line and "resumed" not in line for line in logs)
