"""LoRA training: the file other tools read, resume that changes nothing, what the run folder holds."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from gouache.errors import InvalidArgument, OutputError
from gouache.train.lora import LoraTrainConfig, train_lora
from gouache.train.loop import read_losses

CAPTION = "outline style"


@pytest.fixture(scope="module")
def dataset(shapes_dataset):
    return shapes_dataset("lora-data", 8, style="outline")


def config(dataset, out, **kw):
    base = dict(dataset=dataset, out_dir=out, name="outline", steps=6, batch_size=2, lr=1e-3, warmup_steps=1, rank=4,
                checkpoint_every=2, save_dtype="fp32")
    return LoraTrainConfig(**{**base, **kw})


def quiet(_):
    pass


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora-run")
    cfg = config(dataset, out, validation_prompts=["a red circle on a blue background, outline style"],
                 validation_steps=2, save_format="both", targets="all")
    return cfg, train_lora(cfg, log=quiet)


def test_run_folder_has_lora_checkpoints_validation_grid_and_loss_curve(trained):
    cfg, path = trained
    out = cfg.out_dir
    assert path == out / "outline.safetensors" and (out / "outline.diffusers.safetensors").is_file()
    assert (out / "validation" / "step-000006.png").is_file()
    assert (out / "loss.png").is_file()
    rows = [json.loads(line) for line in (out / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000004", "step-0000006"]
    ckpt = out / "checkpoints" / "step-0000006"
    assert sum(f.stat().st_size for f in ckpt.iterdir()) < 10e6  # the LoRA and its optimizer, not the UNet


def test_file_is_in_kohya_layout_with_alpha_and_metadata(trained):
    cfg, path = trained
    state = load_file(path)
    downs = [k for k in state if k.endswith(".lora_down.weight")]
    assert downs and all(k.startswith("lora_unet_") for k in downs)
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight" in state
    assert "lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight" in state  # --targets all: LoCon convs
    for k in downs:
        name = k[: -len(".lora_down.weight")]
        assert state[f"{name}.alpha"].item() == 4.0 and state[f"{name}.lora_up.weight"].shape[1] == 4
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["ss_network_module"] == "networks.lora" and meta["ss_network_dim"] == "4"
    assert meta["ss_base_model_version"] == "sd_v1" and meta["ss_output_name"] == "outline"
    assert json.loads(meta["ss_tag_frequency"])["data"]["outline style"] == 8


def test_plain_diffusers_loads_the_file_and_fusing_is_the_manual_merge(trained, gouache_home):
    """W + multiplier · (up @ down) · alpha/rank, computed by hand, is what diffusers' fuse_lora gives."""
    from diffusers import StableDiffusionPipeline

    from gouache.models.builtin import materialize

    cfg, path = trained
    pipe = StableDiffusionPipeline.from_pretrained(materialize(gouache_home / "builtin"), safety_checker=None,
                                                   requires_safety_checker=False, local_files_only=True)
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    pipe.load_lora_weights(str(path), adapter_name="outline")
    pipe.fuse_lora(lora_scale=0.7)
    pipe.unload_lora_weights()
    after = pipe.unet.state_dict()
    state = load_file(path)
    checked = 0
    for key in [k for k in state if k.endswith(".lora_down.weight")]:
        name = key[len("lora_unet_") : -len(".lora_down.weight")]
        module = _module_name(pipe.unet, name)
        down, up = state[key].float(), state[key.replace("lora_down", "lora_up")].float()
        scale = state[key.replace("lora_down.weight", "alpha")].item() / down.shape[0]
        if down.ndim == 4:  # conv: up is 1x1, down carries the kernel
            delta = torch.einsum("or,rikl->oikl", up[:, :, 0, 0], down)
        else:
            delta = up @ down
        want = before[f"{module}.weight"] + 0.7 * scale * delta
        torch.testing.assert_close(after[f"{module}.weight"], want, atol=1e-5, rtol=1e-4)
        checked += 1
    assert checked == len([k for k in state if k.endswith(".lora_down.weight")]) > 50


def _module_name(unet, kohya: str) -> str:
    """The UNet module whose underscored path is ``kohya``."""
    for name, _ in unet.named_modules():
        if name.replace(".", "_") == kohya:
            return name
    raise KeyError(kohya)


def test_resume_after_a_kill_ends_at_the_same_weights(dataset, tmp_path):
    whole = train_lora(config(dataset, tmp_path / "whole"), log=quiet)

    def kill_after_step_3(line):
        if "step 3/6" in line:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        train_lora(config(dataset, tmp_path / "killed"), log=kill_after_step_3)
    assert not (tmp_path / "killed" / "outline.safetensors").exists()
    resumed = train_lora(config(dataset, tmp_path / "killed"), log=quiet)  # picks up step 2's checkpoint
    a, b = load_file(whole), load_file(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["step"] for r in read_losses(tmp_path / "killed" / "loss.jsonl")] == [1, 2, 3, 4, 5, 6]


def test_lora_changes_what_the_model_draws(trained, tiny_model):
    import numpy as np

    from gouache.models.home import models_dir
    from gouache.pipelines.model import load_model
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.txt2img import txt2img

    cfg, path = trained
    target = models_dir("lora") / "trained-outline.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(path.read_bytes())
    model = load_model()
    prompt = "a red circle on a blue background, outline style"
    base = np.asarray(txt2img(model, GenerationRequest(prompt, steps=4, seed=1))[0].image, dtype=int)
    lora = np.asarray(txt2img(model, GenerationRequest(prompt + " <lora:trained-outline:1>", steps=4, seed=1))[0].image, dtype=int)
    assert np.abs(lora - base).mean() > 0.5


