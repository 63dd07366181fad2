"""`gouache inpaint` as a user runs it (in-process, through main())."""

import numpy as np
import pytest
from PIL import Image

from gouache.cli import main

PROMPT = "a blue square on a yellow background"



@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("in")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "init.png")
    mask = Image.new("L", (64, 64))
    mask.paste(255, (16, 16, 48, 48))
    mask.save(folder / "mask.png")
    Image.new("L", (32, 32), 255).save(folder / "small.png")
    return folder


def test_inpaint_keeps_the_unmasked_pixels(run, files, tmp_path, tiny_model):
    code, out, err = run("inpaint", files / "init.png", files / "mask.png", PROMPT, "--steps", "2",
                         "--seed", "3", "--mask-blur", "0", "--fill", "noise", "--out", tmp_path)
    assert code == 0, err
    (path,) = out.split()
    made, init = np.asarray(Image.open(path)), np.asarray(Image.open(files / "init.png"))
    keep = np.asarray(Image.open(files / "mask.png")) == 0
    assert np.array_equal(made[keep], init[keep])
    params = Image.open(path).text["parameters"]
    assert "Mask blur: 0, Inpaint area: Whole picture, Masked content: latent noise," in params


def test_only_masked(run, files, tmp_path, tiny_model):
    code, out, err = run("inpaint", files / "init.png", files / "mask.png", PROMPT, "--steps", "2",
                         "--only-masked", "--padding", "8", "--out", tmp_path)
    assert code == 0, err
    assert "Inpaint area: Only masked, Masked area padding: 8," in Image.open(out.split()[0]).text["parameters"]


def test_keep_edges_adds_the_canny_unit_and_the_infotext_records_it(run, files, tmp_path, tiny_model):
    code, out, err = run("inpaint", files / "init.png", files / "mask.png", PROMPT, "--steps", "2", "--seed", "3",
                         "--keep-edges", "0.7", "--out", tmp_path)
    assert code == 0, err
    params = Image.open(out.split()[0]).text["parameters"]
    assert "ControlNet" in params and "canny" in params and "Weight: 0.7" in params, params


@pytest.mark.parametrize("mask,args,message", [
    ("small.png", [], "MASK must be the size of INIT (64x64), got 32x32"),
    ("mask.png", ["--strength", "1.5"], "--strength must be a number from 0"),
    ("mask.png", ["--mask-blur", "100"], "--mask-blur must be between 0 and 64, got 100"),
    ("mask.png", ["--keep-edges", "3"], "--keep-edges must be a number from 0 to 2"),
    ("missing.png", [], "is not a file"),
])
def test_bad_input_is_one_line_and_writes_nothing(run, files, mask, args, message, tmp_path):
    out_dir = tmp_path / "out"
    code, _, err = run("inpaint", files / "init.png", files / mask, PROMPT, "--out", out_dir, *args)
    assert code == 1 and err.startswith("gouache: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not out_dir.exists()


def test_unknown_fill_is_an_option_error(files, capsys):
    with pytest.raises(SystemExit) as e:
        main(["inpaint", str(files / "init.png"), str(files / "mask.png"), PROMPT, "--fill", "blur"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--fill" in err and "original" in err and len(err.strip().splitlines()) == 1
