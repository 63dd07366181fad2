"""The speed options and `gouache bench` as a user runs them (in-process, through main())."""

import json

import pytest
from PIL import Image

from gouache.cli import main

PROMPT = "a red circle on a blue background"


def test_generate_with_every_approximation_and_bf16(tmp_path):
    code = main(["generate", PROMPT, "--steps", "4", "--seed", "5", "--dtype", "bf16", "--tome", "0.5",
                 "--deepcache", "2", "--cfg-truncation", "0.5", "--out", str(tmp_path)])
    assert code == 0
    info = Image.open(tmp_path / "00000-5.png").info["parameters"]
    for key in ("Token merging ratio: 0.5", "DeepCache interval: 2", "CFG truncation: 0.5"):
        assert key in info


@pytest.mark.parametrize("flags,message", [
    (["--dtype", "fp8"], "dtype"),
    (["--tome", "0.9"], "--tome must be"),
    (["--deepcache", "0"], "--deepcache must be"),
    (["--cfg-truncation", "2"], "--cfg-truncation must be"),
    (["--offload", "model"], "CUDA"),
])
def test_bad_speed_options_are_one_line(tmp_path, capsys, flags, message):
    code = main(["generate", PROMPT, "--steps", "2", "--out", str(tmp_path), *flags])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_compile_runs_and_matches(tmp_path):
    """--compile (torch.compile of the UNet) gives the uncompiled image within a level."""
    import numpy as np

    assert main(["generate", PROMPT, "--steps", "3", "--seed", "2", "--out", str(tmp_path / "a")]) == 0
    assert main(["generate", PROMPT, "--steps", "3", "--seed", "2", "--compile", "--out", str(tmp_path / "b")]) == 0
    a, b = (np.asarray(Image.open(tmp_path / d / "00000-2.png"), dtype=int) for d in "ab")
    assert np.abs(a - b).max() <= 1


def test_bench_writes_json_and_markdown(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "--sides", "stock,gouache,approx", "--steps", "3", "--images", "1", "--threads", "1",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["side"] for r in result["sides"]] == ["stock", "gouache", "approx"]
    for r in result["sides"]:
        assert r["s_per_image"] > 0 and r["unet_calls_per_image"] > 0 and r["peak_rss_mib"] > 0
    stock, gouache, approx = result["sides"]
    assert stock["unet_calls_per_image"] == gouache["unet_calls_per_image"] == 3
    assert approx["unet_calls_per_image"] < 3  # DeepCache ran the shallow branch on the other steps
    assert all(r["threads"] == 1 for r in result["sides"])  # what each side's UNet ran on, said in the table
    table = out.with_suffix(".md").read_text()
    assert "| diffusers StableDiffusionPipeline, fp32, defaults |" in table and "× vs stock" in table
    assert "| threads |" in table


def test_bench_refuses_unknown_sides(capsys):
    assert main(["bench", "--sides", "stock,turbo-max"]) == 1
    err = capsys.readouterr().err
    assert "unknown benchmark side 'turbo-max'" in err and "Traceback" not in err


def test_flop_count_covers_the_call_gouache_makes(tmp_path):
    """`gouache bench --flops` counts the plain CFG call and gouache's, whose shared first layers
    run for one image: fewer FLOPs, by exactly what those layers cost once."""
    import torch
    from diffusers import UNet2DConditionModel

    from gouache.bench import count_flops

    torch.manual_seed(0)
    UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=24, attention_head_dim=8, norm_num_groups=8).save_pretrained(tmp_path / "unet")
    f = count_flops(tmp_path, 128)
    assert f["latent"] == 16 and f["attention_flops"] > 0
    # one image of the first self-attention (16x16 tokens, 32 wide) is part of what is saved
    saved = f["total_flops"] - f["gouache_flops"]
    assert 4 * 256 * 256 * 32 < saved < 0.2 * f["total_flops"]
