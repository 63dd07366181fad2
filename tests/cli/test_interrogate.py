"""``gouache interrogate``: the output's format, the captioner choices, and one-line errors."""

import importlib.util
import sys
import types
from pathlib import Path

import pytest
from PIL import Image, ImageDraw


def _vision_conftest():
    path = Path(__file__).parents[1] / "vision" / "conftest.py"
    spec = importlib.util.spec_from_file_location("vision_conftest_for_cli", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    return _vision_conftest().write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture(scope="module")
def image_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "circle.png"
    im = Image.new("RGB", (40, 40), "white")
    ImageDraw.Draw(im).ellipse((8, 8, 32, 32), fill="red")
    im.save(path)
    return path


class _Captioner:
    """A stand-in for gouache.vision.captioners' models (the real module lands separately)."""

    opened: list = []

    def __init__(self, name):
        self.name, self.closed = name, False

    def caption(self, images, prompt=None):
        return [f"a picture seen by {self.name}" for _ in images]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed = True


@pytest.fixture
def captioners(monkeypatch):
    """A fake ``gouache.vision.captioners`` whose built-in is missing and any other name loads."""
    from gouache.errors import ModelLoadError

    made = []

    def load_captioner(name_or_path=None, device="cpu"):
        if name_or_path is None:
            raise ModelLoadError("the built-in captioner is not installed; pass --captioner")
        made.append(_Captioner(name_or_path))
        return made[-1]

    module = types.ModuleType("gouache.vision.captioners")
    module.load_captioner = load_captioner
    monkeypatch.setitem(sys.modules, "gouache.vision.captioners", module)
    return made


def test_prints_caption_matches_then_the_prompt(run, clip_path, image_png, captioners):
    code, out, err = run("interrogate", image_png, "--clip", clip_path, "--captioner", "blip")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "caption: a picture seen by blip"
    for heading in ("mediums:", "movements:", "artists:", "flavours:"):
        assert heading in lines
    flavours = lines.index("flavours:")
    assert len([line for line in lines[flavours + 1:-1] if line.startswith("  ")]) == 3
    assert lines[-1].startswith("a picture seen by blip, ")
    assert captioners[0].closed


def test_no_captioner_installed_is_a_note(run, clip_path, image_png, captioners):
    code, out, err = run("interrogate", image_png, "--clip", clip_path)
    assert code == 0, err
    assert "gouache: note: no caption (the built-in captioner is not installed" in err
    assert not out.startswith("caption:")
    assert out.splitlines()[-1] and not out.splitlines()[-1].startswith(" ")


def test_captioner_none(run, clip_path, image_png, captioners):
    code, out, err = run("interrogate", image_png, "--clip", clip_path, "--captioner", "none")
    assert code == 0 and err == "" and captioners == []


@pytest.mark.parametrize("argv, message", [
    (["missing.png"], "gouache: error: IMAGE missing.png is not a file"),
    (["{image}", "--clip", "no-such-clip"], "gouache: error: unknown CLIP model 'no-such-clip'"),
    (["{image}", "--clip", "/no/such/folder"], "gouache: error: /no/such/folder: no such CLIP model"),
])
def test_errors_are_one_line(run, image_png, argv, message):
    code, out, err = run("interrogate", *[a.format(image=image_png) for a in argv])
    assert code == 1 and out == ""
    assert err.startswith(message) and err.count("\n") == 1


def test_no_builtin_clip(run, image_png, monkeypatch, tmp_path):
    monkeypatch.setattr("gouache.vision.folders.ModelFolders.builtin_dir", lambda self: tmp_path / "absent")
    code, _, err = run("interrogate", image_png)
    assert code == 1
    assert err.startswith("gouache: error: the built-in CLIP is not installed; pass --clip")


def test_a_named_captioner_without_the_captioners_module(run, clip_path, image_png, monkeypatch):
    monkeypatch.setitem(sys.modules, "gouache.vision.captioners", None)  # import fails
    code, out, err = run("interrogate", image_png, "--clip", clip_path, "--captioner", "blip")
    assert code == 1 and out == ""
    assert err == "gouache: error: captioners are not available in this gouache; pass --captioner none\n"


def test_a_named_captioner_that_fails_is_an_error(run, clip_path, image_png, captioners, monkeypatch):
    from gouache.errors import UnknownName

    def unknown(name_or_path=None, device="cpu"):
        raise UnknownName(f"unknown captioner {name_or_path!r}")

    monkeypatch.setattr(sys.modules["gouache.vision.captioners"], "load_captioner", unknown)
    code, out, err = run("interrogate", image_png, "--clip", clip_path, "--captioner", "blap")
    assert code == 1 and err == "gouache: error: unknown captioner 'blap'\n"


def test_with_a_real_captioner(run, clip_path, image_png, tmp_path):
    """A tiny random BLIP through gouache.vision.captioners: its caption leads the prompt."""
    blip = _vision_conftest().write_tiny_blip(tmp_path / "blip")
    code, out, err = run("interrogate", image_png, "--clip", clip_path, "--captioner", blip)
    assert code == 0, err
    lines = out.splitlines()
    caption = lines[0].removeprefix("caption: ")
    assert lines[0].startswith("caption: ") and caption
    assert lines[-1].startswith(caption + ", ")


def test_the_real_captioners_missing_builtin_is_a_note_in_the_commands_words(run, clip_path, image_png, monkeypatch,
                                                                              tmp_path):
    monkeypatch.setattr("gouache.vision.captioners.builtin_folder", lambda: tmp_path / "absent")
    code, out, err = run("interrogate", image_png, "--clip", clip_path)
    assert code == 0
    assert err.startswith("gouache: note: no caption (the built-in captioner gouache-tiny-captioner is not "
                          "installed; pass --captioner")
