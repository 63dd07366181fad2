"""The files the web UI accepts and serves: what this server saved under ``--out`` and what a user
uploaded into Gradio's cache, nothing else, and never a URL.

Why gouache checks this itself (Gradio 6.31, mounted with ``gr.mount_gradio_app``):

* Gradio's own check of an event's files, ``processing_utils._check_allowed``, returns at once
  unless ``Blocks.has_launched``, and only ``Blocks.launch()`` sets that. So in a mounted app an
  event input ``{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}`` for any image
  input (PNG Info's, img2img's...) was copied into the cache before the handler ran, the error
  named the copy, and ``/gradio_api/file=<copy>`` served it; "Send to img2img" (``lambda path:
  path``) handed back the copy of any image on the disk at once. :func:`~gouache.server.ui.mount_ui`
  turns Gradio's check on; with it, inputs must lie in the upload folder (symlinks resolved).
* A FileData whose ``path`` is an ``http(s)://`` URL is downloaded into the cache
  (``Block.async_move_resource_to_block_cache``; Gradio only refuses private addresses), a
  ``data:`` URL is decoded, and ``/gradio_api/file=<URL>`` fetches the URL for the caller.
* Gradio decodes an uploaded image (``PIL.Image.open``, EXIF transpose, ``convert``) before the
  handler can look at its size, bounded only by PIL's decompression-bomb guard (89 megapixels
  warn, 179 raise); the ImageEditor keeps blobs that any client posts to its ``accept_blobs``
  (``/gradio_api/component_server``) in memory under any id, and pads its layer list to any index.

So :meth:`UiFiles.check_inputs` runs before Gradio preprocesses an event (before any copy,
download or decode), :meth:`UiFiles.guard_editor` before the editor stores a blob, and
:class:`FileRoutes` in front of the file routes. Every file input of the UI is an image.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from gouache.server.schemas import ACCEPTED_FORMATS

MAX_FILES_PER_EVENT = 8  # an inpaint event carries the most: background, composite and a layer
MAX_EDITOR_LAYERS = 4
EDITOR_BLOBS = ("background", "layer", "composite")
API = "/gradio_api"
FILE_ROUTES = (f"{API}/file=", f"{API}/file/")  # the same length: the path follows
# Gradio routes the UI does not use that fetch a URL or run ffmpeg on an upload
CLOSED_ROUTES = (f"{API}/proxy=", f"{API}/process_recording")


def upload_cache() -> Path:
    """Gradio's upload cache: ``$GRADIO_TEMP_DIR`` if set; else a new private folder (mode 0700)
    made the process's ``$GRADIO_TEMP_DIR``, not the ``/tmp/gradio`` that every Gradio app and
    user of the machine shares.

    Gradio reads ``GRADIO_TEMP_DIR`` when each Block and the app are made and on every check of an
    input (``utils.get_upload_folder``) and offers no argument for it, so it is set here, once a
    process, before the first Block: two servers in one process share the folder.
    """
    if not os.environ.get("GRADIO_TEMP_DIR"):
        os.environ["GRADIO_TEMP_DIR"] = str(Path(tempfile.mkdtemp(prefix="gouache-ui-")).resolve())
    return Path(os.environ["GRADIO_TEMP_DIR"]).resolve()


def inside(path: Any, *roots: Path) -> Path | None:
    """``path`` with ``..`` and symlinks resolved, if that is a file inside one of ``roots``
    (resolved folders); else None. A URL is never inside.

    >>> inside("/srv/out/../../etc/passwd", Path("/srv/out")) is None
    True
    """
    if not isinstance(path, (str, Path)) or not str(path) or "://" in str(path):
        return None
    try:
        real = Path(path).resolve()
        if not real.is_file():
            return None
    except (OSError, RuntimeError, ValueError):  # a loop of links, a NUL in the name
        return None
    return real if any(real.is_relative_to(root) for root in roots) else None


class UiFiles:
    """The web UI's files for one server: ``out`` (``--out``, what it saved) and ``cache``
    (Gradio's upload cache, what users uploaded and Gradio's copies of what the UI shows).

    >>> files = UiFiles(blocks, ServerConfig(out="outputs"))   # doctest: +SKIP
    >>> files.uploaded("/etc/passwd")                           # doctest: +SKIP
    Traceback (most recent call last):
    gradio.exceptions.Error: ...
    """

    def __init__(self, blocks: gr.Blocks, config):
        self.blocks = blocks
        self.cache = Path(blocks.GRADIO_CACHE).resolve()
        self.out = config.out_dir
        self.max_pixels = config.max_pixels
        self.max_uploads = config.max_uploads
        self.refused: dict[str, str] = {}  # editor blob id -> why its blob was refused

    # -- what a handler may open -----------------------------------------------------------------

    def uploaded(self, path: Any) -> str:
        """``path`` resolved, if it is a file in the upload cache; else a :class:`gr.Error`."""
        real = inside(path, self.cache)
        if real is None:
            raise gr.Error("The web UI opens only images uploaded to it: drop the image again.")
        return str(real)

    def saved(self, path: Any) -> str | None:
        """``path`` resolved, if it is a file this server saved under ``--out``; else None."""
        real = inside(path, self.out)
        return None if real is None else str(real)

    def check_image(self, source: str | io.BytesIO) -> None:
        """Refuse (:class:`gr.Error`) a file that is not an image or has more pixels than
        ``--max-pixels``, from its header: nothing is decoded."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(source, formats=ACCEPTED_FORMATS) as image:  # the API's list
                    width, height = image.size
        except Image.DecompressionBombError:  # PIL's own guard: over twice Image.MAX_IMAGE_PIXELS
            size = f"over {2 * Image.MAX_IMAGE_PIXELS} pixels"
        except (OSError, ValueError, SyntaxError):
            raise gr.Error("That file is not an image the web UI can read (PNG, JPEG or WebP).") from None
        else:
            if width * height <= self.max_pixels:
                return
            size = f"{width}×{height} = {width * height} pixels"
        raise gr.Error(f"The image is {size}, more than this server's limit of {self.max_pixels} pixels "
                       "(gouache serve --max-pixels): make it smaller first.")

    # -- before Gradio touches an event's files ---------------------------------------------------

    def check_inputs(self, inputs: Any) -> None:
        """Refuse an event whose inputs name a file outside the upload cache, a URL (as ``path``)
        or an inline ``data:`` image, carry more than :data:`MAX_FILES_PER_EVENT` files, or an
        image over ``--max-pixels``. A file is any dict with a ``path`` or ``url``."""
        files = []
        stack = [inputs]
        while stack:
            value = stack.pop()
            if isinstance(value, dict):
                if "path" in value or "url" in value:
                    files.append(value)
                    continue
                if isinstance(value.get("id"), str) and value["id"] in self.refused:
                    raise gr.Error(self.refused.pop(value["id"]))
                stack.extend(value.values())
            elif isinstance(value, (list, tuple)):
                stack.extend(value)
        if len(files) > MAX_FILES_PER_EVENT:
            raise gr.Error(f"{len(files)} files in one event; the web UI takes at most {MAX_FILES_PER_EVENT}.")
        for file in files:
            url = file.get("url")
            if isinstance(url, str) and url.startswith("data:"):
                raise gr.Error("The web UI takes images uploaded to it, not inline data: URLs.")
            self.check_image(self.uploaded(file.get("path")))

    def guard(self, blocks: gr.Blocks) -> None:
        """Run :meth:`check_inputs` before ``blocks`` preprocesses any event's inputs (where Gradio
        copies, downloads and decodes them), and :meth:`guard_editor` on its image editors."""
        preprocess = blocks.preprocess_data

        async def preprocess_data(block_fn, inputs, state, explicit_call=False):
            await asyncio.to_thread(self.check_inputs, inputs)
            return await preprocess(block_fn, inputs, state, explicit_call)

        blocks.preprocess_data = preprocess_data
        for block in blocks.blocks.values():
            if isinstance(block, gr.ImageEditor):
                self.guard_editor(block)

    def guard_editor(self, editor: gr.ImageEditor) -> None:
        """The editor's ``accept_blobs`` (a way for the picture and the strokes to reach it
        before the event; Gradio 6.31's page uploads them to ``/gradio_api/upload`` instead) takes
        only a background, composite or one of :data:`MAX_EDITOR_LAYERS` layers, each an image
        within ``--max-pixels``, and keeps at most ``--max-uploads`` ids; the event that names a
        refused id gets the reason."""
        from fastapi import HTTPException

        accept = editor.accept_blobs

        def accept_blobs(data):
            fields = data.data
            kind, index, key = fields.get("type"), fields.get("index"), fields.get("id")
            if (kind not in EDITOR_BLOBS or not isinstance(key, str) or not 0 < len(key) <= 64
                    or len(data.files) != 1 or not _layer_index(index)):
                raise HTTPException(422, "accept_blobs takes one background, composite or layer image")
            try:
                self.check_image(io.BytesIO(data.files[0][1]))
            except gr.Error as err:
                _remember(self.refused, key, err.message, self.max_uploads)
                raise HTTPException(413, err.message) from None
            storage = editor.blob_storage
            if key not in storage:
                while len(storage) >= self.max_uploads:
                    storage.pop(next(iter(storage)))  # the oldest picture not yet used
            return accept(data)

        accept_blobs._is_server_fn = True  # what Gradio's /component_server calls
        editor.accept_blobs = accept_blobs

    # -- uploads ----------------------------------------------------------------------------------

    def prune_uploads(self) -> None:
        """Keep the ``--max-uploads`` newest files uploaded through the UI; delete older ones."""
        uploads = self.blocks.upload_file_set
        ages = {}
        for path in uploads.copy():  # a copy: Gradio's delete_cache thread changes the set too
            try:
                ages[path] = os.stat(path).st_ctime
            except OSError:
                uploads.discard(path)
        for path in sorted(ages, key=ages.get, reverse=True)[self.max_uploads:]:
            with contextlib.suppress(OSError):
                os.remove(path)
                os.rmdir(os.path.dirname(path))  # its folder (named by the content's hash), once empty
            uploads.discard(path)


