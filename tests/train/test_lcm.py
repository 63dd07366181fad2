"""LCM-LoRA distillation: the file gouache loads, the boundary condition, the teacher without the LoRA, resume."""

import copy
import json
import math

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from gouache.errors import InvalidArgument
from gouache.sampling.prediction import predicted_noise, predicted_x0
from gouache.train.lcm import (
    LcmLoraObjective,
    LcmLoraTrainConfig,
    adapters_disabled,
    boundary_scalings,
    train_lcm_lora,
)

PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module")
def dataset(shapes_dataset):
    return shapes_dataset("lcm-data", 6, style="filled")


def config(dataset, out, **kw):
    base = dict(dataset=dataset, out_dir=out, name="tiny-lcm", steps=4, batch_size=2, lr=1e-3, warmup_steps=1, rank=4,
                checkpoint_every=2, save_dtype="fp32", validation_prompts=[PROMPT], validation_steps=2)
    return LcmLoraTrainConfig(**{**base, **kw})


def quiet(_):
    pass


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    cfg = config(dataset, tmp_path_factory.mktemp("lcm-run"))
    return cfg, train_lcm_lora(cfg, log=quiet)


def test_run_writes_a_kohya_lora_saying_it_is_an_lcm_lora_with_finite_losses(trained):
    cfg, path = trained
    out = cfg.out_dir
    assert path == out / "tiny-lcm.safetensors"
    assert (out / "validation" / "step-000004.png").is_file()
    rows = [json.loads(line) for line in (out / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in rows)
    state = load_file(path)
    assert "lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight" in state  # --targets all by default
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert "LCM-LoRA" in meta["ss_training_comment"] and meta["ss_network_dim"] == "4"
    assert json.loads(meta["gouache_lcm"])["num_ddim_timesteps"] == 50


def test_gouache_loads_the_file_and_samples_with_lcm_at_cfg_1(trained, tiny_model):
    import numpy as np

    from gouache.models.home import models_dir
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.txt2img import txt2img

    _, path = trained
    target = models_dir("lora") / "trained-lcm.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(path.read_bytes())
    req = dict(steps=2, seed=3, sampler="LCM", cfg_scale=1.0)
    base = np.asarray(txt2img(tiny_model, GenerationRequest(PROMPT, **req))[0].image, dtype=int)
    lcm = np.asarray(txt2img(tiny_model, GenerationRequest(PROMPT + " <lora:trained-lcm:1>", **req))[0].image, dtype=int)
    assert np.abs(lcm - base).mean() > 0.1


def test_boundary_condition_is_the_identity_at_timestep_0():
    from diffusers import LCMScheduler

    c_skip, c_out = boundary_scalings(torch.tensor([0]))
    assert c_skip.item() == pytest.approx(1.0) and c_out.item() == pytest.approx(0.0)
    c_skip, c_out = boundary_scalings(torch.tensor([999]))
    assert c_skip.item() < 1e-5 and c_out.item() == pytest.approx(1.0, abs=1e-5)
    sched = LCMScheduler()  # the sampler applies the same scalings
    for t in (0, 19, 500, 999):
        want = sched.get_scalings_for_boundary_condition_discrete(t)
        got = boundary_scalings(torch.tensor([t]))
        assert [g.item() for g in got] == pytest.approx([float(w) for w in want], rel=1e-5)


def test_teacher_is_the_base_unet_with_the_lora_off(dataset, tmp_path):
    from gouache.data.folder import ImageFolderDataset
    from gouache.pipelines.model import load_model
    from gouache.speed import SpeedSettings

    model = load_model(speed=SpeedSettings.reference())
    base = copy.deepcopy(model.pipeline.unet)
    cfg = config(dataset, tmp_path)
    objective = LcmLoraObjective(cfg, model, ImageFolderDataset(dataset, 64))
    unet = objective.unet
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)  # a LoRA that changes the output (B starts at zero)
    x = torch.randn(2, 4, 8, 8)
    t = objective.solver.timesteps[torch.tensor([10, 40])]
    hidden = torch.randn(2, 77, unet.config.cross_attention_dim)
    with torch.no_grad():
        want = base(x, t, hidden).sample
        assert not torch.allclose(unet(x, t, hidden).sample, want, atol=1e-4)  # LoRA on: not the base
        with adapters_disabled(unet):
            torch.testing.assert_close(unet(x, t, hidden).sample, want)
        # the teacher's guided DDIM step, by hand from the base UNet
        g = torch.tensor([5.0, 3.0])
        uncond = objective.uncond.expand(2, -1, -1)
        ac = objective.alphas_cumprod
        a = ac[t].view(-1, 1, 1, 1)
        cond, unc = base(x, t, hidden).sample, base(x, t, uncond).sample
        x0c, ec = predicted_x0(cond, x, a, "epsilon"), predicted_noise(cond, x, a, "epsilon")
        x0u, eu = predicted_x0(unc, x, a, "epsilon"), predicted_noise(unc, x, a, "epsilon")
        gv = g.view(-1, 1, 1, 1)
        x0, eps = x0u + gv * (x0c - x0u), eu + gv * (ec - eu)
        a_prev = ac[t - 20].view(-1, 1, 1, 1)
        manual = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        got = objective.teacher_step(x, t, torch.tensor([10, 40]), hidden, g)
    torch.testing.assert_close(got, manual, atol=1e-5, rtol=1e-4)
    lora = [p for n, p in unet.named_parameters() if "lora_" in n]
    assert lora and all(p.requires_grad for p in lora)  # the student trains again after the teacher's pass


def test_resume_after_a_kill_ends_at_the_same_weights(dataset, tmp_path):
    def run(out, log=quiet):
        torch.manual_seed(0)  # peft draws the LoRA's initial A from the global generator, as a fresh process would
        return train_lcm_lora(config(dataset, out, validation_prompts=[]), log=log)

    whole = run(tmp_path / "whole")

    def kill_after_step_3(line):
        if "step 3/4" in line:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", kill_after_step_3)
    assert not (tmp_path / "killed" / "tiny-lcm.safetensors").exists()
    resumed = run(tmp_path / "killed")  # from step 2's checkpoint
    a, b = load_file(whole), load_file(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(w_min=7.0, w_max=3.0), "w_min"),
        (dict(loss="l1"), "loss"),
        (dict(train_text_encoder=True), "UNet only"),
        (dict(num_ddim_timesteps=0), "num_ddim_timesteps"),
    ],
)
def test_bad_settings_are_one_clear_error(dataset, tmp_path, kw, match):
    with pytest.raises(InvalidArgument, match=match):
        train_lcm_lora(config(dataset, tmp_path, **kw), log=quiet)


def test_cli_trains_and_reports_a_missing_dataset_in_one_line(run, dataset, tmp_path):
    code, out, err = run("train", "lcm-lora", dataset, "--out", tmp_path / "cli", "--steps", 1, "--batch-size", 1,
                         "--rank", 2, "--name", "cli-lcm", "--loss", "l2", "--w-min", 4, "--w-max", 6)
    assert code == 0 and "cli-lcm.safetensors" in out and "--sampler LCM" in out
    code, out, err = run("train", "lcm-lora", tmp_path / "nowhere", "--out", tmp_path / "x")
    assert code == 1 and err.startswith("gouache: error:") and "metadata.jsonl" in err and "Traceback" not in err
