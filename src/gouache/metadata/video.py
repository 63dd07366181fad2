"""Video files that carry their infotext: GIF and WebP through Pillow, MP4 through PyAV, PNG frames.

Each format holds the generation parameters where it can — a GIF's comment, a WebP's EXIF
``UserComment`` (as A1111 writes WebP), the MP4's ``comment`` metadata, each PNG frame's
``parameters`` text — and every video also gets a sidecar ``.txt`` with the same text, so
``gouache video --from`` can remake it whatever the format. Everything is encoded in memory and
written atomically (:func:`gouache.metadata.png.atomic_write_bytes`); nothing is left half-written.

MP4 is H.264 (``libx264``) when PyAV's FFmpeg has that encoder, else MPEG-4 Part 2 (``mpeg4``), and
:func:`save_video` says which it used. PyAV is the optional extra ``pip install gouache[video]``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image

from gouache.errors import InvalidArgument, OutputError
from gouache.metadata.png import _EXIF_IFD, _USER_COMMENT, atomic_write_bytes, infotext_of, png_bytes

FORMATS = ("gif", "webp", "mp4", "png")


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InvalidArgument(f"`video_format` must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def encode_video(frames: list[Image.Image], fmt: str, fps: float, infotext: str, loop: int = 0) -> tuple[bytes, str]:
    """``(bytes, codec)`` of ``frames`` as a ``fmt`` file (not ``png``: that is a folder) at ``fps``
    frames a second, repeated ``loop`` times (0: for ever; GIF and WebP)."""
    check_format(fmt)
    duration = max(int(round(1000 / fps)), 1)
    rgb = [f.convert("RGB") for f in frames]
    buf = io.BytesIO()
    if fmt == "gif":
        rgb[0].save(buf, format="GIF", save_all=True, append_images=rgb[1:], duration=duration, loop=loop,
                    comment=infotext.encode("utf-8"), disposal=1)
        return buf.getvalue(), "gif"
    if fmt == "webp":
        exif = Image.Exif()
        exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = b"UNICODE\0" + infotext.encode("utf-16-be")
        rgb[0].save(buf, format="WEBP", save_all=True, append_images=rgb[1:], duration=duration, loop=loop,
                    lossless=True, exif=exif.tobytes())
        return buf.getvalue(), "webp"
    if fmt == "mp4":
        return _mp4(rgb, fps, infotext)
    raise InvalidArgument("PNG frames are a folder: use save_video")


def mp4_codec() -> str:
    """``libx264`` if PyAV's FFmpeg can encode H.264, else ``mpeg4``."""
    try:
        import av
    except ImportError:
        raise InvalidArgument("MP4 needs PyAV: pip install 'gouache[video]' (or choose gif, webp or png)") from None
    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:  # av.codec.codec.UnknownCodecError and friends
        return "mpeg4"


def _mp4(frames: list[Image.Image], fps: float, infotext: str) -> tuple[bytes, str]:
    import av
    from fractions import Fraction

    codec = mp4_codec()
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        container.metadata["comment"] = infotext
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        # yuv420p wants even sizes; a 64x64 frame is already even
        stream.width, stream.height = frames[0].width // 2 * 2, frames[0].height // 2 * 2
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "medium"}
        else:
            stream.bit_rate = 4_000_000
        for frame in frames:
            image = frame.crop((0, 0, stream.width, stream.height))
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue(), codec


def sidecar_of(path: Path) -> Path:
    """The ``.txt`` beside a video: ``clip.gif`` -> ``clip.txt``; a PNG-frames folder ``clip`` -> ``clip.txt``."""
    return path.with_suffix(".txt") if path.suffix.lower() in (".gif", ".webp", ".mp4") else path.with_name(path.name + ".txt")


def check_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Before any work: the video and its sidecar may be written at ``path`` (new unless
    ``overwrite``, in a folder that can be written)."""
    from gouache.files import writable_folder

    path = Path(path)
    writable_folder(path.parent if str(path.parent) else ".")
    for target in (path, sidecar_of(path)):
        if target.exists() and not overwrite:
            raise OutputError(f"{target} exists; choose another name or pass --overwrite (overwrite=True)")
    return path


def save_video(frames: list[Image.Image], path: str | os.PathLike, fps: float, infotext: str, loop: int = 0,
               overwrite: bool = False) -> tuple[Path, str]:
    """Write the video (its format from ``path``'s suffix; a path without one of gif/webp/mp4 is a
    folder of PNG frames ``00000.png``...) and its sidecar ``.txt``; returns ``(path, codec)``.

    Both files are checked first (never replaced unless ``overwrite``) and encoded in memory, then
    written; if the sidecar cannot be written the video is taken away again.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".") if path.suffix.lower() in (".gif", ".webp", ".mp4") else "png"
    sidecar = sidecar_of(path)
    check_output(path, overwrite)
    if fmt == "png":
        return _save_frames(frames, path, infotext, sidecar, overwrite), "png"
    data, codec = encode_video(frames, fmt, fps, infotext, loop)
    atomic_write_bytes(path, data, overwrite)
    try:
        atomic_write_bytes(sidecar, infotext.encode("utf-8"), overwrite)
    except OutputError:
        path.unlink(missing_ok=True)
        raise
    return path, codec


def _save_frames(frames, folder: Path, infotext: str, sidecar: Path, overwrite: bool) -> Path:
    """PNG frames in ``folder`` (made whole in a hidden temporary folder, then renamed into place)."""
    import secrets
    import shutil

    data = [png_bytes(f, infotext) for f in frames]
    temp = folder.with_name(f".{folder.name}.{secrets.token_hex(4)}.tmp")
    try:
        temp.mkdir(parents=True)
        for k, d in enumerate(data):
            (temp / f"{k:05d}.png").write_bytes(d)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(temp, folder)
        atomic_write_bytes(sidecar, infotext.encode("utf-8"), overwrite)
    except OSError as e:
        shutil.rmtree(temp, ignore_errors=True)
        raise OutputError(f"cannot write {folder}: {e.strerror or e}") from None
    return folder


def read_video_infotext(path: str | os.PathLike) -> str | None:
    """The infotext of a video gouache wrote: its sidecar ``.txt`` (or ``path`` itself if it is
    one), else the file's own metadata (GIF comment, WebP EXIF, MP4 ``comment``, a PNG frame's text)."""
    path = Path(path)
    if not path.exists():
        raise InvalidArgument(f"{path} does not exist; pass a video gouache made, or its .txt")
    if path.suffix.lower() == ".txt":
        return path.read_text(encoding="utf-8")
    sidecar = sidecar_of(path)
    if sidecar.is_file():
        return sidecar.read_text(encoding="utf-8")
    if path.is_dir():
        first = sorted(path.glob("*.png"))
        path = first[0] if first else path
    if path.suffix.lower() == ".mp4":
        try:
            import av

            with av.open(str(path)) as container:
                return container.metadata.get("comment")
        except Exception as e:  # PyAV's errors (missing, corrupt) have no common base
            raise InvalidArgument(f"{path} cannot be read as an MP4: {e}") from None
    try:
        with Image.open(path) as image:
            return infotext_of(image)
    except (OSError, SyntaxError):
        raise InvalidArgument(f"{path} is not a video or image gouache can read") from None
