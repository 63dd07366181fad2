"""``gouache xyz`` and ``gouache prompt-matrix``: the grid and every image saved with their
infotexts, the images those ``gouache generate`` makes, and bad input in one line before any work."""

import numpy as np
import pytest
from PIL import Image

from gouache.metadata.infotext import parse_infotext
from gouache.metadata.png import read_infotext

PROMPT = "a red circle on a blue background"


def test_xyz_saves_the_grid_then_the_images_that_generate_makes(run, tmp_path):
    code, out, err = run("xyz", PROMPT, "--x", "Sampler: Euler, Heun", "--y", "Steps: 2, 3", "--seed", "5",
                         "--out", tmp_path / "xyz")
    assert code == 0, err
    paths = out.split()
    assert [p.rsplit("/", 1)[1] for p in paths] == ["xyz_grid-00000-5.png"] + [f"0000{i}-5.png" for i in range(4)]
    params = parse_infotext(read_infotext(paths[0])).params
    assert (params["Script"], params["X Type"], params["Y Values"]) == ("X/Y/Z plot", "Sampler", "2, 3")
    code, out, err = run("generate", PROMPT, "--sampler", "Heun", "--steps", "3", "--seed", "5",
                         "--out", tmp_path / "one")
    assert code == 0, err
    alone = out.split()[0]
    assert np.array_equal(np.asarray(Image.open(paths[4])), np.asarray(Image.open(alone)))
    assert read_infotext(paths[4]) == read_infotext(alone)


def test_prompt_matrix_saves_a_grid_and_every_combination(run, tmp_path):
    code, out, err = run("prompt-matrix", "a red circle|outline style", "--steps", "2", "--seed", "1",
                         "--out", tmp_path)
    assert code == 0, err
    paths = out.split()
    assert len(paths) == 3 and paths[0].endswith("prompt_matrix-00000-1.png")
    assert [parse_infotext(read_infotext(p)).prompt for p in paths[1:]] == ["a red circle",
                                                                             "a red circle, outline style"]


@pytest.mark.parametrize("argv, message", [
    (["xyz", PROMPT, "--x", "Colour: red"], "gouache: error: unknown axis 'Colour'; one of: Nothing, Steps"),
    (["xyz", PROMPT, "--x", "Steps: 1-"], "gouache: error: Steps: '1-' is not a whole number or a range like 1-5"),
    (["xyz", PROMPT, "--x", "Steps:"], "gouache: error: Steps: the axis has no values"),
    (["xyz", PROMPT, "--x", "Steps: 1-30", "--y", "Seed: 1-20"], "the plot makes 600 images"),
    (["xyz", PROMPT, "--x", "Prompt S/R: square, star"], "'square' is not in the prompt"),
    (["xyz", PROMPT, "--x", "Hires steps: 2, 4"], "the hires fix is off, so a hires axis changes nothing: turn it on "
                                                    "(--hires-scale)"),
    (["xyz", PROMPT, "--x", "Steps: 0, 1"], "gouache: error: --steps must be between 1 and 1000, got 0"),
    (["xyz", PROMPT, "--x", "Steps: 1", "--vary-seeds", "w"], "`vary_seeds` names the axes"),
    (["prompt-matrix", PROMPT], "gouache: error: the prompt has no optional parts"),
])
def test_bad_input_is_one_line_and_writes_nothing(run, argv, message, tmp_path):
    code, out, err = run(*argv, "--out", tmp_path / "out")
    assert code == 1 and out == ""
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_the_x_axis_is_required(run, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        run("xyz", PROMPT, "--out", tmp_path)
    assert exit_.value.code == 2
