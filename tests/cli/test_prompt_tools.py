"""``--style`` and dynamic prompts on the command line: every generation command takes them, and
``gouache generate --from`` makes a dynamic prompt's image again."""

import numpy as np
import pytest
from PIL import Image

from gouache.metadata.png import read_infotext


@pytest.fixture
def home(tmp_path, monkeypatch, prompt_home):
    path = prompt_home.make_home(tmp_path / "home")
    monkeypatch.setenv("GOUACHE_HOME", str(path))
    return path


def test_generate_resolves_per_image_and_from_makes_the_image_again(run, home, tmp_path):
    code, out, err = run("generate", "a __colour__ __shape__ on a black background", "--style", "outline",
                         "--steps", "3", "--seed", "5", "--batch-size", "2", "--out", tmp_path / "a")
    assert code == 0, err
    first, second = out.split()
    text = read_infotext(second)
    assert text.startswith("a ") and ", outline style\n" in text
    assert "Template: a __colour__ __shape__ on a black background" in text
    code, out, err = run("generate", "--from", second, "--out", tmp_path / "b")
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(second)), np.asarray(Image.open(out.strip())))
    assert read_infotext(out.strip()).split("\n")[0] == text.split("\n")[0]


@pytest.mark.parametrize("argv, message", [
    (["generate", "a __colour__ __shap__"], "unknown wildcard __shap__ (did you mean __shape__?)"),
    (["generate", "__loop/a__"], "wildcards form a cycle: __loop/a__ → __loop/b__ → __loop/a__"),
    (["generate", "a {red|blue circle"], "never closed"),
    (["generate", "a circle", "--style", "Sketch"], "unknown style 'Sketch'; available: outline, Muted"),
    (["img2img", "INIT", "a __nope__"], "unknown wildcard __nope__"),
    (["upscale", "INIT", "a circle", "--style", "nope"], "unknown style 'nope'"),
])
def test_errors_are_one_line(run, home, tmp_path, argv, message):
    init = tmp_path / "init.png"
    Image.new("RGB", (64, 64), "red").save(init)
    code, out, err = run(*[str(init) if a == "INIT" else a for a in argv], "--steps", "1", "--out", tmp_path / "o")
    assert code == 1 and err.startswith("gouache: error: ") and message in err and err.count("\n") == 1


def test_no_wildcards_takes_the_text_as_written(run, home, tmp_path):
    code, out, err = run("generate", "a {red|blue} circle", "--no-wildcards", "--steps", "1", "--out", tmp_path)
    assert code == 0, err
    assert read_infotext(out.strip()).startswith("a {red|blue} circle\n")