def _layer_index(index: Any) -> bool:
    if index in (None, "", "null"):
        return True
    return str(index).isdecimal() and int(index) < MAX_EDITOR_LAYERS


def _remember(refused: dict, key: str, message: str, most: int) -> None:
    refused[key] = message
    while len(refused) > most:
        refused.pop(next(iter(refused)))


class FileRoutes:
    """ASGI guard in front of the mounted Gradio app:

    * ``/gradio_api/file=<path>`` (and ``/file/<path>``) serves only files in the upload cache,
      symlinks and ``..`` resolved, and no URL (Gradio would fetch it for the caller); the
      UI's own images are shown from Gradio's copies there;
    * ``/gradio_api/proxy=`` and ``/gradio_api/process_recording``, which the UI does not use,
      answer 404;
    * after each ``/gradio_api/upload``, older uploads beyond ``--max-uploads`` are deleted.
    """

    def __init__(self, app, files: UiFiles):
        self.app = app
        self.files = files

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _route_path(scope)
        if path.startswith(CLOSED_ROUTES):
            await _send_json(send, 404, {"detail": "Not Found"})
            return
        if path.startswith(FILE_ROUTES) and inside(path[len(FILE_ROUTES[0]):], self.files.cache) is None:
            await _send_json(send, 403, {"detail": "File not allowed."})
            return
        if path != f"{API}/upload" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return

        async def pruned_first(message):  # the answer ends once older uploads are gone
            if message["type"] == "http.response.body" and not message.get("more_body"):
                await asyncio.to_thread(self.files.prune_uploads)
            await send(message)

        await self.app(scope, receive, pruned_first)


def _route_path(scope) -> str:
    """The request's path inside the app it is mounted in (what Starlette routes by)."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root + "/") else path


async def _send_json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
