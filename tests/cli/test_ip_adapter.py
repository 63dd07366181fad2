"""`--ip-adapter NAME[:SCALE] --ip-image IMAGE [--ip-style]` on the generation commands, as a user runs them."""

import numpy as np
import pytest
from PIL import Image

PROMPT = "on a blue background"


@pytest.fixture
def shape(tmp_path):
    path = tmp_path / "red-circle.png"
    from gouache.tiny.shapes import ShapeSpec, draw

    draw(ShapeSpec("red", "circle", "white", 32, 32, 40)).save(path)
    return path


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_generate_with_an_image_prompt_and_from_makes_it_again(run, tmp_path, shape, tiny_ip_adapter):
    code, out, err = run("generate", PROMPT, "--seed", "4", "--steps", "4", "--ip-adapter", "tiny-ip:0.8",
                         "--ip-image", shape, "--ip-style", "--out", tmp_path / "a")
    assert code == 0, err
    first = out.split()[0]
    text = Image.open(first).info["parameters"]
    assert 'IP-Adapter 0: "Model: tiny-ip [' in text and "Weight: 0.8, Style: True, Image 1: " in text
    code, out, err = run("generate", "--from", first, "--out", tmp_path / "b")
    assert code == 0, err
    assert np.array_equal(pixels(first), pixels(out.split()[0]))
    other = tmp_path / "blue.png"
    Image.new("RGB", (64, 64), (35, 70, 220)).save(other)
    code, out, err = run("generate", "--from", first, "--ip-image", other, "--out", tmp_path / "c")
    assert code == 0, err
    assert f"Image 1: {other}" in Image.open(out.split()[0]).info["parameters"]


@pytest.mark.parametrize("command", [["img2img", "{init}", "a red circle"], ["inpaint", "{init}", "{mask}", "a red circle"],
                                     ["upscale", "{init}", "a red circle"],
                                     ["outpaint", "{init}", "a red circle", "--right", "16"]])
def test_every_image_command_takes_image_prompts(run, tmp_path, shape, tiny_ip_adapter, command):
    init, mask = tmp_path / "init.png", tmp_path / "mask.png"
    Image.new("RGB", (64, 64), (35, 70, 220)).save(init)
    Image.new("L", (64, 64), 255).save(mask)
    argv = [a.format(init=init, mask=mask) for a in command]
    code, out, err = run(*argv, "--steps", "2", "--ip-adapter", "tiny-ip", "--ip-image", shape, "--out", tmp_path / "o")
    assert code == 0, err
    assert "IP-Adapter 0:" in Image.open(out.split()[0]).info["parameters"]


@pytest.mark.parametrize("args,words", [
    (["--ip-adapter", "no-such-adapter", "--ip-image", "{shape}"], "unknown IP-Adapter 'no-such-adapter'"),
    (["--ip-adapter", "tiny-ip", "--ip-image", "{notes}"], "is not an image"),
    (["--ip-adapter", "tiny-ip"], "has no image prompt; pass --ip-image IMAGE"),
    (["--ip-image", "{shape}"], "--ip-image and --ip-style need --ip-adapter"),
    (["--ip-adapter", "tiny-ip:7", "--ip-image", "{shape}"], "scale` must be a number from 0 to 2"),
])
def test_bad_image_prompts_are_one_line_and_write_nothing(run, tmp_path, shape, tiny_ip_adapter, args, words):
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    argv = [a.format(shape=shape, notes=notes) for a in args]
    code, out, err = run("generate", PROMPT, "--steps", "2", *argv, "--out", tmp_path / "o")
    assert code == 1 and out == ""
    assert err.startswith("gouache: error:") and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_from_without_the_recorded_image_asks_for_ip_image(run, tmp_path, tiny_ip_adapter):
    moved = tmp_path / "gone.png"
    Image.new("RGB", (64, 64), (220, 30, 30)).save(moved)
    code, out, err = run("generate", PROMPT, "--steps", "2", "--ip-adapter", "tiny-ip", "--ip-image", moved,
                         "--out", tmp_path / "a")
    assert code == 0, err
    moved.unlink()
    code, _, err = run("generate", "--from", out.split()[0], "--out", tmp_path / "b")
    assert code == 1 and "does not exist; pass --ip-image IMAGE" in err
