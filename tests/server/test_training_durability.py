"""The web UI's LoRA runner loses nothing: the copy into the models folder is atomic and never
replaces a LoRA that is there, and the losses it shows are read as the trainer writes them."""

import errno
import shutil
from pathlib import Path

import pytest

from gouache.errors import InvalidArgument
from gouache.server.training import TrainingRunner
from gouache.train.lora import LoraTrainConfig


def fake_training(during=None):
    """A stand-in for train_lora: writes the run's LoRA (``during()`` is called while it "trains")."""

    def train(cfg, log):
        folder = Path(cfg.out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        if during is not None:
            during()
        path = folder / f"{cfg.name}.safetensors"
        path.write_bytes(b"the new lora " * 1000)
        return path

    return train


def start(tmp_path, train, **kw):
    runner = TrainingRunner(lora_dir=tmp_path / "lora", train=train)
    (tmp_path / "data").mkdir(exist_ok=True)
    runner.start(LoraTrainConfig(dataset=tmp_path / "data", out_dir=tmp_path / "run", name="outline", **kw))
    runner.join(10)
    assert not runner.running
    return runner.status()


def test_finished_lora_is_copied_into_the_models_folder(tmp_path):
    status = start(tmp_path, fake_training())
    assert status.result == tmp_path / "lora" / "outline.safetensors"
    assert status.result.read_bytes() == b"the new lora " * 1000
    assert [p.name for p in (tmp_path / "lora").iterdir()] == ["outline.safetensors"]  # no temporary file left


def test_a_lora_that_appeared_while_training_is_never_overwritten(tmp_path):
    theirs = tmp_path / "lora" / "outline.safetensors"

    def someone_saves_a_lora_of_that_name():
        theirs.parent.mkdir(parents=True, exist_ok=True)
        theirs.write_bytes(b"theirs")

    status = start(tmp_path, fake_training(someone_saves_a_lora_of_that_name))
    assert theirs.read_bytes() == b"theirs"
    assert status.result == tmp_path / "run" / "outline.safetensors" and status.result.is_file()
    assert "appeared" in status.message and str(status.result) in status.message
    assert [p.name for p in theirs.parent.iterdir()] == ["outline.safetensors"]


def test_an_interrupted_copy_leaves_nothing_under_the_final_name(tmp_path, monkeypatch):
    def copy_until_the_disk_is_full(source, target, length=0):
        target.write(source.read(100))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", copy_until_the_disk_is_full)
    status = start(tmp_path, fake_training())
    assert list((tmp_path / "lora").iterdir()) == []  # neither a partial file nor its temporary file
    assert "No space left on device" in status.message
    assert str(tmp_path / "run" / "outline.safetensors") in status.message  # where the trained LoRA is
    assert status.result == tmp_path / "run" / "outline.safetensors"


def test_a_lora_in_the_models_folder_is_refused_up_front_even_with_overwrite(tmp_path):
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "outline.safetensors").write_bytes(b"mine")
    (tmp_path / "data").mkdir()
    runner = TrainingRunner(lora_dir=tmp_path / "lora", train=fake_training())
    with pytest.raises(InvalidArgument, match="a LoRA named 'outline' exists"):
        runner.start(LoraTrainConfig(dataset=tmp_path / "data", out_dir=tmp_path / "run", name="outline",
                                     overwrite=True))
    assert (tmp_path / "lora" / "outline.safetensors").read_bytes() == b"mine"


def test_the_ui_shows_a_resumed_runs_losses_one_row_per_step(tmp_path):
    lines = ['{"step": 1, "loss": 0.5, "lr": 0.1}', '{"step": 2, "loss": 0.4, "lr": 0.1}',
             '{"step": 3, "loss": 0.3, "lr": 0.1}', '{"step": 4, "lo',  # killed; resumed from step 2's checkpoint:
             '{"resumed_from": 2}', '{"step": 3, "loss": 0.25, "lr": 0.1}']

    def train(cfg, log):
        Path(cfg.out_dir).mkdir(parents=True)
        (Path(cfg.out_dir) / "loss.jsonl").write_text("\n".join(lines) + "\n")
        return fake_training()(cfg, log)

    status = start(tmp_path, train, steps=4)
    assert [(r["step"], r["loss"]) for r in status.losses] == [(1, 0.5), (2, 0.4), (3, 0.25)]
    assert status.step == 3
