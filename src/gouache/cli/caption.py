"""``gouache caption IMAGES…``: a caption for each image, from a local captioning model.

Captions go to stdout as JSON lines ``{"file": ..., "caption": ...}``, or are appended to ``--out``
(one line written, flushed and synced at a time, so a run stopped half-way loses nothing), or are
written as ``NAME.txt`` sidecars beside the images (kohya's convention, which ``gouache dataset
prepare`` reads). Runs resume: images already in ``--out``, or that already have a sidecar, are
skipped. An image that cannot be read is one line on stderr and the run goes on; the exit code is
then 1 (0 when every image was captioned).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

FIELD_FLAGS = {"name_or_path": "--model", "max_new_tokens": "--max-new-tokens", "batch_size": "--batch-size"}
MAX_BATCH = 256


def register(sub) -> None:
    p = sub.add_parser(
        "caption", help="describe images in words with a local captioning model (BLIP, BLIP-2, LLaVA, ...)",
        description="Caption each image (folders: their images at any depth, sorted) with a local image-to-text "
                    "model. Prints one JSON line per image, or appends them to --out, or writes NAME.txt sidecars. "
                    "Finished images are skipped when a run is repeated. Exit code 1 if any image could not be read.")
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files or folders of images")
    p.add_argument("--model", dest="name_or_path", default=None, metavar="NAME|PATH",
                   help="a model folder in $GOUACHE_HOME/captioners, or a path (default: the built-in "
                        "gouache-tiny-captioner)")
    p.add_argument("--prompt", default=None, metavar="TEXT",
                   help="the instruction for chat models such as LLaVA (default: \"Describe this image in one "
                        "sentence.\"); for BLIP and BLIP-2 the start of the caption (default: none)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", default=None, metavar="FILE.jsonl",
                       help="append JSON lines to this file instead of printing them; images already in it are skipped")
    where.add_argument("--sidecar", action="store_true",
                       help="write NAME.txt beside each image; images that have a .txt or .caption are skipped")
    p.add_argument("--overwrite", action="store_true",
                   help="caption every image again: replace existing sidecars, or start --out afresh")
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=40,
                   help="longest caption, in tokens (default: 40)")
    p.add_argument("--rerank", default=None, metavar="CLIP|none",
                   help="let a CLIP model pick each caption from the captioner's beam-search candidates (a name "
                        "in $GOUACHE_HOME/clip, a folder, or gouache-tiny-clip); `none`: greedy decoding alone "
                        "(default: gouache-tiny-clip with the built-in captioner, none with any other)")
    p.add_argument("--batch-size", type=int, default=4, help="images captioned together (default: 4)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default: cpu)")
    p.set_defaults(handler=run, field_flags=FIELD_FLAGS)


def run(args) -> int:
    from gouache.errors import check_int

    check_int("batch_size", args.batch_size, 1, MAX_BATCH)
    check_int("max_new_tokens", args.max_new_tokens, 1, 1024)
    files = collect_images(args.images)
    sink = make_sink(args)
    todo = [f for f in files if not sink.done(f)]
    if not todo:
        print(f"gouache caption: all {len(files)} images already captioned", file=sys.stderr)
        return 0
    try:
        failed = caption_files(args, todo, sink)
    finally:
        sink.close()
    skipped = len(files) - len(todo)
    done = len(todo) - failed
    print(f"gouache caption: captioned {done} image{'s' * (done != 1)}" + (f", {skipped} already done" if skipped else "")
          + (f"; {failed} could not be read" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


def collect_images(paths: list[str]) -> list[Path]:
    """The files named and the images in the folders named (any depth, sorted), each once, in order.
    A path that does not exist, or a folder without images, is an InvalidArgument."""
    from gouache.data.prepare import IMAGE_EXTENSIONS, find_images
    from gouache.errors import InvalidArgument

    found: dict[Path, None] = {}
    for text in paths:
        path = Path(text).expanduser()
        if path.is_dir():
            images = find_images(path)
            if not images:
                raise InvalidArgument(f"folder {path} holds no images ({', '.join(IMAGE_EXTENSIONS)}, any depth)")
            found.update(dict.fromkeys(images))
        elif path.is_file():
            found[path] = None
        else:
            raise InvalidArgument(f"{path} does not exist; give image files or folders of images")
    return list(found)


def caption_files(args, files: list[Path], sink) -> int:
    """Caption ``files`` in batches into ``sink``; returns how many could not be read."""
    from tqdm.auto import tqdm

    from gouache.cli import quiet_libraries
    from gouache.data.prepare import SkipImage, load_rgb
    from gouache.progress import terminal_bar
    from gouache.vision.captioners import load_captioner, rerank_clip

    quiet_libraries()
    failed, bar = 0, terminal_bar("caption", unit="image")
    import contextlib

    from gouache.vision.clip import load_clip

    rerank = rerank_clip(args.name_or_path, args.rerank)
    with load_captioner(args.name_or_path, device=args.device) as captioner, \
            (load_clip(rerank, args.device) if rerank else contextlib.nullcontext()) as clip:
        for start in range(0, len(files), args.batch_size):
            batch = []
            for path in files[start:start + args.batch_size]:
                try:
                    batch.append((path, load_rgb(path)))
                except SkipImage as why:
                    failed += 1
                    tqdm.write(f"gouache caption: skipped {path}: {why}", file=sys.stderr)
            captions = captioner.caption([image for _, image in batch], args.prompt, args.max_new_tokens, rerank=clip)
            for (path, _), caption in zip(batch, captions):
                sink.write(path, caption)
            bar(min(start + args.batch_size, len(files)), len(files))
    return failed


# --------------------------------------------------------------------------------------------
# where captions go


def make_sink(args):
    """Where this run's captions go: :class:`JsonlFile`, :class:`Sidecars` or :class:`Stdout`."""
    if args.out is not None:
        return JsonlFile(Path(args.out).expanduser(), fresh=args.overwrite)
    return Sidecars(args.overwrite) if args.sidecar else Stdout()


