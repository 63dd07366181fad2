"""Checkpoints: a damaged newest one is skipped for the one before it, a full disk loses nothing, and
a resume with other settings is refused before anything is written."""

import errno
import json
import os

import pytest
import torch

from gouache.errors import GouacheError, InvalidArgument, ModelLoadError
from gouache.train.checkpoints import Unreadable, read_state
from gouache.train.loop import train


def quiet(_):
    pass


def _truncate(folder):
    path = folder / "optimizer.bin"
    path.write_bytes(path.read_bytes()[:100])


def _garble_safetensors(folder):
    path = folder / "trainable_0.safetensors"
    path.write_bytes(b"\0" * path.stat().st_size)  # the size it should have, none of the content


def _wrong_optimizer_unlisted(folder):
    """As a checkpoint written before state.json listed its files, holding a well-formed optimizer
    file of something else: only loading it finds the damage."""
    state = json.loads((folder / "state.json").read_text())
    (folder / "state.json").write_text(json.dumps({"step": state["step"]}))
    torch.save({"not": "an optimizer"}, folder / "optimizer.bin")


DAMAGE = {
    "garbled state.json": lambda folder: (folder / "state.json").write_text('{"step": 5, "fi'),
    "missing state.json": lambda folder: (folder / "state.json").unlink(),
    "truncated optimizer": _truncate,
    "corrupt safetensors": _garble_safetensors,
    "wrong optimizer, not listed": _wrong_optimizer_unlisted,
}


@pytest.fixture
def killed_run(tmp_path, regression, loop_config):
    """A run killed in step 6: checkpoints step-4 and step-5."""
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(regression(fail_at=5), loop_config(out), log=quiet)
    return out


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(killed_run, tmp_path, regression, loop_config,
                                                                 damage):
    straight = torch.load(train(regression(), loop_config(tmp_path / "straight"), log=quiet), weights_only=True)
    newest = killed_run / "checkpoints" / "step-0000005"
    DAMAGE[damage](newest)
    if damage != "wrong optimizer, not listed":
        with pytest.raises(Unreadable):
            read_state(newest)
    logs = []
    resumed = torch.load(train(regression(), loop_config(killed_run), log=logs.append), weights_only=True)
    assert any(f"skipping checkpoint {newest}: it cannot be read" in line for line in logs)
    assert any("resumed from" in line and "step-0000004" in line for line in logs)
    for k in straight:  # the run redid step 5 from step 4's checkpoint and ended where it would have
        assert torch.equal(straight[k], resumed[k])


def test_no_readable_checkpoint_is_one_clear_error(killed_run, regression, loop_config):
    for name in ("step-0000004", "step-0000005"):
        (killed_run / "checkpoints" / name / "state.json").write_text("garbage")
    with pytest.raises(ModelLoadError, match=r"no checkpoint in .* can be read: step-0000005 .*step-0000004"):
        train(regression(), loop_config(killed_run), log=quiet)
    assert sorted(p.name for p in (killed_run / "checkpoints").iterdir()) == ["step-0000004", "step-0000005"]


def test_a_file_torch_save_cut_short_without_an_error_is_caught_before_publishing(tmp_path, regression, loop_config,
                                                                                monkeypatch):
    """torch.save has been seen to return without an error on a full device, its file cut short."""
    real_save = torch.save

    def full_after_step_5(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        if ".step-0000006.tmp" in str(f):
            with open(f, "r+b") as file:
                file.truncate(100)

    monkeypatch.setattr(torch, "save", full_after_step_5)
    out = tmp_path / "run"
    with pytest.raises(GouacheError, match=r"cannot write checkpoint .*step-0000006: \w+\.(bin|pkl) is incomplete"):
        train(regression(), loop_config(out), log=quiet)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000004", "step-0000005"]


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, regression, loop_config):
    class FullDisk(regression):
        """Its checkpoint's extra file cannot be written after step 5: the disk is full."""

        def save_extra(self, folder):
            if folder.name.startswith(".step-0000006"):
                with open(folder / "extra.json", "w") as f:
                    f.write("{")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            super().save_extra(folder)

    out = tmp_path / "run"
    with pytest.raises(GouacheError) as caught:
        train(FullDisk(), loop_config(out), log=quiet)
    message = str(caught.value)
    failed = out / "checkpoints" / "step-0000006"
    assert message.startswith(f"cannot write checkpoint {failed}: No space left on device")
    assert "step-0000005 is kept" in message and "run the same command again" in message
    ckpts = out / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-0000004", "step-0000005"]  # no temporary folder left
    assert read_state(ckpts / "step-0000005")["step"] == 5
    logs = []
    train(regression(), loop_config(out), log=logs.append)  # space again: it resumes
    assert any("resumed from" in line and "step 5" in line for line in logs)


def test_a_resume_with_other_settings_is_refused_before_anything_is_written(tmp_path, regression, loop_config):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):  # a run started with --base gouache-tiny, killed after step 5 ...
        train(regression(fail_at=5), loop_config(out, settings={"--base": "gouache-tiny"}), log=quiet)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(InvalidArgument) as caught:  # ... and resumed with another base model
        train(regression(), loop_config(out, settings={"--base": "another-model"}), log=quiet)
    assert str(caught.value) == (f"{out} was trained with --base gouache-tiny (this run has another-model); resume it "
                                 "with --base gouache-tiny or use a new --out folder")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing written, nothing lost
