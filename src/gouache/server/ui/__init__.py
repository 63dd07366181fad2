"""The web UI: Gradio Blocks in AUTOMATIC1111's layout, mounted at ``/`` of the API's app.

Tabs: txt2img, img2img, inpaint (draw the mask on the image, or name it in words), upscale, video
(AnimateDiff, :mod:`gouache.server.ui.video`), extras
(remove background), PNG info, train (LoRA), gallery; img2img and PNG Info have A1111's Interrogate
CLIP button (a prompt that describes the image); the generation tabs have an "Image prompt
(IP-Adapter)" accordion (:mod:`gouache.server.ui.image_prompt`). Every generation and
segmentation goes through the server's job queue, so the UI and ``/sdapi/v1`` share one worker,
one progress and one interrupt. Images are shown from the PNG files saved under ``--out``, so what
the browser downloads carries its ``parameters`` text.

>>> app = create_app(ServerConfig())   # mounts the UI unless ServerConfig(ui=False)  # doctest: +SKIP

Files: the UI opens and serves only the images it saved under ``--out`` (shown from Gradio's
copies) and the files users uploaded into Gradio's cache, fetches no URL, and refuses an uploaded
image over ``--max-pixels`` before Gradio decodes it (:mod:`gouache.server.ui.files` says why
Gradio's own checks are not enough when it is mounted). The cache is a private folder of the
process unless ``$GRADIO_TEMP_DIR`` names one; Gradio deletes what the UI put there after
:data:`CACHE_AGE_SECONDS`, and of the uploads only the ``--max-uploads`` newest are kept.

Gradio is imported only here, when an app with a UI is made (nothing happens on import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from gouache.server.state import Server

CSS = """
[id$="-progress"] {min-height: 1.5em}
.gouache-tool-button {max-width: 3em; min-width: 3em !important}
"""
CACHE_CHECK_SECONDS = 15 * 60  # Gradio's delete_cache: how often it looks ...
CACHE_AGE_SECONDS = 3 * 3600  # ... for cached files older than this (uploads, copies of outputs)


def build_ui(server: "Server"):
    """The :class:`gradio.Blocks` of the whole UI for ``server``."""
    import gradio as gr

    from gouache.server.ui import generate, masks, tools, train, video
    from gouache.server.ui.files import UiFiles

    with gr.Blocks(title="gouache", analytics_enabled=False,
                   delete_cache=(CACHE_CHECK_SECONDS, CACHE_AGE_SECONDS)) as blocks:
        files = UiFiles(blocks, server.config)
        model = generate.model_picker(server)
        with gr.Tabs() as tabs:
            with gr.Tab("txt2img", id="txt2img"):
                txt2img = generate.txt2img_tab(server, model)
            with gr.Tab("img2img", id="img2img"):
                img2img = generate.img2img_tab(server, model)
            with gr.Tab("Inpaint", id="inpaint"):
                generate.inpaint_tab(server, model)
            with gr.Tab("Upscale", id="upscale"):
                generate.upscale_tab(server, model)
            with gr.Tab("Video", id="video"):
                video.video_tab(server, model)
            with gr.Tab("Extras", id="extras"):
                masks.extras_tab(server)
            with gr.Tab("PNG Info", id="pnginfo"):
                tools.png_info_tab(server, files, tabs, model, txt2img, img2img)
            with gr.Tab("Train", id="train"):
                train.lora_tab(server)
            with gr.Tab("Gallery", id="gallery") as gallery:
                tools.gallery_tab(server, files, gallery)
    files.guard(blocks)
    return blocks


def mount_ui(app: "FastAPI", server: "Server") -> None:
    """Mount the UI at ``/``; the API's routes, added before, keep their paths. Gradio's upload
    cache is made private to the process first (:func:`~gouache.server.ui.files.upload_cache`),
    its own file checks are turned on, and :class:`~gouache.server.ui.files.FileRoutes` stands in
    front of its routes."""
    import gradio as gr
    from starlette.routing import Mount

    from gouache.server.ui.files import FileRoutes, UiFiles, upload_cache

    upload_cache()  # before the first Block: each reads the cache folder when it is made
    blocks = build_ui(server)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],  # no web fonts: works offline
                              font_mono=["ui-monospace", "monospace"])
    # allowed_paths: Gradio copies the images the UI shows from --out into its cache, and checks
    # where they come from; show_error=False: only gr.Error messages reach the page, not an
    # exception's text (which named server paths); run_history, mcp_server: nothing that calls out
    gr.mount_gradio_app(app, blocks, path="", footer_links=["api", "settings"], ssr_mode=False, theme=theme, css=CSS,
                        max_file_size=int(server.config.max_body_bytes), allowed_paths=[str(server.config.out_dir)],
                        show_error=False, run_history=False, mcp_server=False)
    # Gradio checks an event's files (inputs only from its upload folder) only once launched;
    # launch() sets this, mount_gradio_app does not
    blocks.has_launched = True
    mount = app.router.routes[-1]  # what mount_gradio_app just added
    if not (isinstance(mount, Mount) and mount.path == ""):
        raise RuntimeError(f"gr.mount_gradio_app added {mount!r}, not a Mount at /: gradio changed")
    mount.app = FileRoutes(mount.app, UiFiles(blocks, server.config))
