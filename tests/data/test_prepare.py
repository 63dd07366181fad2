"""``prepare``: a folder of images in, an imagefolder dataset out; bad files reported and skipped."""

import json

import numpy as np
import pytest
from PIL import Image

from gouache.data.prepare import PrepareConfig, add_prefix, choose_bucket, make_buckets, prepare
from gouache.errors import InvalidArgument, OutputError


def noise(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture
def src(tmp_path):
    """Nested folders with jpg, png and webp, a transparent png, a corrupt, a truncated and a tiny file."""
    root = tmp_path / "src"
    (root / "cats" / "tabby").mkdir(parents=True)
    (root / "dogs").mkdir()
    noise(96, 64).save(root / "cats" / "tabby" / "tabby_cat_003.jpg")
    noise(64, 64).save(root / "dogs" / "brown-dog.webp")
    Image.new("RGBA", (80, 80), (255, 0, 0, 0)).save(root / "dogs" / "ghost.png")  # fully transparent red
    (root / "dogs" / "ghost.txt").write_text("a ghost\n")
    (root / "cats" / "broken.jpg").write_bytes(b"not an image at all")
    buf = root / "full.jpg"
    noise(64, 64, seed=1).save(buf, quality=95)
    (root / "cats" / "truncated.jpg").write_bytes(buf.read_bytes()[:600])
    buf.unlink()
    noise(16, 16).save(root / "tiny.png")
    return root


def rows_of(dst):
    return [json.loads(line) for line in (dst / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]


def run(src, dst, **kw):
    lines = []
    report = prepare(PrepareConfig(str(src), str(dst), **{"resolution": 64, **kw}), report=lines.append)
    return report, lines


def test_writes_an_imagefolder_and_skips_bad_files_one_line_each(src, tmp_path):
    dst = tmp_path / "dst"
    report, lines = run(src, dst)
    assert report.written == 3
    skipped = dict(report.skipped)
    assert sorted(skipped) == ["cats/broken.jpg", "cats/truncated.jpg", "tiny.png"]
    assert skipped["cats/broken.jpg"] == "not a readable image"
    assert skipped["cats/truncated.jpg"].startswith("not a readable image (")  # Pillow's "image file is truncated"
    assert skipped["tiny.png"] == "too small (16x16; the shorter side must be at least 32 px)"
    assert "skipped cats/broken.jpg: not a readable image" in lines
    assert lines[-1] == f"wrote 3 images to {dst} (skipped 3)"
    rows = rows_of(dst)
    assert [r["source"] for r in rows] == ["cats/tabby/tabby_cat_003.jpg", "dogs/brown-dog.webp", "dogs/ghost.png"]
    assert [r["file_name"] for r in rows] == ["00000.png", "00001.png", "00002.png"]
    assert [r["text"] for r in rows] == ["tabby cat", "brown dog", "a ghost"]
    assert all(set(r) == {"file_name", "text", "width", "height", "source"} for r in rows)
    for r in rows:
        with Image.open(dst / r["file_name"]) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "RGB", (64, 64))
    assert sorted(p.name for p in dst.iterdir()) == ["00000.png", "00001.png", "00002.png", "metadata.jsonl"]


def test_transparency_is_flattened_on_white(src, tmp_path):
    run(src, tmp_path / "dst")
    with Image.open(tmp_path / "dst" / "00002.png") as im:
        assert im.getpixel((10, 10)) == (255, 255, 255)


def test_crop_keeps_the_centre_at_the_exact_size(tmp_path):
    (tmp_path / "src").mkdir()
    bands = Image.new("RGB", (192, 64), "red")
    bands.paste((0, 255, 0), (64, 0, 128, 64))
    bands.paste((0, 0, 255), (128, 0, 192, 64))
    bands.save(tmp_path / "src" / "bands.png")
    run(tmp_path / "src", tmp_path / "dst")
    with Image.open(tmp_path / "dst" / "00000.png") as im:
        assert im.size == (64, 64)
        assert im.getpixel((2, 32)) == im.getpixel((61, 32)) == (0, 255, 0)


@pytest.mark.parametrize("size, bucket", [
    ((1000, 1000), (512, 512)), ((1600, 900), (640, 384)), ((900, 1600), (384, 640)),
    ((4000, 1000), (1024, 256)), ((600, 800), (448, 576)),
])
def test_bucket_has_the_closest_aspect_ratio(size, bucket):
    assert choose_bucket(*size, make_buckets(512)) == bucket


def test_buckets_are_kohyas_for_512():
    buckets = make_buckets(512)
    assert all(w % 64 == 0 and h % 64 == 0 and w * h <= 512 * 512 for w, h in buckets)
    assert min(min(b) for b in buckets) == 256 and max(max(b) for b in buckets) == 1024
    assert buckets == sorted({(h, w) for w, h in buckets})  # every bucket has its portrait twin


def test_bucket_mode_sizes_follow_the_aspect_ratio(tmp_path):
    (tmp_path / "src").mkdir()
    noise(128, 64).save(tmp_path / "src" / "wide.png")
    noise(64, 128).save(tmp_path / "src" / "tall.png")
    noise(80, 80).save(tmp_path / "src" / "square.png")
    run(tmp_path / "src", tmp_path / "dst", mode="bucket", bucket_step=8)
    sizes = {r["source"]: (r["width"], r["height"]) for r in rows_of(tmp_path / "dst")}
    assert sizes["square.png"] == (64, 64)
    assert sizes["wide.png"] == choose_bucket(128, 64, make_buckets(64, 8)) == (88, 40)
    assert sizes["tall.png"] == sizes["wide.png"][::-1]
    for r in rows_of(tmp_path / "dst"):
        with Image.open(tmp_path / "dst" / r["file_name"]) as im:
            assert im.size == (r["width"], r["height"])


def test_captions_from_sidecar_metadata_and_file_name(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("a.png", "b.png", "c_12.png", "sub/d.png", "sub/e.png"):
        noise(64, 64).save(src / name)
    (src / "a.caption").write_text("from the sidecar")
    (src / "metadata.csv").write_text("file_name,text\na.png,not used\nb.png,from the csv\n")
    (src / "sub" / "metadata.jsonl").write_text(json.dumps({"file_name": "d.png", "caption": "from the jsonl"}) + "\n")
    report, lines = run(src, tmp_path / "dst", prefix="sks")
    texts = {r["source"]: r["text"] for r in rows_of(tmp_path / "dst")}
    assert texts == {"a.png": "sks, from the sidecar", "b.png": "sks, from the csv", "c_12.png": "sks, c",
                     "sub/d.png": "sks, from the jsonl", "sub/e.png": "sks, e"}
    assert report.caption_sources == {"sidecar": 1, "metadata": 2, "filename": 2}


def test_explicit_source_skips_images_it_has_no_caption_for(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    noise(64, 64).save(src / "a.png")
    noise(64, 64).save(src / "b.png")
    (src / "a.txt").write_text("a sidecar caption")
    report, lines = run(src, tmp_path / "dst", caption="sidecar")
    assert report.written == 1
    assert lines[0] == "skipped b.png: no caption (no b.txt or b.caption beside it)"


@pytest.mark.parametrize("caption, prefix, expected", [
    ("a dog", "", "a dog"), ("a dog", "sks dog", "sks dog, a dog"), ("sks dog, a dog", "sks dog", "sks dog, a dog"),
])
def test_prefix(caption, prefix, expected):
    assert add_prefix(caption, prefix) == expected


def test_datasets_reads_the_result(src, tmp_path):
    datasets = pytest.importorskip("datasets")
    run(src, tmp_path / "dst")
    ds = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "dst"), split="train",
                               cache_dir=str(tmp_path / "cache"))
    assert ds["text"] == ["tabby cat", "brown dog", "a ghost"]
    assert ds[0]["image"].size == (64, 64)


def test_dst_with_a_dataset_needs_overwrite_which_replaces_it(src, tmp_path):
    dst = tmp_path / "dst"
    run(src, dst)
    with pytest.raises(OutputError, match=r"already holds a dataset \(metadata.jsonl\).*--overwrite"):
        run(src, dst)
    (src / "dogs" / "ghost.png").unlink()
    report, _ = run(src, dst, overwrite=True)
    assert report.written == 2
    assert sorted(p.name for p in dst.iterdir()) == ["00000.png", "00001.png", "metadata.jsonl"]  # 00002 went


@pytest.mark.parametrize("change, message", [
    ({"resolution": 60}, "`resolution` must be a positive multiple of 8"),
    ({"mode": "stretch"}, "`mode` must be one of crop, bucket"),
    ({"bucket_step": 12}, "`bucket_step` must be a multiple of 8"),
    ({"min_size": 0}, "`min_size` must be"),
    ({"caption": "llava"}, "`caption` must be one of auto, sidecar"),
])
def test_bad_settings_are_refused_before_any_work(src, tmp_path, change, message):
    with pytest.raises(InvalidArgument, match=message):
        run(src, tmp_path / "dst", **change)
    assert not (tmp_path / "dst").exists()


def test_never_writes_into_src(src):
    with pytest.raises(InvalidArgument, match="must be outside SRC"):
        run(src, src / "out")
    assert not (src / "out").exists()


def test_a_folder_without_usable_images_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgument, match="holds no images"):
        run(tmp_path / "empty", tmp_path / "dst")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"junk")
    with pytest.raises(InvalidArgument, match=r"no image in .* could be used \(1 skipped\)"):
        run(tmp_path / "bad", tmp_path / "dst")
    assert not (tmp_path / "dst" / "metadata.jsonl").exists()