@pytest.mark.parametrize(
    "kw,error,match",
    [
        (dict(rank=0), InvalidArgument, "rank"),
        (dict(targets="everything"), InvalidArgument, "targets"),
        (dict(name="../x"), InvalidArgument, "name"),
        (dict(optimizer="sgd"), InvalidArgument, "optimizer"),
    ],
)
def test_bad_settings_are_one_clear_error(dataset, tmp_path, kw, error, match):
    with pytest.raises(error, match=match):
        train_lora(config(dataset, tmp_path, **kw), log=quiet)


def test_existing_lora_is_not_overwritten(dataset, tmp_path):
    (tmp_path / "outline.safetensors").write_bytes(b"mine")
    with pytest.raises(OutputError, match="exists"):
        train_lora(config(dataset, tmp_path), log=quiet)
    assert (tmp_path / "outline.safetensors").read_bytes() == b"mine"


def test_cli_trains_and_reports_a_missing_dataset_in_one_line(run, dataset, tmp_path):
    code, out, err = run("train", "lora", dataset, "--out", tmp_path / "cli", "--steps", 2, "--batch-size", 1,
                         "--rank", 2, "--name", "tiny-test")
    assert code == 0 and "tiny-test.safetensors" in out
    code, out, err = run("train", "lora", tmp_path / "nowhere", "--out", tmp_path / "x")
    assert code == 1 and err.startswith("gouache: error:") and "metadata.jsonl" in err and "Traceback" not in err


def test_resume_without_a_checkpoint_is_an_error(dataset, tmp_path):
    with pytest.raises(InvalidArgument, match="nothing to resume"):
        train_lora(config(dataset, tmp_path, resume=True), log=quiet)


def test_a_corrupt_image_in_a_prepared_dataset_is_one_clear_error(run, dataset, tmp_path):
    import shutil

    broken = tmp_path / "data"
    shutil.copytree(dataset, broken)
    (broken / "00003.png").write_bytes(b"not a png")
    code, out, err = run("train", "lora", broken, "--out", tmp_path / "run", "--steps", 1)
    assert code == 1 and "00003.png cannot be read" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "lora.safetensors").exists()


def _kill_after_step_3(line):
    if "step 3/6" in line:
        raise KeyboardInterrupt("killed")


def test_resume_with_another_rank_is_one_line_before_anything_is_overwritten(run, dataset, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_lora(config(dataset, out), log=_kill_after_step_3)  # --rank 4, checkpoint at step 2
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, err = run("train", "lora", dataset, "--out", out, "--name", "outline", "--steps", 6, "--batch-size", 2,
                       "--rank", 8, "--checkpoint-every", 2)
    assert code == 1 and "Traceback" not in err
    assert err.endswith(f"gouache: error: {out} was trained with --rank 4 (this run has 8); resume it with --rank 4 "
                        "or use a new --out folder\n")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # lora_config.json included


def test_a_full_disk_at_the_final_save_is_one_line_and_loses_nothing(run, dataset, tmp_path, monkeypatch):
    import errno

    import gouache.metadata.png as png

    def full_disk_open(path, mode="r", *args, **kwargs):
        file = open(path, mode, *args, **kwargs)
        if "outline.safetensors" in str(path) and "w" in mode:
            class Full:  # the first bytes land, then the disk is full
                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    file.close()

                def write(self, data):
                    file.write(data[: len(data) // 2])
                    raise OSError(errno.ENOSPC, "No space left on device")

            return Full()
        return file

    out = tmp_path / "run"
    args = ("train", "lora", dataset, "--out", out, "--name", "outline", "--steps", 2, "--batch-size", 2, "--rank", 2)
    monkeypatch.setattr(png, "open", full_disk_open, raising=False)  # gouache's atomic writer, only
    code, _, err = run(*args)
    assert code == 1 and "Traceback" not in err
    line = err.splitlines()[-1]  # (the lines before: the libraries' own notices while loading)
    assert line.startswith(f"gouache: error: cannot write {out / 'outline.safetensors'}: No space left on device")
    assert "step-0000002" in line and "run the same command again" in line
    assert not (out / "outline.safetensors").exists() and not list(out.glob(".outline*"))  # nothing half-written
    monkeypatch.undo()  # space again: the same command saves the LoRA from the checkpoint
    code, out_text, err = run(*args)
    assert code == 0 and load_file(out / "outline.safetensors")


def test_validation_images_are_logged_only_when_written(run, dataset, tmp_path):
    argv = ["train", "lora", dataset, "--steps", 2, "--batch-size", 1, "--rank", 2]
    code, out, err = run(*argv, "--out", tmp_path / "plain")
    assert code == 0, err
    assert "validation images" not in out + err  # no --validation-prompt: nothing written, nothing said
    code, out, err = run(*argv, "--out", tmp_path / "shown", "--validation-prompt", "a red circle, outline style",
                         "--validation-steps", 2)
    assert code == 0, err
    line = next(line for line in out.splitlines() if "validation images" in line)
    assert line.startswith("[lora] validation images ") and line.endswith(".png")
    assert (tmp_path / "shown" / "validation").is_dir() and "None" not in line
