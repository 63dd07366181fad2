"""The PNG Info tab (an image's parameters, sent on to txt2img or img2img) and the gallery of the
images this server saved. PNG Info opens only an image uploaded to the page, the gallery only
PNGs under ``--out`` (:class:`~gouache.server.ui.files.UiFiles`)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from PIL import Image

from gouache.errors import GouacheError

# txt2img controls that an infotext fills (request field names)
FROM_INFOTEXT = ("prompt", "negative_prompt", "steps", "cfg_scale", "sampler", "scheduler", "seed", "width", "height",
                 "enable_hr", "hr_scale", "hr_upscaler", "hr_second_pass_steps", "denoising_strength", "styles")
IMAGE_PROMPT = ("ip_adapter", "ip_scale", "ip_style")  # what Send to takes of an IP-Adapter unit
GALLERY_SIZE = 100  # newest images the gallery shows


def read_parameters(path: str | None) -> tuple[str, dict]:
    """An image file's infotext and its fields (A1111's PNG Info: prompt, negative prompt,
    settings, and any other text the file carries)."""
    from gouache.metadata.infotext import parse_infotext
    from gouache.metadata.png import PARAMETERS_KEY, read_infotext

    if not path:
        return "", {}
    try:
        text = read_infotext(path) or ""
    except GouacheError as err:
        raise gr.Error(str(err)) from None
    with Image.open(path) as image:
        other = {k: v for k, v in image.info.items() if isinstance(v, str) and k != PARAMETERS_KEY}
    if not text:
        return "", {**other, "": "This image has no generation parameters."}
    parsed = parse_infotext(text)
    return text, {"Prompt": parsed.prompt, "Negative prompt": parsed.negative_prompt, **parsed.params, **other}


def request_values(text: str) -> dict:
    """The request fields an infotext gives, by name; a text without a settings line gives its prompts."""
    from gouache.metadata.infotext import parse_infotext
    from gouache.pipelines.request import request_from_infotext

    if not text.strip():
        raise gr.Error("No parameters to send: drop an image that has them.")
    try:
        request = request_from_infotext(text)
    except GouacheError:
        parsed = parse_infotext(text)
        return {"prompt": parsed.prompt, "negative_prompt": parsed.negative_prompt}
    values = {name: getattr(request, name) for name in FROM_INFOTEXT}
    values["width"], values["height"] = request.width or 0, request.height or 0
    values["styles"] = list(request.styles)  # found in the prompt again, as A1111's "Styles array"
    if values["cfg_scale"] is None:
        values.pop("cfg_scale")
    values["model"] = _listed(request.model)
    return {**values, **_image_prompt(request.ip_adapters)}


def _image_prompt(units: list) -> dict:
    """The first IP-Adapter unit's adapter, scale and style, when this server lists the adapter (the
    image prompt itself cannot travel in the infotext); nothing otherwise."""
    from gouache.adapters.ip_adapter import find_ip_adapter

    if not units:
        return {}
    try:
        name = find_ip_adapter(str(units[0].model)).name
    except GouacheError:
        return {}
    return {"ip_adapter": name, "ip_scale": float(units[0].scale), "ip_style": bool(units[0].style)}


def _listed(name: str | None) -> str | None:
    from gouache.server.catalog import find_checkpoint

    try:
        return find_checkpoint(name).name if name else None
    except GouacheError:
        return None  # a model this server does not have: keep the one chosen


def png_info_tab(server, files, tabs: gr.Tabs, model: gr.Dropdown, txt2img: dict, img2img: dict) -> None:
    """``files``: the UI's :class:`~gouache.server.ui.files.UiFiles`; the image must be an upload.
    Interrogate CLIP describes the image as a prompt and puts it in txt2img's prompt box."""
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Source", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                             elem_id="pnginfo-image")
        with gr.Column():
            text = gr.Textbox(label="Parameters", lines=6, interactive=False, elem_id="pnginfo-parameters",
                              buttons=["copy"])
            fields = gr.JSON(label="Fields")
            with gr.Row():
                to_txt2img = gr.Button("Send to txt2img")
                to_img2img = gr.Button("Send to img2img")
                interrogate = gr.Button("Interrogate CLIP", elem_id="pnginfo-interrogate")

    def read_upload(path: str | None) -> tuple[str, dict]:
        return read_parameters(files.uploaded(path) if path else None)

    def send_image(path: str | None) -> str | None:
        return files.uploaded(path) if path else None

    image.change(read_upload, image, [text, fields], queue=False)
    send(to_txt2img, text, "txt2img", txt2img, model, tabs)
    send(to_img2img, text, "img2img", img2img, model, tabs)
    to_img2img.click(send_image, image, img2img["init_image"], queue=False)

    def describe(path: str | None):
        from gouache.images import load_image
        from gouache.server.ui.generate import interrogation

        try:
            picture = load_image(files.uploaded(path), "image") if path else None
        except GouacheError as err:
            raise gr.Error(str(err)) from None
        return interrogation(server, picture), gr.Tabs(selected="txt2img")

    interrogate.click(describe, image, [txt2img["prompt"], tabs], concurrency_limit=None)


def send(button: gr.Button, text: gr.Textbox, tab: str, controls: dict, model: gr.Dropdown, tabs: gr.Tabs) -> None:
    """``button``: fill ``controls`` from the infotext in ``text`` and open ``tab`` (A1111's "Send to")."""
    names = [n for n in (*FROM_INFOTEXT, *IMAGE_PROMPT) if n in controls]
    outputs = [controls[n] for n in names] + [model, tabs]

    def fill(infotext: str):
        values = request_values(infotext)
        updates = [gr.update(value=values[n]) if n in values else gr.update() for n in names]
        chosen = values.get("model")
        return *updates, gr.update(value=chosen) if chosen else gr.update(), gr.Tabs(selected=tab)

    button.click(fill, text, outputs, queue=False)


def saved_images(out_dir: Path) -> list[str]:
    """The newest PNGs under ``<out>/txt2img`` and ``<out>/img2img``, newest first; links are
    followed only to files under ``out_dir``."""
    from gouache.server.ui.files import inside

    out_dir = out_dir.resolve()
    files = [real for mode in ("txt2img", "img2img") for p in (out_dir / mode).glob("*.png")
             if (real := inside(p, out_dir)) is not None]
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [str(p) for p in files[:GALLERY_SIZE]]


def gallery_tab(server, files, tab: gr.Tab) -> None:
    """The images saved under ``--out``, listed when the tab opens; picking one shows its
    parameters. ``files``: the UI's :class:`~gouache.server.ui.files.UiFiles`."""
    shown = gr.State([])
    refresh = gr.Button("Refresh")
    with gr.Row():
        gallery = gr.Gallery(label=f"Outputs ({server.config.out_dir})", type="filepath", columns=6, height="auto",
                             interactive=False, scale=3)
        info = gr.Textbox(label="Parameters", lines=8, interactive=False, scale=1)

    def listing():
        images = saved_images(server.config.out_dir)
        return images, images

    def pick(listed: list[str], evt: gr.SelectData):
        path = files.saved(listed[evt.index]) if 0 <= evt.index < len(listed) else None
        return read_parameters(path)[0] if path else ""

    refresh.click(listing, None, [gallery, shown], queue=False)
    tab.select(listing, None, [gallery, shown], queue=False)
    gallery.select(pick, shown, info, queue=False)