def files_in(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_overwrite_refuses_a_folder_that_is_not_a_dataset(src, tmp_path, capsys):
    """`gouache dataset prepare SRC DST --overwrite` never deletes or replaces a user's own folder."""
    from gouache.cli import main

    mine = tmp_path / "photos-backup"
    (mine / "2019").mkdir(parents=True)
    noise(64, 64).save(mine / "00000.png")  # even one named as prepare names its images
    (mine / "notes.txt").write_text("do not lose")
    (mine / "2019" / "beach.png").write_bytes(b"png")
    before = files_in(mine)
    code = main(["dataset", "prepare", str(src), str(mine), "--resolution", "64", "--overwrite"])
    assert code == 1 and capsys.readouterr().err == (
        f"gouache: error: DST {mine} holds files but is not a dataset of `gouache dataset prepare` (it has no "
        "metadata.jsonl); --overwrite only replaces such a dataset: choose a new or empty folder\n")
    assert files_in(mine) == before


def test_overwrite_refuses_a_dataset_holding_files_it_did_not_write(src, tmp_path):
    dst = tmp_path / "dst"
    run(src, dst)
    (dst / "notes.txt").write_text("mine")
    (dst / "extra").mkdir()
    before = files_in(dst)
    with pytest.raises(OutputError, match=r"holds files `gouache dataset prepare` did not write \(extra/, notes.txt\); "
                                          r"--overwrite never deletes them"):
        run(src, dst, overwrite=True)
    assert files_in(dst) == before


def test_an_empty_folder_is_fine(src, tmp_path):
    (tmp_path / "empty").mkdir()
    report, _ = run(src, tmp_path / "empty", overwrite=True)
    assert report.written == 3


def test_overwrite_finishes_a_run_that_was_stopped_half_way(src, tmp_path):
    dst = tmp_path / "dst"
    run(src, dst)  # 00000-00002
    noise(64, 64, seed=7).save(src / "more.png")

    def stop_after_more_png(i, n):  # the 6th file, more.png, became 00003.png, listed by no table
        if i == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare(PrepareConfig(str(src), str(dst), resolution=64, overwrite=True), report=lambda s: None,
                progress=stop_after_more_png)
    assert not (dst / "metadata.jsonl").exists() and (dst / "00003.png").exists()
    (src / "more.png").unlink()
    (src / "dogs" / "ghost.png").unlink()
    report, _ = run(src, dst, overwrite=True)  # a stopped run's folder is still prepare's to replace
    assert report.written == 2
    assert sorted(p.name for p in dst.iterdir()) == ["00000.png", "00001.png", "metadata.jsonl"]
