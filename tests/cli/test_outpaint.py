"""`gouache outpaint` as a user runs it (in-process, through main())."""

import numpy as np
import pytest
from PIL import Image





def test_outpaint_grows_the_image_around_the_original(run, init_png, tmp_path, tiny_model):
    code, out, err = run("outpaint", init_png, "a wide landscape", "--left", "16", "--down", "8",
                         "--mask-blur", "0", "--steps", "2", "--seed", "1", "--out", tmp_path)
    assert code == 0, err
    made = Image.open(out.split()[0])
    assert made.size == (80, 72) and "Size: 80x72," in made.text["parameters"]
    assert np.array_equal(np.asarray(made)[:64, 16:], np.asarray(Image.open(init_png)))


@pytest.mark.parametrize("args,message", [
    (["--right", "12"], "--right must be a multiple of 8, got 12 (try 16)"),
    ([], "give at least one of --left, --right, --up, --down (pixels to add), e.g. --right 64"),
    (["--up", "8", "--strength", "1.5"], "--strength must be a number from 0"),
])
def test_bad_input_is_one_line_and_writes_nothing(run, init_png, args, message, tmp_path):
    code, _, err = run("outpaint", init_png, "sky", "--out", tmp_path / "out", *args)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