def _line(path: Path, caption: str) -> str:
    return json.dumps({"file": str(path), "caption": caption}, ensure_ascii=False) + "\n"


class Stdout:
    """JSON lines on stdout; nothing is ever done before."""

    def done(self, path: Path) -> bool:
        return False

    def write(self, path: Path, caption: str) -> None:
        sys.stdout.write(_line(path, caption))
        sys.stdout.flush()

    def close(self) -> None:
        pass


class JsonlFile:
    """Appends JSON lines to a file, each flushed and synced; the files it already lists are done.
    ``fresh`` starts the file anew (at the first caption, so a run that fails to start keeps it)."""

    def __init__(self, path: Path, fresh: bool = False):
        from gouache.errors import OutputError

        if path.is_dir() or not path.parent.is_dir():
            raise OutputError(f"--out {path}: not a file in an existing folder; give a path like captions.jsonl")
        self.path, self.fresh, self.file = path, fresh, None
        self.seen = set() if fresh or not path.exists() else self._read()

    def _open(self):
        from gouache.errors import OutputError

        try:
            file = open(self.path, "w" if self.fresh else "a", encoding="utf-8")
        except OSError as err:
            raise OutputError(f"--out {self.path} cannot be written: {err.strerror}") from None
        if not self.fresh and self.path.stat().st_size and not self._ends_with_newline():
            file.write("\n")  # a line cut off by a crash stays alone on its line
        return file

    def _read(self) -> set[str]:
        seen = set()
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                seen.add(os.path.abspath(json.loads(line)["file"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a cut-off or foreign line: its image is captioned again
        return seen

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def done(self, path: Path) -> bool:
        return os.path.abspath(path) in self.seen

    def write(self, path: Path, caption: str) -> None:
        if self.file is None:
            self.file = self._open()
        self.file.write(_line(path, caption))
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class Sidecars:
    """``NAME.txt`` beside each image, written atomically; an image with a sidecar is done unless ``overwrite``."""

    def __init__(self, overwrite: bool = False):
        self.overwrite = overwrite

    def done(self, path: Path) -> bool:
        from gouache.data.captions import SIDECAR_EXTENSIONS

        return not self.overwrite and any(path.with_suffix(ext).exists() for ext in SIDECAR_EXTENSIONS)

    def write(self, path: Path, caption: str) -> None:
        from gouache.errors import OutputError

        target = path.with_suffix(".txt")
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(caption + "\n", encoding="utf-8")
            os.replace(tmp, target)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise OutputError(f"cannot write the sidecar {target}: {err.strerror}") from None

    def close(self) -> None:
        pass
