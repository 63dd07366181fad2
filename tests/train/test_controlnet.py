"""ControlNet training: the folder it writes, resume, validation grids, the data it reads."""

import json
import shutil

import pytest
import torch
from PIL import Image

from gouache.errors import InvalidArgument, OutputError
from gouache.train.controlnet import ControlNetTrainConfig, ControlPairs, train_controlnet


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Six shapes with their Canny edges as the conditioning_image column (diffusers' convention)."""
    from gouache.control.preprocessors import canny
    from gouache.tiny.shapes import ShapesDataset

    root = tmp_path_factory.mktemp("controlnet-data")
    rows = []
    for i in range(6):
        item = ShapesDataset(seed=3)[i]
        item.image.save(root / f"{i}.png")
        canny(item.image).save(root / f"{i}-edges.png")
        rows.append({"file_name": f"{i}.png", "text": item.caption, "conditioning_image": f"{i}-edges.png"})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def config(dataset, out, **kw):
    base = dict(dataset=str(dataset), out_dir=out, name="edges", steps=4, batch_size=2, lr=1e-3, warmup_steps=1,
                embedding_channels=(8, 16, 32, 64), checkpoint_every=2, save_dtype="fp32", validation_count=0)
    return ControlNetTrainConfig(**{**base, **kw})


def quiet(_):
    pass


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("controlnet-run")
    return train_controlnet(config(dataset, out, validation_count=1, validation_steps=2), log=quiet), out


def test_run_writes_a_diffusers_folder_checkpoints_and_a_validation_grid(trained, tiny_model):
    from gouache.control.models import load_controlnet

    folder, out = trained
    assert folder == out / "edges"
    assert {p.name for p in folder.iterdir()} == {"config.json", "diffusion_pytorch_model.safetensors"}
    assert (out / "checkpoints" / "step-0000004").is_dir() and (out / "loss.png").is_file()
    assert Image.open(out / "validation" / "step-000004.png").size == (128, 64)  # control | generated
    net = load_controlnet(folder, tiny_model)
    assert tuple(net.net.config.conditioning_embedding_out_channels) == (8, 16, 32, 64)
    # trained: the zero convolutions have left zero, so the net now changes the UNet's input
    assert net.net.controlnet_mid_block.weight.abs().sum() > 0


def test_resume_after_a_kill_ends_at_the_same_weights(dataset, tmp_path):
    from safetensors.torch import load_file

    whole = train_controlnet(config(dataset, tmp_path / "whole"), log=quiet)

    def kill_after_step_3(line):
        if "step 3/4" in line:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        train_controlnet(config(dataset, tmp_path / "killed"), log=kill_after_step_3)
    assert not (tmp_path / "killed" / "edges").exists()
    lines = []
    resumed = train_controlnet(config(dataset, tmp_path / "killed"), log=lines.append)
    assert any("resumed from" in line for line in lines)
    a = load_file(whole / "diffusion_pytorch_model.safetensors")
    b = load_file(resumed / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_control_images_made_on_the_fly_by_a_preprocessor(tmp_path):
    from gouache.tiny.shapes import ShapesDataset

    pairs = ControlPairs("shapes", 64, "canny", seed=3)
    image, control, caption = pairs.item(0)
    assert image == ShapesDataset(seed=3)[0].image and caption == ShapesDataset(seed=3)[0].caption
    pixels, controls, captions = pairs.batch(5, 3)
    assert pixels.shape == controls.shape == (3, 3, 64, 64) and len(captions) == 3
    assert set(controls.unique().tolist()) <= {0.0, 1.0}  # Canny's white-on-black
    assert torch.equal(pairs.batch(5, 3)[1], controls)  # batch i is the same on every run


@pytest.mark.parametrize("kw, error, match", [
    ({"dataset": "shapes"}, InvalidArgument, "has no control images; give --preprocessor"),
    ({"preprocessor": "cany"}, Exception, "unknown preprocessor 'cany'"),
    ({"name": "a/b"}, InvalidArgument, "plain folder name"),
])
def test_bad_settings_are_one_clear_error(dataset, tmp_path, kw, error, match):
    kw = {"dataset": dataset, **kw}
    with pytest.raises(error, match=match):
        train_controlnet(config(kw.pop("dataset"), tmp_path, **kw), log=quiet)


def test_a_folder_without_the_column_needs_a_preprocessor(dataset, tmp_path):
    folder = tmp_path / "plain"
    shutil.copytree(dataset, folder)
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    (folder / "metadata.jsonl").write_text("".join(json.dumps({"file_name": r["file_name"], "text": r["text"]}) + "\n"
                                                   for r in rows))
    with pytest.raises(InvalidArgument, match="has no `conditioning_image`"):
        ControlPairs(folder, 64)
    assert ControlPairs(folder, 64, "canny").item(0)[1].size == (64, 64)


def test_existing_output_is_not_overwritten(trained, dataset):
    folder, out = trained
    with pytest.raises(OutputError, match="exists"):
        train_controlnet(config(dataset, out), log=quiet)


def test_cli_trains_on_shapes_with_a_preprocessor(run, tmp_path):
    code, out, err = run("train", "controlnet", "shapes", "--preprocessor", "canny", "--out", tmp_path, "--steps", "2",
                         "--batch-size", "2", "--embedding-channels", "8,16,32,64", "--validation-count", "0")
    assert code == 0, err
    assert "ControlNet: " in out and (tmp_path / "controlnet" / "config.json").is_file()
    code, out, err = run("train", "controlnet", tmp_path / "nothing", "--out", tmp_path / "x")
    assert code == 1 and "no metadata.jsonl" in err


def test_a_run_continues_from_its_checkpoint_when_given_more_steps(dataset, tmp_path):
    from gouache.train.loop import read_losses

    out = tmp_path / "run"
    with pytest.raises(InvalidArgument, match="nothing to resume"):
        train_controlnet(config(dataset, out, resume=True), log=quiet)  # no checkpoint yet
    train_controlnet(config(dataset, out, steps=2), log=quiet)  # stops at step 2, with its checkpoint
    lines = []
    folder = train_controlnet(config(dataset, out, steps=4, resume=True, overwrite=True), log=lines.append)
    assert any("resumed from" in line and "step 2" in line for line in lines)
    assert not any("step 1/4" in line or "step 2/4" in line for line in lines)  # steps 1-2 are not trained again
    assert [row["step"] for row in read_losses(out / "loss.jsonl")] == [1, 2, 3, 4]
    assert (folder / "config.json").is_file() and (out / "checkpoints" / "step-0000004").is_dir()
    saved = json.loads((out / "controlnet_config.json").read_text())
    assert saved["resume"] is True and saved["steps"] == 4


def test_cli_resume_without_a_checkpoint_is_one_line(run, dataset, tmp_path):
    code, _, err = run("train", "controlnet", dataset, "--out", tmp_path / "run", "--resume", "--steps", 2,
                       "--embedding-channels", "8,16,32,64")
    assert code == 1 and err.startswith("gouache: error: nothing to resume:") and len(err.splitlines()) == 1
