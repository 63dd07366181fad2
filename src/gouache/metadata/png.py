"""Image files that carry their infotext, the way AUTOMATIC1111 saves them.

A1111 (``modules/images.py`` ``save_image_with_geninfo``) stores the infotext in a PNG text chunk
named ``parameters``, and in the EXIF ``UserComment`` of JPEG and WebP files. Files are named
``00000-<seed>.png``, ``00001-<seed>.png``, ... in the output folder.

>>> path = save_png(image, next_image_path("outputs", seed=42), infotext)  # doctest: +SKIP
>>> read_infotext(path) == infotext                                       # doctest: +SKIP
True
"""

from __future__ import annotations

import io
import os
import re
import secrets
from pathlib import Path

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from gouache.errors import InvalidArgument, OutputError

PARAMETERS_KEY = "parameters"
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_RE_SEQUENCE = re.compile(r"[0-9]+")
_RE_EXT = re.compile(r"[A-Za-z0-9]+")


def save_png(
    image: Image.Image, path: str | os.PathLike, infotext: str, *, overwrite: bool = False
) -> Path:
    """Save ``image`` as a PNG at ``path`` with ``infotext`` in its ``parameters`` chunk.

    The file appears complete or not at all: it is written to a hidden temporary file in the
    same folder and then renamed into place. Missing folders are created. An existing file is
    only replaced when ``overwrite`` is True. Text that is not Latin-1 is stored as UTF-8 (iTXt).

    >>> save_png(Image.new("RGB", (64, 64)), "out/00000-42.png", "a cat\\nSteps: 20, ...")
    PosixPath('out/00000-42.png')

    Raises InvalidArgument for a bad image, path or text, and OutputError when the file exists
    (and ``overwrite`` is False) or cannot be written.
    """
    # 1. Check inputs
    path = Path(path)
    _check_png_args(image, path, infotext)
    if path.exists() and not overwrite:
        raise _exists_error(path)
    # 2. Encode in memory, so an image PNG cannot hold is told apart from a disk problem
    data = _encode_png(image, infotext)
    # 3. Write next to the target, then rename into place
    _make_folder(path.parent)
    _write_atomically(path, data, overwrite)
    return path


def next_image_path(folder: str | os.PathLike, seed: int, ext: str = "png") -> Path:
    """The next free A1111-style name in ``folder``: ``00000-<seed>.png``, ``00001-<seed>.png``...

    The number is one more than the highest number any file in the folder starts with
    (A1111's ``get_next_sequence_number``), so numbers follow the order images were made even
    when some were deleted. The folder is created if needed. The name is not reserved: save with
    ``overwrite=False`` so that a file made in between is never replaced.

    >>> next_image_path("outputs", seed=1234)     # outputs/ holds 00006-77.png
    PosixPath('outputs/00007-1234.png')
    """
    if type(seed) is not int or seed < 0:
        raise InvalidArgument(f"`seed` must be a whole number >= 0 (the seed used), got {seed!r}")
    if not isinstance(ext, str) or not _RE_EXT.fullmatch(ext):
        raise InvalidArgument(
            f"`ext` must be letters or digits without a dot, like 'png', got {ext!r}"
        )
    folder = Path(folder)
    _make_folder(folder)
    return folder / f"{_next_number(folder):05d}-{seed}.{ext}"


