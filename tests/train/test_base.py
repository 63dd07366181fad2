"""`gouache train base`: the recipe runs end to end (a few steps) and writes a model that loads."""

import torch
from gouache.cli import main
from gouache.models.builtin import load_components


def test_train_base_smoke(tmp_path, capsys):
    code = main(["train", "base", "--out", str(tmp_path / "run"), "--vae-steps", "2", "--diffusion-steps", "2",
                 "--vae-batch-size", "4", "--batch-size", "4", "--vae-styles-steps", "2", "--text-parts-steps", "2"])
    assert code == 0
    out = capsys.readouterr().out
    weights = tmp_path / "run" / "gouache-tiny.safetensors"  # after stage 3, the VAE that also draws outlines
    assert str(weights) in out
    vae, text_encoder, unet, meta = load_components(weights, weights.with_suffix(".json"))
    assert meta["recipe"]["diffusion_steps"] == 2
    assert meta["vae_styles"]["steps"] == 2 and meta["vae_styles"]["styles"] == ["filled", "outline"]
    assert meta["text_parts"]["steps"] == 2 and "on a {background} background" in meta["text_parts"]["parts"]
    assert (tmp_path / "run" / "stage-diffusion" / "pipeline" / "model_index.json").is_file()
    before = load_components(*[tmp_path / "run" / "stage-diffusion" / f"gouache-tiny.{x}" for x in ("safetensors", "json")])
    # stage 3 changes the VAE only, stage 4 the text encoder only
    assert all(torch.equal(x, y) for x, y in zip(before[2].state_dict().values(), unet.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(before[1].state_dict().values(), text_encoder.state_dict().values()))
    # the run's final model is a folder --model takes, and the log says where it is
    model = tmp_path / "run" / "model"
    assert f"--model {model}" in out
    from gouache.models.facts import read_facts  # the recipe's CFG and guidance interval travel with it

    assert (read_facts(model).defaults.cfg_scale, read_facts(model).defaults.cfg_truncation) == (5.0, 0.5)
    assert main(["generate", "a red circle on a blue background", "--model", str(model), "--steps", "2", "--seed", "1",
                 "--out", str(tmp_path / "images")]) == 0
    assert len(list((tmp_path / "images").glob("*.png"))) == 1


def test_unknown_dataset(tmp_path, capsys):
    code = main(["train", "base", "--out", str(tmp_path / "run"), "--dataset", "faces"])
    assert code == 1
    assert "unknown dataset 'faces'; choose one of: shapes" in capsys.readouterr().err


def test_extend_vae_of_a_file_that_is_not_a_packed_model(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    code = main(["train", "base", "--out", str(tmp_path / "run"), "--extend-vae", str(bad)])
    err = capsys.readouterr().err
    assert code == 1 and "not a packed gouache-tiny" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_recipe_trains_the_vae_on_both_styles_from_the_start(tmp_path, capsys):
    """The default recipe has no stage 3: stage 1's batches are half outlines, so the VAE the
    denoiser is trained against already draws both styles (no patch that leaks rims into fills)."""
    import json

    run = tmp_path / "run"
    assert main(["train", "base", "--out", str(run), "--vae-steps", "2", "--diffusion-steps", "1",
                 "--vae-batch-size", "4", "--batch-size", "2", "--text-parts-steps", "0"]) == 0
    metrics = json.loads((run / "vae_metrics.json").read_text())
    assert {"mean_abs_error_0_255", "outline_mean_abs_error_0_255"} <= set(metrics)
    weights = run / "stage-diffusion" / "gouache-tiny.safetensors"
    assert str(weights) in capsys.readouterr().out
    meta = load_components(weights, weights.with_suffix(".json"))[3]
    assert meta["recipe"]["vae_outline_fraction"] == 0.5 and "vae_styles" not in meta
    assert not (run / "stage-vae-styles").exists()
