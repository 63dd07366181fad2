"""X/Y/Z plot and prompt matrix on gouache-tiny: the cells are the images ``generate`` makes one by
one, bit for bit; the grid's legends are drawn and differ per label; its PNG carries its infotext."""

import numpy as np
import pytest

import gouache
from gouache.errors import GouacheError
from gouache.pipelines.plot_grid import Label, font_size, legend
from gouache.pipelines.request import GenerationRequest
from gouache.pipelines.xyz import plan_prompt_matrix, plan_xyz

PROMPT = "a red circle on a blue background"
SAMPLERS = ["Euler", "DPM++ 2M", "Heun"]
CFGS = [3.0, 6.0, 9.0]


@pytest.fixture(scope="module")
def plot(tiny_model):
    return gouache.xyz(PROMPT, x="Sampler: Euler, DPM++ 2M, Heun", y="CFG scale: 3-9 (+3)", model=tiny_model,
                       seed=11, steps=3)


def pixels(image):
    return np.asarray(image.convert("RGB"))


def test_a_3x3_plot_is_the_9_images_generate_makes_bit_for_bit(plot, tiny_model):
    assert len(plot.images) == 9 and len(plot.grids) == 1
    for k, made in enumerate(plot.images):
        sampler, cfg = SAMPLERS[k % 3], CFGS[k // 3]
        alone = gouache.txt2img(PROMPT, model=tiny_model, sampler=sampler, cfg_scale=cfg, seed=11, steps=3)[0]
        assert np.array_equal(pixels(made.image), pixels(alone.image)), (sampler, cfg)
        assert made.infotext == alone.infotext
    assert len({pixels(i.image).tobytes() for i in plot.images}) == 9  # the axes changed something


def bands(grid, cols, rows, cell=64):
    """The top legend of each column and the left legend of each row, cut out of a grid."""
    left, top = grid.width - cols * cell, grid.height - rows * cell
    return ([grid.crop((left + c * cell, 0, left + (c + 1) * cell, top)) for c in range(cols)],
            [grid.crop((0, top + r * cell, left, top + (r + 1) * cell)) for r in range(rows)])


def test_the_legends_are_drawn_and_read_as_the_labels(plot):
    grid = plot.grids[0].image
    across, down = bands(grid, 3, 3)
    assert across[0].height >= 14 and down[0].width >= 60  # room for the labels, over 64x64 cells
    for band in across + down:
        assert pixels(band).min() < 100  # dark text on the white band
    assert len({pixels(b).tobytes() for b in across}) == 3 and len({pixels(b).tobytes() for b in down}) == 3
    size = font_size(64, 64)
    for band, text in zip(across + down, SAMPLERS + [f"CFG scale: {c}" for c in CFGS]):
        assert np.array_equal(pixels(band), pixels(legend([Label(text)], band.width, band.height, size))), text
    # the cells under the legends are the images, in order
    assert np.array_equal(pixels(grid.crop((grid.width - 64, grid.height - 64, grid.width, grid.height))),
                          pixels(plot.images[8].image))


def test_the_grid_png_carries_the_grids_infotext(plot, tmp_path):
    from gouache.metadata.infotext import parse_infotext
    from gouache.metadata.png import read_infotext
    from gouache.pipelines.xyz import save_plot

    paths = save_plot(plot, tmp_path)
    assert paths[0].name == "xyz_grid-00000-11.png" and len(paths) == 10
    parsed = parse_infotext(read_infotext(paths[0]))
    assert parsed.prompt == PROMPT and parsed.params["Seed"] == "11" and parsed.params["Sampler"] == "Euler"
    assert parsed.params["Script"] == "X/Y/Z plot"
    assert (parsed.params["X Type"], parsed.params["X Values"]) == ("Sampler", "Euler, DPM++ 2M, Heun")
    assert (parsed.params["Y Type"], parsed.params["Y Values"]) == ("CFG scale", "3-9 (+3)")
    assert read_infotext(paths[1]) == plot.images[0].infotext  # each image keeps its own


def test_a_z_axis_makes_a_grid_per_value_with_its_title(tiny_model):
    result = gouache.xyz(PROMPT, x="Steps: 1, 2", z="Seed: 1, 2", model=tiny_model, steps=2)
    assert len(result.grids) == 2 and result.combined is not None
    assert [i.seed for i in result.images] == [1, 1, 2, 2]
    assert result.grids[0].image.height > 64 + 14 + 14  # the X legend and the Z title
    assert result.combined.image.width == sum(g.image.width for g in result.grids)


def test_prompt_sr_replaces_in_prompt_and_negative_prompt():
    base = GenerationRequest(PROMPT, negative_prompt="a red square", seed=1, steps=2)
    plot = plan_xyz(base, "Prompt S/R: red, green, yellow")
    assert [c.prompt for c in plot.cells] == [PROMPT, PROMPT.replace("red", "green"), PROMPT.replace("red", "yellow")]
    assert plot.cells[1].negative_prompt == "a green square"


def test_seeds_are_fixed_once_or_varied_per_cell():
    base = GenerationRequest(PROMPT, steps=2)  # seed -1
    plot = plan_xyz(base, "Steps: 1, 2", "CFG scale: 3, 5")
    assert len({c.seed for c in plot.cells}) == 1 and plot.cells[0].seed != -1
    varied = plan_xyz(GenerationRequest(PROMPT, seed=10), "Steps: 1, 2", "CFG scale: 3, 5", vary_seeds="xy")
    assert [c.seed for c in varied.cells] == [10, 11, 12, 13]
    kept = plan_xyz(base, "Steps: 1, 2", keep_random_seeds=True)
    assert {c.seed for c in kept.cells} == {-1}


@pytest.mark.parametrize("x, y, message", [
    ("Sampler: Euler, Nope", None, "Nope"),
    ("Steps: 1-300", "CFG scale: 1-2", "the plot makes 600 images (600 cells × 1 each), over the limit of 400"),
    ("Steps: 0, 5", None, "`steps` must be between 1 and 1000"),
    ("Prompt S/R: square, circle", None, "'square' is not in the prompt"),
])
def test_bad_plots_fail_before_anything_runs(x, y, message):
    with pytest.raises(GouacheError) as err:
        plan_xyz(GenerationRequest(PROMPT, seed=1), x, y)
    assert message in str(err.value)


def test_prompt_matrix_makes_every_combination_and_marks_the_absent_parts(tiny_model):
    plot = plan_prompt_matrix(GenerationRequest("a red circle|on a blue background|outline style", seed=3, steps=2))
    assert [c.prompt for c in plot.cells] == ["a red circle", "a red circle, on a blue background",
                                              "a red circle, outline style",
                                              "a red circle, on a blue background, outline style"]
    assert (plot.cols, plot.rows) == (2, 2) and {c.seed for c in plot.cells} == {3}
    assert plot.top == [[Label("on a blue background", False)], [Label("on a blue background", True)]]
    result = gouache.prompt_matrix("a red circle|on a blue background|outline style", model=tiny_model, seed=3,
                                   steps=2)
    across, down = bands(result.grids[0].image, 2, 2)
    assert not np.array_equal(pixels(across[0]), pixels(across[1]))  # struck through vs plain
    alone = gouache.txt2img("a red circle, outline style", model=tiny_model, seed=3, steps=2)[0]
    assert np.array_equal(pixels(result.images[2].image), pixels(alone.image))
    assert result.grids[0].infotext == result.images[0].infotext  # A1111: the grid has its first image's


@pytest.mark.parametrize("prompt, options, message", [
    ("a red circle", {}, "has no optional parts"),
    ("a|" + "|".join("abcdefghi"), {}, "9 optional parts make 512 images; give at most 8"),
    ("a|b", {"delimiter": "tab"}, "`delimiter` must be one of comma, space"),
])
def test_bad_prompt_matrices_are_one_line(prompt, options, message):
    with pytest.raises(GouacheError, match=message):
        plan_prompt_matrix(GenerationRequest(prompt), **options)
