"""PNG files with infotext: what is on disk, what other tools read, and what never gets lost."""

import errno
import os
import re

import pytest
from PIL import Image

from gouache.errors import InvalidArgument, OutputError
from gouache.metadata import png
from gouache.metadata.infotext import format_infotext, parse_infotext
from gouache.metadata.png import next_image_path, read_infotext, save_png

INFOTEXT = format_infotext(
    "a red circle, (masterpiece:1.2), <lora:shapes:0.8>",
    "blurry, lowres",
    {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7.5, "Seed": 1234, "Size": (16, 16)},
)


@pytest.fixture
def image():
    return Image.new("RGB", (16, 16), (220, 30, 30))


@pytest.mark.parametrize(
    "text, chunk",
    [
        (INFOTEXT, b"tEXt"),
        ("café crème, ünïcode in Latin-1\nSteps: 1, Seed: 2, CFG scale: 3", b"tEXt"),
        ("日本語のプロンプト, 🎨\nNegative prompt: ぼやけた\nSteps: 1, Seed: 2, CFG scale: 3", b"iTXt"),
    ],
)
def test_saved_text_reads_back_unchanged(tmp_path, image, text, chunk):
    path = save_png(image, tmp_path / "out.png", text)
    assert path == tmp_path / "out.png"
    assert read_infotext(path) == text
    assert chunk + b"parameters" in path.read_bytes()
    with Image.open(path) as saved:
        assert saved.getpixel((3, 3)) == (220, 30, 30)


def test_sd_parsers_reads_what_we_save(tmp_path, image):
    from sd_parsers import ParserManager

    info = ParserManager().parse(save_png(image, tmp_path / "out.png", INFOTEXT))
    sampler = info.samplers[0]
    assert info.full_prompt == "a red circle, (masterpiece:1.2), <lora:shapes:0.8>"
    assert info.full_negative_prompt == "blurry, lowres"
    assert sampler.name == "Euler a"
    assert sampler.parameters["seed"] == "1234"
    assert sampler.parameters["steps"] == "20"
    assert sampler.parameters["cfg_scale"] == "7.5"


def test_file_gets_ordinary_permissions(tmp_path, image):
    umask = os.umask(0)
    os.umask(umask)
    path = save_png(image, tmp_path / "out.png", INFOTEXT)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_existing_file_is_not_overwritten(tmp_path, image):
    path = tmp_path / "out.png"
    path.write_bytes(b"original")
    with pytest.raises(OutputError, match=re.escape(f"{path} exists; pass a new name or overwrite=True")):
        save_png(image, path, INFOTEXT)
    assert path.read_bytes() == b"original"
    assert os.listdir(tmp_path) == ["out.png"]


def test_overwrite_true_replaces(tmp_path, image):
    path = tmp_path / "out.png"
    path.write_bytes(b"original")
    save_png(image, path, INFOTEXT, overwrite=True)
    assert read_infotext(path) == INFOTEXT


def test_file_appearing_during_save_is_not_overwritten(tmp_path, image, monkeypatch):
    path = tmp_path / "out.png"
    encode = png._encode_png

    def encode_while_another_job_saves(*args):
        path.write_bytes(b"other job")  # lands between the exists() check and the rename
        return encode(*args)

    monkeypatch.setattr(png, "_encode_png", encode_while_another_job_saves)
    with pytest.raises(OutputError, match="exists"):
        save_png(image, path, INFOTEXT)
    assert path.read_bytes() == b"other job"
    assert os.listdir(tmp_path) == ["out.png"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_failed_write_leaves_no_temp_file_and_keeps_original(tmp_path, image, monkeypatch, overwrite):
    (tmp_path / "keep.png").write_bytes(b"original")
    target = tmp_path / ("keep.png" if overwrite else "new.png")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(png.os, "fsync", disk_full)
    with pytest.raises(OutputError) as caught:
        save_png(image, target, INFOTEXT, overwrite=overwrite)
    assert str(caught.value) == f"cannot write {target}: No space left on device"
    assert os.listdir(tmp_path) == ["keep.png"]
    assert (tmp_path / "keep.png").read_bytes() == b"original"


def test_unwritable_folder_is_one_clear_line(tmp_path, image):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutputError) as caught:
        save_png(image, tmp_path / "file" / "out.png", INFOTEXT)
    message = str(caught.value)
    assert message.startswith(f"cannot create folder {tmp_path / 'file'}: ")
    assert "\n" not in message and "Errno" not in message


