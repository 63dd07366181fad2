"""Turn a folder of images into a training dataset (``gouache dataset prepare SRC DST``).

The result is a Hugging Face *imagefolder*: ``DST/00000.png``, ``DST/00001.png``, ... and
``DST/metadata.jsonl`` with one row per image::

    {"file_name": "00000.png", "text": "a tabby cat", "width": 512, "height": 512, "source": "cats/tabby.jpg"}

so gouache's trainers and ``datasets.load_dataset("imagefolder", data_dir=DST)`` both read it
(``text`` is the caption column; ``source`` is the image's path in SRC). Images are numbered in
the sorted order of their paths in SRC, so nested folders never give two images the same name.

Every image is read fully, turned upright by its EXIF orientation, made RGB (transparency
flattened onto white), then resized and centre-cropped to ``resolution`` × ``resolution``
(``mode="crop"``) or to the aspect-ratio bucket that fits it best (``mode="bucket"``, as
kohya-ss/sd-scripts' buckets). A file that cannot be read, is too small or has no caption is
reported in one line and skipped; the run goes on.

``overwrite`` replaces a dataset this function wrote, and nothing else: a DST that holds files but
no ``metadata.jsonl`` (nor the journal of an unfinished run), or files the table does not list, is
refused before anything is written, so a user's unrelated folder is never touched. While it runs,
a hidden journal (``.gouache-prepare.jsonl``) lists every file name it may write, so a run that
was stopped half-way can be run again with ``overwrite`` and cleans up after itself.

>>> prepare(PrepareConfig("photos", "data/cats", prefix="sks cat"))   # doctest: +SKIP
skipped broken.jpg: not a readable image
wrote 41 images to data/cats (skipped 1)
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gouache.errors import InvalidArgument, OutputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
MODES = ("crop", "bucket")
METADATA = "metadata.jsonl"
JOURNAL = ".gouache-prepare.jsonl"  # while a run goes: every file name it may have written
_TEMP = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")  # _write_atomically's temporary files


@dataclass
class PrepareConfig:
    """What ``prepare`` does. ``min_size`` None means half of ``resolution``: an image whose shorter
    side is smaller would be upscaled more than 2× and is skipped. ``caption`` is one of
    :data:`gouache.data.captions.CAPTION_SOURCES`, with ``captioner``, ``caption_prompt`` and
    ``recaption`` for a captioning model (:func:`gouache.data.captions.make_captioner`); ``prefix`` (a trigger word such as "sks dog")
    goes before every caption, followed by ", ", unless the caption already starts with it."""

    src: str
    dst: str
    resolution: int = 512
    mode: str = "crop"
    bucket_step: int = 64
    min_size: int | None = None
    caption: str = "auto"
    captioner: str | None = None  # a captioning model: a name in $GOUACHE_HOME/captioners or a folder
    caption_prompt: str | None = None  # the captioning model's prompt (its default if None)
    recaption: bool = False  # the model captions every image, even those with a sidecar or metadata caption
    rerank: str | None = None  # the CLIP picking the model's captions ("none": greedy; default: the built-in for the built-in)
    prefix: str = ""
    device: str = "cpu"
    overwrite: bool = False

    def validate(self) -> None:
        from gouache.data.captions import CAPTION_SOURCES

        if type(self.resolution) is not int or self.resolution < 8 or self.resolution % 8:
            raise InvalidArgument(f"`resolution` must be a positive multiple of 8 (e.g. 512), got {self.resolution!r}")
        if self.mode not in MODES:
            raise InvalidArgument(f"`mode` must be one of {', '.join(MODES)}, got {self.mode!r}")
        if type(self.bucket_step) is not int or self.bucket_step < 8 or self.bucket_step % 8 or self.bucket_step > self.resolution:
            raise InvalidArgument(f"`bucket_step` must be a multiple of 8 between 8 and the resolution ({self.resolution}), "
                                  f"got {self.bucket_step!r}; use 8 for small resolutions such as 64")
        if self.min_size is not None and (type(self.min_size) is not int or self.min_size < 1):
            raise InvalidArgument(f"`min_size` must be a whole number of pixels >= 1, got {self.min_size!r}")
        if self.rerank is not None and (not isinstance(self.rerank, str) or not self.rerank.strip()):
            raise InvalidArgument(f"`rerank` must name a CLIP model (or be \"none\" for greedy captions), got {self.rerank!r}")
        if self.caption not in CAPTION_SOURCES:
            raise InvalidArgument(f"`caption` must be one of {', '.join(CAPTION_SOURCES)}, got {self.caption!r}")

    @property
    def smallest(self) -> int:
        return self.resolution // 2 if self.min_size is None else self.min_size


@dataclass
class PrepareReport:
    """What a run did: images written, and each skipped file (path in SRC, reason)."""

    dst: Path
    written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    caption_sources: dict[str, int] = field(default_factory=dict)  # source name -> images it captioned

    @property
    def metadata(self) -> Path:
        return self.dst / METADATA


class SkipImage(Exception):
    """This file is left out of the dataset, for the reason in the message."""


# --------------------------------------------------------------------------------------------


def prepare(cfg: PrepareConfig, report: Callable[[str], None] = print,
            progress: Callable[[int, int], None] | None = None) -> PrepareReport:
    """Write the imagefolder dataset ``cfg.dst`` from the images under ``cfg.src``; see the module doc.

    ``report`` gets one line per skipped file and a last line ``wrote N images to DST (skipped M)``;
    ``progress(i, n)`` is called after each file. Nothing is written before the inputs, the output
    folder and the caption source are known to be good. Raises InvalidArgument when SRC holds no
    images or none could be used, OutputError when DST is not empty (and ``overwrite`` is False)
    or cannot be written.

    >>> r = prepare(PrepareConfig("photos", "data/cats", mode="bucket"), report=lambda line: None)  # doctest: +SKIP
    >>> r.written, r.skipped                                                                         # doctest: +SKIP
    (41, [('broken.jpg', 'not a readable image')])
    """
    from gouache.data.captions import MissingCaption, make_captioner

    # 1. Check inputs
    cfg.validate()
    src, dst = _check_folders(Path(cfg.src), Path(cfg.dst), cfg.overwrite)
    files = find_images(src)
    if not files:
        raise InvalidArgument(f"{src} holds no images ({', '.join(IMAGE_EXTENSIONS)}, in any sub-folder)")
    # 2. The caption source (loads the captioning model if asked for), before anything is written
    captioner = make_captioner(cfg.caption, src, cfg.captioner, cfg.device, cfg.caption_prompt, cfg.recaption,
                               cfg.rerank)
    buckets = make_buckets(cfg.resolution, cfg.bucket_step) if cfg.mode == "bucket" else [(cfg.resolution,) * 2]
    # 3. Claim the output folder: an earlier dataset's table goes first, so a run that stops
    #    half-way never leaves old captions paired with new images (its journal lists their files)
    stale = _claim_output(dst)
    # 4. Each image: read, caption, resize, write (its name in the journal first)
    out = PrepareReport(dst)
    rows = []
    for i, path in enumerate(files):
        name = path.relative_to(src).as_posix()
        try:
            image = load_rgb(path, cfg.smallest)
            caption, source = captioner(path, image)
            fitted, file_name = fit(image, buckets), f"{len(rows):05d}.png"
            _journal(dst, [file_name])
            row = _write_image(fitted, dst / file_name)
        except (SkipImage, MissingCaption) as why:
            out.skipped.append((name, str(why)))
            report(f"skipped {name}: {why}")
        else:
            rows.append({**row, "text": add_prefix(caption, cfg.prefix), "source": name})
            out.caption_sources[source] = out.caption_sources.get(source, 0) + 1
        if progress is not None:
            progress(i + 1, len(files))
    # 5. The table last, then the files only the old table listed
    if not rows:
        if not stale:
            (dst / JOURNAL).unlink(missing_ok=True)  # nothing written, nothing of an earlier run to remember
        raise InvalidArgument(f"no image in {src} could be used ({len(files)} skipped); see the lines above")
    _write_atomically(dst / METADATA, "".join(_jsonl(r) for r in rows).encode("utf-8"))
    _remove_stale(dst, stale - {r["file_name"] for r in rows})
    (dst / JOURNAL).unlink(missing_ok=True)
    out.written = len(rows)
    report("captions: " + ", ".join(f"{n} from {k}" for k, n in sorted(out.caption_sources.items())))
    report(f"wrote {out.written} images to {dst} (skipped {len(out.skipped)})")
    return out


def find_images(src: Path) -> list[Path]:
    """Image files under ``src`` (any depth, by extension, any case), sorted; hidden ones left out."""
    found = [p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    return sorted(p for p in found if not any(part.startswith(".") for part in p.relative_to(src).parts))


def load_rgb(path: Path, min_size: int = 1):
    """The image at ``path``, fully read, upright (EXIF orientation) and RGB with transparency on white.

    Raises SkipImage with a reason a user understands for a file that is not an image, is corrupt or
    truncated, or whose shorter side is under ``min_size``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    from gouache.images import flatten

    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
    except UnidentifiedImageError:
        raise SkipImage("not a readable image") from None
    except Image.DecompressionBombError:
        raise SkipImage("too many pixels to open safely (Pillow's decompression-bomb limit)") from None
    except (OSError, SyntaxError, ValueError) as err:  # truncated or corrupt data
        raise SkipImage(f"not a readable image ({err})") from None
    if min(image.size) < min_size:
        raise SkipImage(f"too small ({image.width}x{image.height}; the shorter side must be at least {min_size} px)")
    return flatten(image)


