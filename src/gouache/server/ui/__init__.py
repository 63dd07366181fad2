"""The web UI: Gradio Blocks in AUTOMATIC1111's layout, mounted at ``/`` of the API's app.

Tabs: txt2img, img2img, inpaint (draw the mask on the image), upscale, PNG info, train (LoRA),
gallery. Every generation goes through the server's job queue, so the UI and ``/sdapi/v1`` share
one worker, one progress and one interrupt. Images are shown from the PNG files saved under
``--out``, so what the browser downloads carries its ``parameters`` text.

>>> app = create_app(ServerConfig())   # mounts the UI unless ServerConfig(ui=False)  # doctest: +SKIP

Gradio is imported only here, when an app with a UI is made (nothing happens on import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from gouache.server.app import Server

CSS = """
[id$="-progress"] {min-height: 1.5em}
.gouache-tool-button {max-width: 3em; min-width: 3em !important}
"""


def build_ui(server: "Server"):
    """The :class:`gradio.Blocks` of the whole UI for ``server``."""
    import gradio as gr

    from gouache.server.ui import generate, tools, train

    with gr.Blocks(title="gouache", analytics_enabled=False) as blocks:
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
            with gr.Tab("PNG Info", id="pnginfo"):
                tools.png_info_tab(tabs, model, txt2img, img2img)
            with gr.Tab("Train", id="train"):
                train.lora_tab(server)
            with gr.Tab("Gallery", id="gallery") as gallery:
                tools.gallery_tab(server, gallery)
    return blocks


def mount_ui(app: "FastAPI", server: "Server") -> None:
    """Mount the UI at ``/``; the API's routes, added before, keep their paths."""
    import gradio as gr

    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],  # no web fonts: works offline
                              font_mono=["ui-monospace", "monospace"])
    gr.mount_gradio_app(app, build_ui(server), path="", footer_links=["api", "settings"], ssr_mode=False,
                        max_file_size=int(server.config.max_body_bytes), theme=theme, css=CSS)
