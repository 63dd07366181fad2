"""Where a training image's caption comes from: a sidecar file, a metadata table, the file name, or a model.

The sources follow the conventions of the tools people prepare data with:

- **sidecar** — ``cat.txt`` or ``cat.caption`` next to ``cat.jpg`` (kohya-ss/sd-scripts); as kohya
  does, its first line is the caption (here the first non-empty one).
- **metadata** — ``metadata.jsonl`` or ``metadata.csv`` anywhere in the source folder (the Hugging
  Face imagefolder convention): a ``file_name`` column relative to the table's folder and the
  caption in a ``text`` or ``caption`` column.
- **filename** — ``golden_retriever_003.jpg`` → "golden retriever": ``_`` and ``-`` become spaces
  and a trailing number is dropped; a name that is only a number takes its folder's name.
- **captioner** — a captioning model of :mod:`gouache.vision.captioners` (BLIP, BLIP-2, LLaVA, ...),
  read from a local folder, never downloaded; **blip** is its older name, whose default model is
  ``$GOUACHE_HOME/captioners/blip``.

``auto`` tries sidecar, then metadata, then the file name; when a captioning model is named, the
model takes the file name's place (and with ``recaption`` it captions every image).

>>> captioner = make_captioner("auto", Path("photos"))          # doctest: +SKIP
>>> captioner(Path("photos/cats/tabby_cat_01.jpg"), image)      # doctest: +SKIP
('tabby cat', 'filename')
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Callable

from gouache.errors import InvalidArgument, ModelLoadError, UnknownName

CAPTION_SOURCES = ("auto", "sidecar", "filename", "metadata", "blip", "captioner")
MODEL_SOURCES = ("captioner", "blip")  # the sources that load a captioning model
SIDECAR_EXTENSIONS = (".txt", ".caption")
METADATA_FILES = ("metadata.jsonl", "metadata.csv")
CAPTION_COLUMNS = ("text", "caption")
_RE_TRAILING_NUMBER = re.compile(r"(?:[\s_\-]+(?:\(\d+\)|\d+))+$")  # "_003", " (2)", "-01_2"
_RE_SEPARATORS = re.compile(r"[\s_\-]+")


class MissingCaption(Exception):
    """An image has no caption from the chosen source; the run skips it with this reason."""


# --------------------------------------------------------------------------------------------
# the sources, each a plain function


def sidecar_caption(image_path: Path) -> str | None:
    """The first non-empty line of ``<stem>.txt`` (else ``<stem>.caption``) beside the image, or None.

    >>> sidecar_caption(Path("photos/cat.jpg"))   # photos/cat.txt holds "a tabby cat\\n"  # doctest: +SKIP
    'a tabby cat'

    Raises MissingCaption when the file exists but is not UTF-8 text.
    """
    for ext in SIDECAR_EXTENSIONS:
        path = image_path.with_suffix(ext)
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise MissingCaption(f"caption file {path.name} is not UTF-8 text") from None
        except OSError as err:
            raise MissingCaption(f"caption file {path.name} cannot be read: {err.strerror}") from None
        line = next((line.strip() for line in text.splitlines() if line.strip()), "")
        if line:
            return line
    return None


def filename_caption(image_path: Path, root: Path | None = None) -> str:
    """Words from the file name: ``_``/``-`` as spaces, a trailing number dropped; "" if none are left.

    A name that is only a number (``0001.jpg``) takes its folder's name, as kohya's folder captions,
    unless that folder is ``root`` (the source folder itself says nothing about the image).

    >>> filename_caption(Path("dogs/golden_retriever_003.jpg"))
    'golden retriever'
    >>> filename_caption(Path("red-fox (2).png"))
    'red fox'
    >>> filename_caption(Path("tabby cats/0001.webp"))
    'tabby cats'
    """
    names = [image_path.stem] if root is not None and image_path.parent == root else [image_path.stem, image_path.parent.name]
    for name in names:
        words = _words(name)
        if words:
            return words
    return ""


def _words(name: str) -> str:
    if name.isdigit():
        return ""
    return _RE_SEPARATORS.sub(" ", _RE_TRAILING_NUMBER.sub("", name)).strip()


def read_metadata_captions(src: Path) -> dict[str, str]:
    """Captions from every ``metadata.jsonl`` / ``metadata.csv`` under ``src``, keyed by the image's
    path relative to ``src`` (with ``/``). Hugging Face imagefolder's layout: ``file_name`` is
    relative to the table's own folder; the caption is in ``text`` (or ``caption``).

    >>> read_metadata_captions(Path("photos"))    # photos/metadata.csv: file_name,text / cat.jpg,a cat  # doctest: +SKIP
    {'cat.jpg': 'a cat'}

    Raises InvalidArgument, naming the file and line, for a table gouache cannot read.
    """
    captions: dict[str, str] = {}
    for table in sorted(p for name in METADATA_FILES for p in src.rglob(name) if p.is_file()):
        folder = table.parent.relative_to(src)
        for row in _read_rows(table):
            key = (folder / str(row["file_name"])).as_posix()
            captions[key.removeprefix("./")] = row["caption"]
    return captions


def _read_rows(table: Path) -> list[dict[str, str]]:
    try:
        if table.suffix == ".jsonl":
            lines = table.read_text(encoding="utf-8-sig").splitlines()
            records = []
            for n, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    records.append((n, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise InvalidArgument(f"{table} line {n} is not JSON: {err.msg}") from None
        else:
            with open(table, newline="", encoding="utf-8-sig") as file:
                records = [(n, row) for n, row in enumerate(csv.DictReader(file), 2)]
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidArgument(f"{table} cannot be read as UTF-8 text: {err}") from None
    rows = []
    for n, record in records:
        if not isinstance(record, dict) or not record.get("file_name"):
            raise InvalidArgument(f"{table} line {n} has no file_name; each row needs file_name and text")
        column = next((c for c in CAPTION_COLUMNS if c in record), None)
        if column is None:
            raise InvalidArgument(f"{table} line {n} has no caption; put it in a `text` or `caption` column")
        caption = str(record[column] or "").strip()
        rows.append({"file_name": record["file_name"], "caption": caption})
    return rows


# --------------------------------------------------------------------------------------------
# a captioning model


def default_blip_path() -> Path:
    """The model source ``blip`` uses when none is named: ``$GOUACHE_HOME/captioners/blip``."""
    from gouache.vision.captioners import captioners_dir

    return captioners_dir() / "blip"


class ModelCaptioner:
    """``captioner(image) -> str`` with a captioning model of :mod:`gouache.vision.captioners` (BLIP,
    BLIP-2, LLaVA, ...), loaded offline from a name in ``$GOUACHE_HOME/captioners``, a folder, or
    (None) the built-in; ``prompt`` is passed to every caption. gouache's tests run it only on tiny
    models with random weights (captions are then gibberish): they check that the pipeline works
    offline, not how good real captions are.

    >>> blip = ModelCaptioner("models/blip-image-captioning-base")   # doctest: +SKIP
    >>> blip(Image.open("cat.jpg"))                                   # doctest: +SKIP
    'a cat sitting on a couch'

    Raises UnknownName or ModelLoadError when the model cannot be found or loaded.
    """

    def __init__(self, name_or_path: str | os.PathLike | None = None, device: str = "cpu",
                 prompt: str | None = None, max_new_tokens: int = 40, rerank: str | os.PathLike | None = None):
        from gouache.vision.captioners import load_captioner

        self.model = load_captioner(name_or_path, device=device)
        self.clip = None
        if rerank is not None:  # the CLIP that picks each caption from the beam candidates (gouache caption --rerank)
            from gouache.vision.clip import load_clip

            try:
                self.clip = load_clip(rerank, device)
            except BaseException:
                self.model.close()
                raise
        self.prompt, self.max_new_tokens = prompt, max_new_tokens

    def __call__(self, image) -> str:
        return self.model.caption([image], self.prompt, self.max_new_tokens, rerank=self.clip)[0]

    def close(self) -> None:
        self.model.close()
        if self.clip is not None:
            self.clip.close()


# --------------------------------------------------------------------------------------------
# one run's caption source


class Captioner:
    """``captioner(image_path, image) -> (caption, source name)`` for one source folder.

    Raises MissingCaption (the image is skipped) when no source in its order has a caption.
    Build it with :func:`make_captioner`, which checks the source before any image is touched.
    """

    def __init__(self, order: tuple[str, ...], src: Path, metadata: dict[str, str] | None = None,
                 model: Callable | None = None):
        self.order, self.src, self.metadata, self.model = order, src, metadata or {}, model

    def __call__(self, image_path: Path, image) -> tuple[str, str]:
        for source in self.order:
            caption = self._from(source, image_path, image)
            if caption:
                return caption, source
        raise MissingCaption(self._why_none(image_path))

    def _from(self, source: str, image_path: Path, image) -> str | None:
        if source == "sidecar":
            return sidecar_caption(image_path)
        if source == "metadata":
            return self.metadata.get(image_path.relative_to(self.src).as_posix())
        if source == "filename":
            return filename_caption(image_path, self.src)
        return self.model(image)

    def _why_none(self, image_path: Path) -> str:
        if self.order == ("sidecar",):
            return f"no caption (no {image_path.stem}.txt or {image_path.stem}.caption beside it)"
        if self.order == ("metadata",):
            return "no caption (not listed in metadata.jsonl / metadata.csv, or its text is empty)"
        if self.order[-1] in MODEL_SOURCES:
            return "no caption (the captioning model returned an empty one)"
        return "no caption (no sidecar or metadata caption, and the file name has no words)"


def make_captioner(source: str, src: Path, model: str | os.PathLike | None = None, device: str = "cpu",
                   prompt: str | None = None, recaption: bool = False, rerank: str | None = None) -> Captioner:
    """The caption source named ``source`` (one of CAPTION_SOURCES) for images under ``src``.

    Everything it needs is checked and loaded here, so a missing source fails before any work:
    ``metadata`` needs a metadata table under ``src``; ``captioner`` loads ``model`` (a name in
    ``$GOUACHE_HOME/captioners`` or a folder; none: the built-in), ``blip`` the same with
    :func:`default_blip_path` as its default. With ``auto``, a ``model`` replaces the file name as the
    last resort; ``recaption`` has the model caption every image, sidecar and metadata captions aside.
    ``prompt`` goes to the model (:meth:`gouache.vision.captioners.Captioner.caption`); ``rerank`` names
    the CLIP that picks each caption from its beam candidates, as ``gouache caption --rerank`` does
    (:func:`gouache.vision.captioners.rerank_clip`: by default the built-in CLIP for the built-in
    captioner, greedy decoding for any other; ``"none"``: greedy).

    >>> make_captioner("blip", Path("photos"))      # no $GOUACHE_HOME/captioners/blip  # doctest: +SKIP
    ModelLoadError: no BLIP captioning model: ...
    """
    if source not in CAPTION_SOURCES:
        raise UnknownName(f"unknown caption source {source!r}; choose one of {', '.join(CAPTION_SOURCES)}")
    if recaption and source not in ("auto", *MODEL_SOURCES):
        raise InvalidArgument(f"`recaption` has a captioning model caption every image; it cannot go with caption "
                              f"source {source!r} (use auto, captioner or blip)")
    metadata = read_metadata_captions(src) if source == "metadata" or (source == "auto" and not recaption) else {}
    if source == "metadata" and not metadata:
        raise InvalidArgument(f"caption source 'metadata' needs a metadata.jsonl or metadata.csv in {src} "
                              "with file_name and text columns")
    if source == "auto" and recaption:
        source = "captioner"
    loaded = None
    if source in MODEL_SOURCES or (source == "auto" and model is not None):
        if source == "blip" and model is None:
            model = _default_blip()
        from gouache.vision.captioners import rerank_clip

        loaded = ModelCaptioner(model, device=device, prompt=prompt, rerank=rerank_clip(model, rerank))
    order = {"auto": ("sidecar", "metadata", "captioner" if loaded else "filename")}.get(source, (source,))
    return Captioner(order, src, metadata, loaded)


def _default_blip() -> Path:
    path = default_blip_path()
    if not path.is_dir():
        raise ModelLoadError(f"no BLIP captioning model: pass --blip FOLDER, or put one in {path} (e.g. a download "
                             "of Salesforce/blip-image-captioning-base), or name another model with --captioner")
    return path
