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
    assert "`scale` must be a number from 1 to 16, got 0.5" in err