def test_missing_folders_are_created(tmp_path, image):
    path = save_png(image, tmp_path / "a" / "b" / "out.png", INFOTEXT)
    assert read_infotext(path) == INFOTEXT


@pytest.mark.parametrize(
    "image, name, message",
    [
        ("not an image", "out.png", "`image` must be a PIL.Image.Image, got str"),
        (Image.new("RGB", (4, 4)), "out.jpg", "`path` must end in .png, got"),
        (Image.new("CMYK", (4, 4)), "out.png", "`image` (mode 'CMYK') cannot be saved as PNG"),
    ],
)
def test_bad_save_arguments(tmp_path, image, name, message):
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        save_png(image, tmp_path / name, INFOTEXT)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "existing, expected",
    [
        ([], "00000-7.png"),
        (["00000-1.png", "00001-2.png"], "00002-7.png"),
        (["00005-1.png", "00002-1.png"], "00006-7.png"),  # after the highest, gaps stay gaps
        (["00009.png", "00003-5.jpg"], "00010-7.png"),
        (["notes.txt", "12abc-1.png", "grid-0001.png", "-3.png"], "00000-7.png"),
        (["123456-9.png"], "123457-7.png"),
    ],
)
def test_next_image_path_skips_existing_numbers(tmp_path, existing, expected):
    for name in existing:
        (tmp_path / name).write_bytes(b"")
    assert next_image_path(tmp_path, seed=7) == tmp_path / expected


def test_next_image_path_creates_folder_and_names_by_seed(tmp_path):
    path = next_image_path(tmp_path / "outputs" / "txt2img", seed=4242, ext="webp")
    assert path == tmp_path / "outputs" / "txt2img" / "00000-4242.webp"
    assert path.parent.is_dir()


def test_next_image_path_then_save_never_clobbers(tmp_path, image):
    paths = [save_png(image, next_image_path(tmp_path, seed=s), f"seed {s}") for s in (5, 5, 9)]
    assert [p.name for p in paths] == ["00000-5.png", "00001-5.png", "00002-9.png"]
    assert [read_infotext(p) for p in paths] == ["seed 5", "seed 5", "seed 9"]


@pytest.mark.parametrize(
    "seed, ext, error, message",
    [
        (-1, "png", InvalidArgument, "`seed` must be a whole number >= 0 (the seed used), got -1"),
        (1.5, "png", InvalidArgument, "`seed` must be a whole number >= 0 (the seed used), got 1.5"),
        (1, ".png", InvalidArgument, "`ext` must be letters or digits without a dot, like 'png', got '.png'"),
    ],
)
def test_next_image_path_bad_arguments(tmp_path, seed, ext, error, message):
    with pytest.raises(error, match=re.escape(message)):
        next_image_path(tmp_path, seed=seed, ext=ext)


def test_next_image_path_folder_that_cannot_be_made(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutputError, match=re.escape(f"cannot create folder {tmp_path / 'file'}")):
        next_image_path(tmp_path / "file", seed=1)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_read_infotext_from_exif_user_comment(tmp_path, image, fmt):
    # How A1111 stores it: piexif UserComment, "UNICODE\0" header then UTF-16 big-endian.
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + INFOTEXT.encode("utf-16-be")
    path = tmp_path / f"out.{fmt.lower()}"
    image.save(path, format=fmt, exif=exif)
    assert read_infotext(path) == INFOTEXT
    assert parse_infotext(read_infotext(path)).seed == 1234


def test_read_infotext_none_when_image_has_none(tmp_path, image):
    image.save(tmp_path / "plain.png")
    assert read_infotext(tmp_path / "plain.png") is None


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.png", None, "is not a file; pass the path of a saved image"),
        ("notes.png", b"just some text", "is not an image (Pillow cannot identify it)"),
        ("folder", "dir", "is not a file"),
    ],
)
def test_read_infotext_bad_path(tmp_path, name, content, message):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(InvalidArgument, match=re.escape(f"`path` {path} {message}")):
        read_infotext(path)
