"""``--control`` on the command line: parsing, one-line errors, the metadata, ``--from``."""

import argparse

import numpy as np
import pytest
from PIL import Image

from gouache.cli.common import control_option


@pytest.mark.parametrize("text, want", [
    ("canny:edges.png", ("canny", "edges.png", 1.0, 0.0, 1.0)),
    ("canny:edges.png:0.5", ("canny", "edges.png", 0.5, 0.0, 1.0)),
    ("canny:edges.png:0.5:0.1:0.6", ("canny", "edges.png", 0.5, 0.1, 0.6)),
    ("canny:C:/maps/e.png:1", ("canny", "C:/maps/e.png", 1.0, 0.0, 1.0)),
    ("tile", ("tile", None, 1.0, 0.0, 1.0)),
])
def test_control_option(text, want):
    c = control_option(text)
    assert (c.preprocessor, c.image, c.weight, c.start, c.end) == want


def test_control_option_refuses_start_without_end():
    with pytest.raises(argparse.ArgumentTypeError, match="PREPROCESSOR:IMAGE"):
        control_option("canny:e.png:1:0.5")


@pytest.fixture(scope="module")
def net_dir(gouache_home, tiny_controlnet):
    """Installed in $GOUACHE_HOME/controlnet: the infotext records a ControlNet by name, as A1111's extension."""
    folder = gouache_home / "controlnet" / "cli-edges"
    tiny_controlnet.net.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def square_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("ctl") / "square.png"
    im = Image.new("RGB", (64, 64))
    im.paste((255, 255, 255), (16, 20, 44, 48))
    im.save(path)
    return path


@pytest.mark.parametrize("args, message", [
    (["--control", "cany:{img}"], "unknown preprocessor 'cany'; choose one of canny"),
    (["--control", "canny:missing.png"], "control image 'missing.png' does not exist"),
    (["--control", "canny:{img}", "--control-model", "no-such-net"], "unknown ControlNet 'no-such-net'"),
    (["--control", "canny"], r"`controls\[0\]` has no image"),
    (["--control-model", "x"], "--control-model needs a --control"),
    (["--control", "depth:{img}", "--control-model", "{net}"], "needs DPT weights"),
])
def test_errors_are_one_line(run, tmp_path, square_png, net_dir, args, message):
    args = [a.format(img=square_png, net=net_dir) for a in args]
    code, out, err = run("generate", "a red circle on a blue background", "--steps", "2", "--out", tmp_path, *args)
    assert code == 1 and err.count("\n") == 1 and err.startswith("gouache: error: ")
    import re

    assert re.search(message, err), err


def test_generate_with_two_controls_records_them_and_from_makes_it_again(run, tmp_path, square_png, net_dir):
    code, out, err = run("generate", "a red circle on a blue background", "--steps", "3", "--seed", "5",
                         "--out", tmp_path / "a", "--control", f"canny:{square_png}:0.8:0:0.5",
                         "--control-model", net_dir, "--control", f"none:{square_png}:1.2", "--control-model", "cli-edges")
    assert code == 0, err
    first = out.split()[0]
    from gouache.metadata.png import read_infotext

    text = read_infotext(first)
    assert 'ControlNet 0: "Module: canny, Model: cli-edges [' in text and "Weight: 0.8" in text and "Guidance End: 0.5" in text
    assert 'ControlNet 1: "Module: none' in text and f"Image: {square_png.resolve()}" in text
    code, out, err = run("generate", "--from", first, "--out", tmp_path / "b")
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(out.split()[0])))
