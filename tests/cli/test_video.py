"""`gouache video`: a clip and its sidecar, --from remakes it bit for bit, bad input is one line and writes nothing."""

import numpy as np
import pytest
from PIL import Image, ImageSequence

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("motion_layouts", Path(__file__).parents[1] / "motion_layouts.py")
_layouts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_layouts)  # tests/motion_layouts.py (the tests' folder is no package)
tiny_adapter, write_layouts = _layouts.tiny_adapter, _layouts.write_layouts

PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module", autouse=True)
def layouts(gouache_home):
    return write_layouts(gouache_home / "motion")


def frames_of(path):
    with Image.open(path) as im:
        return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])


def test_video_writes_a_gif_and_from_remakes_it(run, tmp_path):
    code, out, err = run("video", PROMPT, "--motion", "mm_tiny", "--frames", "4", "--steps", "3", "--seed", "9",
                         "--out", tmp_path / "a")
    assert code == 0, err
    gif = tmp_path / "a" / "00000-9.gif"
    assert out.strip() == str(gif) and (tmp_path / "a" / "00000-9.txt").is_file()
    assert len(frames_of(gif)) == 4
    code, out, err = run("video", "--from", gif, "--output", tmp_path / "b.gif")
    assert code == 0, err
    assert np.array_equal(frames_of(gif), frames_of(tmp_path / "b.gif"))
    assert (tmp_path / "b.txt").read_text() == (tmp_path / "a" / "00000-9.txt").read_text()


def test_free_init_is_a_flag_and_from_remakes_it(run, tmp_path):
    code, out, err = run("video", PROMPT, "--motion", "mm_tiny", "--frames", "3", "--steps", "2", "--seed", "2",
                         "--free-init", "2", "--free-init-filter", "gaussian", "--output", tmp_path / "f.gif")
    assert code == 0, err
    assert "FreeInit: 2, FreeInit filter: gaussian," in (tmp_path / "f.txt").read_text()
    code, out, err = run("video", "--from", tmp_path / "f.gif", "--output", tmp_path / "g.gif")
    assert code == 0, err
    assert np.array_equal(frames_of(tmp_path / "f.gif"), frames_of(tmp_path / "g.gif"))


@pytest.mark.parametrize("fmt,name", [("mp4", "c.mp4"), ("webp", "c.webp"), ("png", "c")])
def test_other_formats_carry_the_parameters(run, tmp_path, fmt, name):
    from gouache.metadata.video import read_video_infotext

    code, out, err = run("video", PROMPT, "--motion", "tiny-mm:0.5", "--frames", "3", "--steps", "2", "--seed", "1",
                         "--format", fmt, "--output", tmp_path / name)
    assert code == 0, err
    target = tmp_path / name
    text = (tmp_path / "c.txt").read_text()
    (tmp_path / "c.txt").unlink()  # the file's own metadata, without the sidecar
    assert read_video_infotext(target) == text and "Motion scale: 0.5" in text
    if fmt == "png":
        assert len(list(target.glob("*.png"))) == 3


@pytest.mark.parametrize("args,message,code", [
    (["--frames", "0"], "--frames must be between 1 and 256, got 0", 1),
    (["--frames", "300"], "--frames must be between 1 and 256, got 300", 1),
    (["--motion", "nothing-here"], "unknown motion adapter 'nothing-here'", 1),
    (["--output", "x.gif", "--format", "mp4"], "does not fit --format mp4", 1),
    (["--free-init", "9"], "--free-init must be between 0 and 5, got 9", 1),
    (["--free-init", "3", "--free-init-ds", "0"], "--free-init-ds must be a number from 0.01 to 1", 1),
])
def test_bad_input_is_one_line_and_writes_nothing(run, tmp_path, monkeypatch, args, message, code):
    monkeypatch.chdir(tmp_path)
    argv = ["video", PROMPT, "--steps", "1", "--frames", "2", "--out", "outs"]
    if "--motion" not in args:
        argv += ["--motion", "tiny-mm"]
    got, out, err = run(*argv, *args)
    assert got == code and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "outs").exists() or not any((tmp_path / "outs").iterdir())


def test_unknown_format_is_argparse_one_line(capsys):
    from gouache.cli import main

    with pytest.raises(SystemExit) as e:
        main(["video", PROMPT, "--format", "avi"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "invalid choice: 'avi'" in err and len(err.strip().splitlines()) == 1


def test_adapter_for_another_unet_is_one_line(run, gouache_home, tmp_path):
    tiny_adapter(blocks=(32, 64, 64), scale=0.0).save_pretrained(gouache_home / "motion" / "other-unet")
    code, out, err = run("video", PROMPT, "--motion", "other-unet", "--frames", "2", "--steps", "1",
                         "--out", tmp_path / "o")
    assert code == 1 and "motion adapter 'other-unet' is for another UNet" in err and len(err.splitlines()) == 1
    assert not any((tmp_path / "o").iterdir())


def test_unwritable_output_and_no_overwrite(run, tmp_path):
    (tmp_path / "a-file").write_text("")  # a folder that cannot be made (root may write anywhere else)
    code, out, err = run("video", PROMPT, "--motion", "tiny-mm", "--frames", "2", "--steps", "1",
                         "--output", tmp_path / "a-file" / "v.gif")
    assert code == 1 and "a-file" in err and len(err.splitlines()) == 1
    (tmp_path / "v.gif").write_bytes(b"mine")
    code, out, err = run("video", PROMPT, "--motion", "tiny-mm", "--frames", "2", "--steps", "1",
                         "--output", tmp_path / "v.gif")
    assert code == 1 and "exists" in err and (tmp_path / "v.gif").read_bytes() == b"mine"
