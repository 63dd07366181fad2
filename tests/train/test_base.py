"""`gouache train base`: the recipe runs end to end (a few steps) and writes a model that loads."""

from gouache.cli import main
from gouache.tiny.package import load_components


def test_train_base_smoke(tmp_path, capsys):
    code = main(["train", "base", "--out", str(tmp_path / "run"), "--vae-steps", "2", "--diffusion-steps", "2",
                 "--vae-batch-size", "4", "--batch-size", "4"])
    assert code == 0
    out = capsys.readouterr().out
    weights = tmp_path / "run" / "stage-diffusion" / "gouache-tiny.safetensors"
    assert str(weights) in out
    vae, text_encoder, unet, meta = load_components(weights, weights.with_suffix(".json"))
    assert meta["recipe"]["diffusion_steps"] == 2
    assert (tmp_path / "run" / "stage-diffusion" / "pipeline" / "model_index.json").is_file()


def test_unknown_dataset(tmp_path, capsys):
    code = main(["train", "base", "--out", str(tmp_path / "run"), "--dataset", "faces"])
    assert code == 1
    assert "unknown dataset 'faces'; choose one of: shapes" in capsys.readouterr().err
