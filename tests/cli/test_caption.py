"""``gouache caption``: JSON lines, --out, sidecars, resuming, bad images and one-line errors (tiny random BLIP)."""

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image


def _helpers():
    """tests/vision/conftest.py, which writes the tiny models (importlib mode keeps it off sys.path)."""
    spec = importlib.util.spec_from_file_location("vision_conftest", Path(__file__).parents[1] / "vision" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A $GOUACHE_HOME-style captioners folder with a tiny BLIP and a tiny LLaVA."""
    root = tmp_path_factory.mktemp("models")
    helpers = _helpers()
    return {"blip": helpers.write_tiny_blip(root / "blip"), "llava": helpers.write_tiny_llava(root / "llava")}


@pytest.fixture
def photos(tmp_path):
    (tmp_path / "photos" / "b").mkdir(parents=True)
    Image.new("RGB", (40, 30), "red").save(tmp_path / "photos" / "z.png")
    Image.new("RGBA", (32, 32), "blue").save(tmp_path / "photos" / "b" / "a.png")
    Image.new("RGB", (50, 50), "green").save(tmp_path / "photos" / "b" / "c.jpg")
    return tmp_path / "photos"


def _rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("family", ["blip", "llava"])
def test_json_lines_on_stdout(run, models, photos, family):
    code, out, err = run("caption", photos, "--model", models[family], "--max-new-tokens", 4, "--batch-size", 2)
    assert code == 0, err
    rows = _rows(out)
    assert [r["file"] for r in rows] == [str(photos / "b" / "a.png"), str(photos / "b" / "c.jpg"), str(photos / "z.png")]
    assert all(isinstance(r["caption"], str) and r["caption"] for r in rows)
    assert "captioned 3 images" in err


def test_names_come_from_gouache_home(run, models, photos, tmp_path, monkeypatch):
    monkeypatch.setenv("GOUACHE_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "captioners").mkdir(parents=True)
    (tmp_path / "home" / "captioners" / "blip").symlink_to(models["blip"], target_is_directory=True)
    code, out, err = run("caption", photos / "z.png", "--model", "blip", "--max-new-tokens", 3)
    assert code == 0, err
    assert [r["file"] for r in _rows(out)] == [str(photos / "z.png")]


def test_out_appends_and_resumes(run, models, photos, tmp_path):
    out_file = tmp_path / "captions.jsonl"
    code, out, err = run("caption", photos / "z.png", "--model", models["blip"], "--out", out_file)
    assert code == 0 and out == ""
    first = out_file.read_text()
    code, out, err = run("caption", photos, "--model", models["blip"], "--out", out_file)
    assert code == 0 and "captioned 2 images, 1 already done" in err
    rows = _rows(out_file.read_text())
    assert out_file.read_text().startswith(first) and len(rows) == 3
    assert sorted(r["file"] for r in rows) == sorted(str(p) for p in (photos / "z.png", photos / "b" / "a.png",
                                                                       photos / "b" / "c.jpg"))
    code, _, err = run("caption", photos, "--model", models["blip"], "--out", out_file)
    assert code == 0 and "all 3 images already captioned" in err and len(_rows(out_file.read_text())) == 3
    code, _, err = run("caption", photos, "--model", models["blip"], "--out", out_file, "--overwrite")
    assert code == 0 and len(_rows(out_file.read_text())) == 3


def test_a_line_cut_off_by_a_crash_is_captioned_again(run, models, photos, tmp_path):
    out_file = tmp_path / "captions.jsonl"
    out_file.write_text(json.dumps({"file": str(photos / "z.png"), "caption": "kept"}) + '\n{"file": "cut')
    code, _, err = run("caption", photos, "--model", models["blip"], "--out", out_file)
    assert code == 0, err
    lines = out_file.read_text().splitlines()
    assert lines[1] == '{"file": "cut' and len(_rows("\n".join(lines[:1] + lines[2:]))) == 3


def test_sidecars_never_replace_without_overwrite(run, models, photos):
    (photos / "b" / "a.txt").write_text("my own caption\n")
    code, out, err = run("caption", photos, "--model", models["blip"], "--sidecar")
    assert code == 0 and out == "" and "captioned 2 images, 1 already done" in err
    assert (photos / "b" / "a.txt").read_text() == "my own caption\n"
    assert (photos / "z.txt").read_text().strip() and (photos / "b" / "c.txt").read_text().strip()
    code, _, err = run("caption", photos, "--model", models["blip"], "--sidecar")
    assert code == 0 and "all 3 images already captioned" in err
    code, _, err = run("caption", photos, "--model", models["blip"], "--sidecar", "--overwrite")
    assert code == 0 and (photos / "b" / "a.txt").read_text() != "my own caption\n"
    assert not list(photos.rglob(".*.tmp"))


def test_a_bad_image_is_one_line_and_the_rest_are_captioned(run, models, photos):
    (photos / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    code, out, err = run("caption", photos, "--model", models["blip"], "--batch-size", 2)
    assert code == 1
    assert [r["file"] for r in _rows(out)] == [str(photos / "b" / "a.png"), str(photos / "b" / "c.jpg"),
                                               str(photos / "z.png")]
    bad = [line for line in err.splitlines() if "broken.png" in line]
    assert bad == [f"gouache caption: skipped {photos / 'b' / 'broken.png'}: not a readable image"]
    assert "captioned 3 images; 1 could not be read" in err


@pytest.mark.parametrize("argv, message", [
    (["{photos}/missing.png", "--model", "{blip}"], "{photos}/missing.png does not exist"),
    (["{photos}", "--model", "no-such-captioner"], "unknown captioner 'no-such-captioner'"),
    (["{photos}", "--model", "{photos}/b"], "{photos}/b is not a captioning model (no config.json)"),
    (["{photos}", "--model", "{photos}/nowhere/model"], "no such captioner file or folder"),
    (["{photos}", "--model", "{blip}", "--max-new-tokens", "0"], "--max-new-tokens must be between 1 and 1024"),
    (["{photos}", "--model", "{blip}", "--batch-size", "0"], "--batch-size must be between 1 and 256"),
    (["{photos}", "--model", "{blip}", "--out", "{photos}/no/dir/c.jsonl"], "not a file in an existing folder"),
])
def test_errors_are_one_line(run, models, photos, argv, message):
    fill = {"photos": photos, "blip": models["blip"]}
    code, out, err = run("caption", *[a.format(**fill) for a in argv])
    assert code == 1 and out == ""
    assert err.startswith("gouache: error: ") and err.count("\n") == 1, err
    assert message.format(**fill) in err
    assert not list(photos.rglob("*.txt")) and not list(photos.rglob("*.jsonl"))


def test_without_a_model_the_builtin_is_missing_for_now(run, photos, monkeypatch, tmp_path):
    monkeypatch.setattr("gouache.vision.captioners.builtin_folder", lambda: tmp_path / "none")
    code, _, err = run("caption", photos)
    assert code == 1 and "the built-in captioner gouache-tiny-captioner is not installed; pass --model" in err


def test_out_and_sidecar_exclude_each_other(run, photos, capsys):
    with pytest.raises(SystemExit) as e:
        run("caption", photos, "--out", "x.jsonl", "--sidecar")
    assert e.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_the_built_in_captioner_s_candidates_are_picked_by_the_built_in_clip(run, tmp_path):
    """A held-out generation (a purple triangle) that greedy decoding names wrong: by default the
    built-in CLIP picks among the built-in captioner's beam candidates and gets it; `--rerank none`
    is greedy decoding alone."""
    import gouache
    from gouache.vision.captioners import rerank_clip

    path = tmp_path / "triangle.png"
    gouache.txt2img("a purple triangle on a yellow background", seed=3)[0].image.save(path)
    code, out, err = run("caption", path)
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["caption"] == "a purple triangle on a yellow background"
    code, out, err = run("caption", path, "--rerank", "none")
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["caption"] == "a blue triangle on a yellow background"
    assert rerank_clip(None, None) == "gouache-tiny-clip" and rerank_clip("blip", None) is None
    assert rerank_clip("blip", "my-clip") == "my-clip" and rerank_clip(None, "None") is None