def read_infotext(path: str | os.PathLike) -> str | None:
    """The infotext stored in an image: the PNG ``parameters`` text, else the EXIF
    ``UserComment`` (JPEG, WebP), else a GIF comment; None when the image has none.

    >>> read_infotext("outputs/00007-1234.png")
    'a cat\\nSteps: 20, Sampler: Euler a, CFG scale: 7.0, Seed: 1234, Size: 512x512'

    Raises InvalidArgument when the file is missing or is not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidArgument(f"`path` {path} is not a file; pass the path of a saved image")
    try:
        with Image.open(path) as image:
            return infotext_of(image)
    except UnidentifiedImageError:
        message = f"`path` {path} is not an image (Pillow cannot identify it)"
        raise InvalidArgument(message) from None
    except (OSError, SyntaxError) as err:  # Pillow raises SyntaxError for some corrupt chunks
        reason = getattr(err, "strerror", None) or str(err)
        raise InvalidArgument(f"`path` {path} cannot be read as an image: {reason}") from None


# --------------------------------------------------------------------------------------------


def _check_png_args(image: object, path: Path, infotext: object) -> None:
    if not isinstance(image, Image.Image):
        raise InvalidArgument(f"`image` must be a PIL.Image.Image, got {type(image).__name__}")
    if path.suffix.lower() != ".png":
        raise InvalidArgument(f"`path` must end in .png, got {str(path)!r}")
    if not isinstance(infotext, str):
        raise InvalidArgument(f"`infotext` must be a str, got {type(infotext).__name__}")


def png_bytes(image: Image.Image, infotext: str) -> bytes:
    """The bytes :func:`save_png` writes: a PNG carrying ``infotext`` as its ``parameters`` text."""
    if not isinstance(infotext, str):
        raise InvalidArgument(f"`infotext` must be a str, got {type(infotext).__name__}")
    return _encode_png(image, infotext)


def _encode_png(image: Image.Image, infotext: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    # As A1111 does; Pillow writes tEXt when the text is Latin-1 and iTXt (UTF-8) otherwise.
    info.add_text(PARAMETERS_KEY, infotext)
    buffer = io.BytesIO()
    try:
        image.save(buffer, format="PNG", pnginfo=info)
    except (OSError, ValueError) as err:
        raise InvalidArgument(
            f"`image` (mode {image.mode!r}) cannot be saved as PNG: {err}; "
            "convert it first, e.g. image.convert('RGB')"
        ) from None
    return buffer.getvalue()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = False) -> Path:
    """Write any file as the PNGs are written: a temporary file moved into place when complete,
    never over an existing file unless ``overwrite``."""
    path = Path(path)
    _make_folder(path.parent)
    if not overwrite and path.exists():
        raise _exists_error(path)
    _write_atomically(path, data, overwrite)
    return path


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create folder {folder}: {_reason(err)}") from None


def _write_atomically(path: Path, data, overwrite: bool) -> None:
    """``data`` (bytes, or a function that writes into the open file) into a fsynced temporary file
    beside ``path``, then moved into place."""
    temp = _create_temp(path)
    try:
        with open(temp, "wb") as file:
            data(file) if callable(data) else file.write(data)
            file.flush()
            os.fsync(file.fileno())
        _move_into_place(temp, path, overwrite)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {_reason(err)}") from None
    finally:
        temp.unlink(missing_ok=True)  # after a successful move it is already gone


def _create_temp(path: Path) -> Path:
    # os.open with O_EXCL rather than tempfile.mkstemp: mkstemp makes the file 0600, and the
    # saved image should get the usual permissions (0666 minus the umask) like any other file.
    for _ in range(10):
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return temp
        except FileExistsError:
            continue
        except OSError as err:
            raise OutputError(f"cannot write to folder {path.parent}: {_reason(err)}") from None
    raise OutputError(f"cannot create a temporary file in {path.parent}")


def _move_into_place(temp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(temp, path)
        return
    # A hard link fails if the name is taken, so a file that appeared since the exists() check
    # (another job saving the same name) is never replaced.
    try:
        os.link(temp, path)
    except FileExistsError:
        raise _exists_error(path) from None
    except OSError:
        # File systems without hard links (FAT, some network shares): best effort.
        if path.exists():
            raise _exists_error(path) from None
        os.replace(temp, path)


def _next_number(folder: Path) -> int:
    highest = -1
    for name in os.listdir(folder):
        # A1111: the part before the first "-" of the name without its extension.
        first = os.path.splitext(name)[0].split("-")[0]
        if _RE_SEQUENCE.fullmatch(first):
            highest = max(highest, int(first))
    return highest + 1


def infotext_of(image: Image.Image) -> str | None:
    """The infotext of an open image (PNG ``parameters``, EXIF ``UserComment`` or GIF comment), or None."""
    text = image.info.get(PARAMETERS_KEY)
    if text is None and image.format == "PNG":
        image.load()  # text chunks after the image data are only read with the pixels
        text = image.info.get(PARAMETERS_KEY)
    if text is None:
        text = _exif_user_comment(image)
    if text is None:
        text = image.info.get("comment")
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return None if text is None else str(text)


def _exif_user_comment(image: Image.Image) -> str | None:
    raw = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    if not isinstance(raw, bytes) or len(raw) < 8:
        return raw if isinstance(raw, str) else None
    header, body = raw[:8], raw[8:]
    # The 8-byte header names the encoding (EXIF 2.3). A1111 writes it with
    # piexif.helper.UserComment.dump(..., encoding="unicode"), which is UTF-16 big-endian.
    if header.startswith(b"UNICODE"):
        return body.decode("utf-16-be", errors="replace")
    return body.decode("utf-8", errors="replace").rstrip("\0")


def _exists_error(path: Path) -> OutputError:
    return OutputError(f"{path} exists; pass a new name or overwrite=True to replace it")


def _reason(err: OSError) -> str:
    # strerror ("Permission denied") rather than str(err), which repeats the path.
    return err.strerror or type(err).__name__


def atomic_copy_file(src: str | os.PathLike, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Copy the file ``src`` to ``path`` as :func:`atomic_write_bytes` writes: into a temporary file
    beside ``path``, fsynced, then moved into place, never over an existing file unless
    ``overwrite``. A copy that fails half-way (a full disk) leaves nothing under ``path``.

    >>> atomic_copy_file("runs/x/outline.safetensors", "models/lora/outline.safetensors")  # doctest: +SKIP
    PosixPath('models/lora/outline.safetensors')
    """
    import shutil

    path = Path(path)
    _make_folder(path.parent)
    if not overwrite and path.exists():
        raise _exists_error(path)
    try:
        source = open(src, "rb")
    except OSError as err:
        raise OutputError(f"cannot read {src}: {_reason(err)}") from None
    with source:
        _write_atomically(path, lambda file: shutil.copyfileobj(source, file, 1 << 20), overwrite)
    return path