def make_buckets(resolution: int, step: int = 64) -> list[tuple[int, int]]:
    """Aspect-ratio buckets (width, height) for training at ``resolution``², as kohya-ss/sd-scripts'
    ``make_bucket_resolutions``: sides are multiples of ``step`` from half to twice the resolution
    and each bucket's area is at most ``resolution``².

    >>> buckets = make_buckets(512)
    >>> [b for b in buckets if b[0] >= 512]
    [(512, 512), (576, 448), (640, 384), (704, 320), (768, 320), (832, 256), (896, 256), (960, 256), (1024, 256)]
    """
    area, low, high = resolution * resolution, _round_up(resolution // 2, step), resolution * 2
    buckets = {(resolution // step * step,) * 2}
    for width in range(low, high + 1, step):
        height = min(high, area // width // step * step)
        if height >= low:
            buckets |= {(width, height), (height, width)}
    return sorted(buckets)


def _round_up(value: int, step: int) -> int:
    return max(step, -(-value // step) * step)


def choose_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest to ``width / height`` (kohya's ``BucketManager``).

    >>> choose_bucket(1600, 900, make_buckets(512))
    (640, 384)
    """
    ratio = width / height
    return min(buckets, key=lambda b: (abs(b[0] / b[1] - ratio), -b[0] * b[1]))


def fit(image, buckets: list[tuple[int, int]]):
    """``image`` resized to cover its bucket and centre-cropped to it (A1111's "Crop and resize")."""
    from gouache.images import resize_image

    return resize_image(1, image, *choose_bucket(*image.size, buckets))


def add_prefix(caption: str, prefix: str) -> str:
    """``prefix, caption``; the caption alone when there is no prefix or it already starts with it.

    >>> add_prefix("a dog on grass", "sks dog")
    'sks dog, a dog on grass'
    """
    prefix = prefix.strip()
    if not prefix or caption.startswith(prefix):
        return caption
    return f"{prefix}, {caption}"


# --------------------------------------------------------------------------------------------
# the output folder


def _check_folders(src: Path, dst: Path, overwrite: bool) -> tuple[Path, Path]:
    if not src.is_dir():
        raise InvalidArgument(f"SRC {src} is not a folder; give the folder that holds your images")
    s, d = src.resolve(), dst.resolve()
    if d == s or s in d.parents or d in s.parents:
        raise InvalidArgument(f"DST {dst} must be outside SRC {src} (and not hold it): gouache never writes into SRC")
    if d.exists() and not d.is_dir():
        raise OutputError(f"DST {dst} exists and is not a folder")
    if not d.is_dir() or not any(d.iterdir()):
        return src, dst
    if not overwrite:
        what = (f"a dataset ({METADATA})" if (d / METADATA).exists() else
                "an unfinished dataset" if (d / JOURNAL).exists() else "files")
        raise OutputError(f"DST {dst} already holds {what}; choose a new folder, or pass --overwrite to replace it")
    _check_replaceable(dst)
    return src, dst


def _check_replaceable(dst: Path) -> None:
    """``--overwrite`` replaces a dataset ``prepare`` wrote, never a folder of the user's own files."""
    if not (dst / METADATA).is_file() and not (dst / JOURNAL).is_file():
        raise OutputError(f"DST {dst} holds files but is not a dataset of `gouache dataset prepare` (it has no "
                          f"{METADATA}); --overwrite only replaces such a dataset: choose a new or empty folder")
    listed = _listed(dst)
    others = sorted(p.name + ("/" if p.is_dir() else "") for p in dst.iterdir() if not _is_own(p, listed))
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise OutputError(f"DST {dst} holds files `gouache dataset prepare` did not write ({shown}); --overwrite never "
                          f"deletes them: move them away or choose a new folder")


def _is_own(path: Path, listed: set[str]) -> bool:
    if path.name in (METADATA, JOURNAL):
        return path.is_file()
    return (path.name in listed or _TEMP.fullmatch(path.name) is not None) and path.is_file()


def _listed(dst: Path) -> set[str]:
    """The file names the table and the journal of ``dst`` list."""
    names = set()
    for table in (dst / METADATA, dst / JOURNAL):
        if not table.is_file():
            continue
        for line in table.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                name = json.loads(line).get("file_name")
            except (json.JSONDecodeError, AttributeError):
                continue
            if isinstance(name, str) and "/" not in name and "\\" not in name and name not in ("", ".", ".."):
                names.add(name)
    return names - {METADATA, JOURNAL}


def _claim_output(dst: Path) -> set[str]:
    """Create ``dst`` (checked writable); journal and remove an earlier table; return the files that
    belong to an earlier run (the table's, an unfinished run's, leftover temporary files)."""
    try:
        dst.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create DST {dst}: {err.strerror or type(err).__name__}") from None
    if not os.access(dst, os.W_OK | os.X_OK):
        raise OutputError(f"DST {dst} is not writable")
    earlier = _listed(dst)
    _journal(dst, sorted(earlier))  # before the table goes, so its files stay known as ours
    (dst / METADATA).unlink(missing_ok=True)
    return earlier | {p.name for p in dst.iterdir() if _TEMP.fullmatch(p.name) and p.is_file()}


def _journal(dst: Path, names: list[str]) -> None:
    try:
        with open(dst / JOURNAL, "a", encoding="utf-8") as file:
            file.write("".join(json.dumps({"file_name": n}) + "\n" for n in names))
            file.flush()
            os.fsync(file.fileno())
    except OSError as err:
        raise OutputError(f"cannot write {dst / JOURNAL}: {err.strerror or type(err).__name__}") from None


def _remove_stale(dst: Path, names: set[str]) -> None:
    for name in names:
        (dst / name).unlink(missing_ok=True)


def _write_image(image, path: Path) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    _write_atomically(path, buffer.getvalue())
    return {"file_name": path.name, "width": image.width, "height": image.height}


def _jsonl(row: dict) -> str:
    order = ("file_name", "text", "width", "height", "source")  # the same columns in every row
    return json.dumps({k: row[k] for k in order}, ensure_ascii=False) + "\n"


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a hidden temporary file beside ``path``, then rename it into place."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "xb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or type(err).__name__}") from None
    finally:
        temp.unlink(missing_ok=True)


__all__ = ["PrepareConfig", "PrepareReport", "SkipImage", "prepare", "find_images", "load_rgb", "make_buckets",
           "choose_bucket", "fit", "add_prefix"]
