"""``gouache dataset prepare``: exit codes, report lines and one-line errors."""

import json

import pytest
from PIL import Image


@pytest.fixture
def src(tmp_path):
    (tmp_path / "src" / "pets").mkdir(parents=True)
    Image.new("RGB", (96, 64), "red").save(tmp_path / "src" / "pets" / "red_cat_01.jpg")
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(tmp_path / "src" / "pets" / "clear-dog.png")
    (tmp_path / "src" / "pets" / "broken.webp").write_bytes(b"RIFF....WEBP")
    return tmp_path / "src"


def test_prepare_writes_the_dataset_and_reports(run, src, tmp_path):
    dst = tmp_path / "dst"
    code, out, err = run("dataset", "prepare", src, dst, "--resolution", 64, "--prefix", "sks")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "skipped pets/broken.webp: not a readable image"
    assert lines[-1] == f"wrote 2 images to {dst} (skipped 1)"
    rows = [json.loads(x) for x in (dst / "metadata.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["sks, clear dog", "sks, red cat"]
    assert all((r["width"], r["height"]) == (64, 64) for r in rows)


def test_bucket_mode(run, src, tmp_path):
    code, _, err = run("dataset", "prepare", src, tmp_path / "dst", "--resolution", 64, "--mode", "bucket",
                       "--bucket-step", 8)
    assert code == 0, err
    rows = [json.loads(x) for x in (tmp_path / "dst" / "metadata.jsonl").read_text().splitlines()]
    assert {r["source"]: (r["width"], r["height"]) for r in rows} == {"pets/clear-dog.png": (64, 64),
                                                                      "pets/red_cat_01.jpg": (80, 48)}


@pytest.mark.parametrize("argv, message", [
    (["{tmp}/missing", "{tmp}/dst"], "SRC {tmp}/missing is not a folder"),
    (["{src}", "{src}/out"], "must be outside SRC"),
    (["{src}", "{tmp}/dst", "--caption", "blip"], "no BLIP captioning model: pass --blip FOLDER"),
    (["{src}", "{tmp}/dst", "--blip", "{tmp}/nowhere"], "{tmp}/nowhere: no such captioner file or folder"),
    (["{src}", "{tmp}/dst", "--captioner", "nope"], "unknown captioner 'nope'"),
    (["{src}", "{tmp}/dst", "--caption", "filename", "--recaption"], "--recaption has a captioning model caption"),
    (["{src}", "{tmp}/dst", "--resolution", "60"], "--resolution must be a positive multiple of 8"),
    (["{src}", "{tmp}/dst", "--caption", "metadata"], "'metadata' needs a metadata.jsonl or metadata.csv"),
    (["{tmp}/empty", "{tmp}/dst"], "holds no images"),
])
def test_errors_are_one_line(run, src, tmp_path, argv, message):
    (tmp_path / "empty").mkdir()
    fill = {"tmp": tmp_path, "src": src}
    code, out, err = run("dataset", "prepare", *[a.format(**fill) for a in argv])
    assert code == 1
    assert err.startswith("gouache: error: ") and err.count("\n") == 1
    assert message.format(**fill) in err
    assert not (tmp_path / "dst").exists() and not (src / "out").exists()


def test_existing_dataset_needs_overwrite(run, src, tmp_path):
    dst = tmp_path / "dst"
    assert run("dataset", "prepare", src, dst, "--resolution", 64)[0] == 0
    before = (dst / "metadata.jsonl").read_text()
    code, _, err = run("dataset", "prepare", src, dst, "--resolution", 64, "--prefix", "new")
    assert code == 1 and "already holds a dataset (metadata.jsonl)" in err and "--overwrite" in err
    assert (dst / "metadata.jsonl").read_text() == before
    code, out, _ = run("dataset", "prepare", src, dst, "--resolution", 64, "--prefix", "new", "--overwrite")
    assert code == 0 and '"text": "new, red cat"' in (dst / "metadata.jsonl").read_text()


def test_usage_errors(run, src, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run("dataset", "prepare", src, tmp_path / "dst", "--mode", "stretch")
    err = capsys.readouterr().err
    assert e.value.code == 2 and "invalid choice: 'stretch'" in err and len(err.strip().splitlines()) == 1
    assert run("dataset")[0] == 2


def test_captioner_blip_alias_and_recaption(run, src, tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("vision_conftest", Path(__file__).parents[1] / "vision" / "conftest.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    model = helpers.write_tiny_llava(tmp_path / "llava")
    (src / "pets" / "red_cat_01.txt").write_text("my own caption")
    for n, flags in enumerate([["--captioner", model], ["--blip", model], ["--captioner", model, "--recaption",
                                                                             "--caption-prompt", "describe this"]]):
        dst = tmp_path / f"dst{n}"
        code, out, err = run("dataset", "prepare", src, dst, "--resolution", 64, *flags)
        assert code == 0, err
        texts = [json.loads(x)["text"] for x in (dst / "metadata.jsonl").read_text().splitlines()]
        assert len(texts) == 2 and all(texts) and ("my own caption" in texts) == (n < 2)
        assert ("captions: 2 from captioner" if n == 2 else "1 from captioner, 1 from sidecar") in out
