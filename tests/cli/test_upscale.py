"""`gouache upscale` as a user runs it."""

from PIL import Image


def test_upscale_writes_a_bigger_png(run, init_png, tmp_path):
    code, out, err = run("upscale", init_png, "a red circle on a blue background", "--scale", "2", "--tile", "64",
                         "--overlap", "16", "--strength", "0.3", "--steps", "4", "--seed", "1", "--out", tmp_path)
    assert code == 0, err
    path = out.split()[0]
    assert Image.open(path).size == (128, 128)
    assert "SD upscale overlap: 16" in Image.open(path).text["parameters"]


def test_upscale_names_a_bad_flag_value(run, init_png, tmp_path):
    code, out, err = run("upscale", init_png, "a cat", "--scale", "0.5", "--out", tmp_path)
    assert code == 1
    assert "--scale must be a number from 1 to 16, got 0.5" in err


def test_info_says_the_result_size_and_from_still_makes_the_tile(run, init_png, tmp_path):
    """`Size` is the upscaled image's (A1111's SD upscale writes the tile there, which misleads a
    reader of `gouache info`); the tile has its own key, and `generate --from` still draws at it."""
    code, out, err = run("upscale", init_png, "a red circle on a blue background", "--scale", "2", "--tile", "64",
                         "--steps", "2", "--seed", "3", "--out", tmp_path / "up")
    assert code == 0, err
    path = out.split()[0]
    code, info, err = run("info", path)
    assert code == 0, err
    assert "Size: 128x128," in info and "SD upscale tile: 64x64," in info and "Size: 64x64" not in info
    code, out, err = run("generate", "--from", path, "--steps", "2", "--out", tmp_path / "again")
    assert code == 0, err
    assert Image.open(out.split()[0]).size == (64, 64)
