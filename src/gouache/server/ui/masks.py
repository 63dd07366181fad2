"""Masks from words and background removal in the web UI: the Inpaint tab's "Mask from words"
(words, threshold, invert, segmenter, and a Preview mask button) and the Extras tab's Remove
background (an RGBA PNG, or its mask). Segmenters are named from the server's listing only (the
API's ``/sdapi/v1/segmenters``), and every segmentation runs on the server's job queue, loaded for
its job, as the API's ``/rembg`` and a words mask inside an inpainting job do.
"""

from __future__ import annotations

import gradio as gr
from PIL import Image

from gouache.errors import GouacheError

Controls = dict  # request field name -> gradio component


def segmenter_picker(elem_id: str) -> gr.Dropdown:
    """The listed segmenters, the server's default chosen (empty when none is installed: using one
    then says how to install one)."""
    from gouache.server.catalog import segmenter_names

    names = segmenter_names()
    return gr.Dropdown(names, value=names[0] if names else None, label="Segmenter", elem_id=elem_id)


def words_controls(tab: str) -> tuple[Controls, gr.Button, gr.Image]:
    """The "Mask from words" accordion: the request's ``mask_prompt``, ``mask_threshold``,
    ``mask_invert`` and ``segmenter`` controls, the Preview mask button and where it shows the mask."""
    with gr.Accordion("Mask from words", open=True):
        c: Controls = {"mask_prompt": gr.Textbox(
            label="Mask from words (instead of painting)", placeholder="the background", max_lines=1,
            elem_id=f"{tab}-mask-prompt")}
        with gr.Row():
            c["mask_threshold"] = gr.Slider(0, 0.99, value=0.5, step=0.01, label="Mask threshold",
                                            elem_id=f"{tab}-mask-threshold")
            c["mask_invert"] = gr.Checkbox(False, label="Invert (repaint everything else)",
                                           elem_id=f"{tab}-mask-invert")
        with gr.Row():
            c["segmenter"] = segmenter_picker(f"{tab}-segmenter")
            button = gr.Button("Preview mask", elem_id=f"{tab}-preview-mask")
        shown = gr.Image(label="Mask from words", type="pil", format="png", interactive=False, height=192,
                         elem_id=f"{tab}-mask-preview")
    return c, button, shown


def words_fields(values: dict, painted: Image.Image) -> dict:
    """The request's mask fields: the painted ``mask``, or, when words are written, the words' mask
    settings (both at once is an error that says which to clear)."""
    from gouache.server.catalog import find_segmenter_name

    words = (values.get("mask_prompt") or "").strip()
    if not words:
        return {"mask": painted}
    if painted.getbbox() is not None:
        raise gr.Error("Paint the mask or write its words, not both: clear the strokes, or the words.")
    try:
        segmenter = find_segmenter_name(values.get("segmenter") or None)
    except GouacheError as err:
        raise gr.Error(str(err)) from None
    return {"mask": None, "mask_prompt": words, "mask_threshold": float(values["mask_threshold"]),
            "mask_invert": bool(values["mask_invert"]), "segmenter": segmenter}


def _queued(server, name: str, image: Image.Image | None, work):
    """Run ``work(tracker)`` on the server's queue, for an image within ``--max-pixels``; its
    errors as the UI's one-line messages."""
    from gouache.server.schemas import check_pixels

    if image is None:
        raise gr.Error("Drop an image first.")
    try:
        check_pixels("image", image.size, server.config.max_pixels)
        return server.queue.submit(name, work).result()
    except GouacheError as err:
        raise gr.Error(str(err)) from None


def preview_mask(server, image: Image.Image | None, words: str, threshold: float, invert: bool,
                 segmenter: str | None) -> Image.Image | None:
    """The mask the words would give (white = repainted), as the inpainting job will make it."""
    from gouache.server.catalog import find_segmenter_name
    from gouache.vision.segment import MaskOptions

    if not (words or "").strip():
        raise gr.Error("Write the words of the mask first, e.g. \"the background\".")
    try:
        name = find_segmenter_name(segmenter or None)
        options = MaskOptions(float(threshold), 0, 0, bool(invert)).validate("mask_")
    except GouacheError as err:
        raise gr.Error(str(err)) from None
    return _queued(server, "mask", image,
                   lambda tracker: server.generator.segment(image, words, options, name, tracker))


def extras_tab(server) -> None:
    """A1111's Extras tab, with what sd-webui-rembg adds there: Remove background (an RGBA PNG with
    the background transparent, or with "Return mask" the mask), by a listed segmenter."""
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Image", type="pil", image_mode=None, sources=["upload", "clipboard"],
                             elem_id="extras-image")
            with gr.Row():
                segmenter = segmenter_picker("extras-segmenter")
                mask_only = gr.Checkbox(False, label="Return mask", elem_id="extras-return-mask")
            button = gr.Button("Remove background", variant="primary", elem_id="extras-remove-background")
        with gr.Column():
            result = gr.Image(label="Result (PNG)", type="pil", format="png", interactive=False,
                              buttons=["download"], elem_id="extras-result")

    def remove(picture: Image.Image | None, name: str | None, only_mask: bool) -> Image.Image | None:
        from gouache.server.catalog import find_segmenter_name

        try:
            picked = find_segmenter_name(name or None)
        except GouacheError as err:
            raise gr.Error(str(err)) from None
        return _queued(server, "rembg", picture, lambda tracker: server.generator.remove_background(
            picture, picked, bool(only_mask), tracker))

    button.click(remove, [image, segmenter, mask_only], result, concurrency_limit=None)
