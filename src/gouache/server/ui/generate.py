"""The generation tabs (txt2img, img2img, inpaint, upscale) and the checkpoint picker.

Each tab is a prompt, A1111's settings, an image prompt (IP-Adapter) and an output panel; its
Generate button builds the request, checks it where it enters (the dataclass's ``validate`` and
the server's limits, the same checks as the API's), and queues it on the server's worker, then
streams the progress and the previews until the saved PNGs come back.
"""

from __future__ import annotations

from concurrent.futures import wait
from typing import Any, Callable

import gradio as gr
from PIL import Image

from gouache.errors import GouacheError
from gouache.images import RESIZE_MODES
from gouache.pipelines.model import default_cfg_scale
from gouache.pipelines.request import (HR_UPSCALERS, MASKED_CONTENT, GenerationRequest, Img2ImgRequest, InpaintRequest,
                                       UpscaleRequest)

Controls = dict[str, Any]  # request field name -> gradio component


# -- pickers ----------------------------------------------------------------------------------------


def model_picker(server) -> gr.Dropdown:
    """A1111's "Stable Diffusion checkpoint": picking one loads it on the worker, as /options does."""
    from gouache.models.registry import list_models

    with gr.Row():
        model = gr.Dropdown([e.name for e in list_models()], value=server.generator.checkpoint,
                            label="Stable Diffusion checkpoint", scale=4)
        refresh = gr.Button("↻", elem_classes="gouache-tool-button", scale=0)
    status = gr.Markdown()

    def load(name):
        if not name:
            return ""
        try:
            server.queue.submit("load", lambda t: server.generator.switch(name, t)).result()
        except GouacheError as err:
            raise gr.Error(str(err)) from None
        return f"Loaded {name}."

    model.input(load, model, status)
    refresh.click(lambda: gr.Dropdown(choices=[e.name for e in list_models()]), None, model, queue=False)
    return model


def _network_choices() -> tuple[list[str], list[str]]:
    from gouache.adapters.embeddings import EmbeddingLibrary
    from gouache.adapters.lora import list_loras

    return sorted(list_loras()), sorted(EmbeddingLibrary.scan().names())


def prompts(tab: str, server=None) -> tuple[Controls, gr.Button, gr.Button]:
    """Prompt, negative prompt, the LoRA and embedding pickers (they add ``<lora:NAME:1>`` or the
    embedding's name to the prompt), and the Generate and Interrupt buttons (ids ``<tab>-...``);
    with a ``server`` that has an LLM, the ✨ beside the prompt (:mod:`gouache.server.ui.expand`)."""
    from gouache.server.ui import expand

    loras, embeddings = _network_choices()
    with gr.Row():
        with gr.Column(scale=5):
            with gr.Row():
                prompt = gr.Textbox(label="Prompt", lines=3, placeholder="a red circle on a blue background",
                                    elem_id=f"{tab}-prompt", scale=20)
                sparkle = expand.button(server, tab)
            negative = gr.Textbox(label="Negative prompt", lines=2, elem_id=f"{tab}-negative-prompt")
            expand.wire(server, sparkle, prompt, negative)
        with gr.Column(scale=2):
            generate = gr.Button("Generate", variant="primary", elem_id=f"{tab}-generate")
            interrupt = gr.Button("Interrupt", variant="stop", elem_id=f"{tab}-interrupt")
            with gr.Row():
                lora = gr.Dropdown(loras, value=None, label="LoRA", scale=3)
                embedding = gr.Dropdown(embeddings, value=None, label="Embedding", scale=3)
                refresh = gr.Button("↻", elem_classes="gouache-tool-button", scale=0)
            # A1111's "Styles": rows of $GOUACHE_HOME/styles.csv, applied in the order picked
            styles = gr.Dropdown(_style_choices(), value=[], multiselect=True, label="Styles",
                                 elem_id=f"{tab}-styles")
    lora.input(lambda p, name: (f"{p} <lora:{name}:1>".strip() if name else p, None), [prompt, lora], [prompt, lora],
               queue=False)
    embedding.input(lambda p, name: (f"{p} {name}".strip() if name else p, None), [prompt, embedding],
                    [prompt, embedding], queue=False)

    def relist():
        loras, embeddings = _network_choices()
        return gr.Dropdown(choices=loras), gr.Dropdown(choices=embeddings), gr.Dropdown(choices=_style_choices())

    refresh.click(relist, None, [lora, embedding, styles], queue=False)
    return {"prompt": prompt, "negative_prompt": negative, "styles": styles}, generate, interrupt


def _style_choices() -> list[str]:
    """The styles' names; a styles file that cannot be read lists none (a request naming one says why)."""
    from gouache.errors import GouacheError
    from gouache.prompts.styles import load_styles

    try:
        return list(load_styles())
    except GouacheError:
        return []


def settings(tab: str, size: bool = True, cfg: float = 7.0) -> Controls:
    """A1111's sampling settings; a width or height of 0 is the model's native size."""
    from gouache.sampling.samplers import SAMPLERS, SCHEDULES

    c: Controls = {}
    with gr.Row():
        c["sampler"] = gr.Dropdown(list(SAMPLERS), value="DPM++ 2M", label="Sampling method", allow_custom_value=True)
        c["scheduler"] = gr.Dropdown(list(SCHEDULES), value="Automatic", label="Schedule type")
    c["steps"] = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id=f"{tab}-steps")
    if size:
        with gr.Row():
            c["width"] = gr.Slider(0, 2048, value=0, step=8, label="Width (0: the model's size)")
            c["height"] = gr.Slider(0, 2048, value=0, step=8, label="Height (0: the model's size)")
    with gr.Row():
        c["n_iter"] = gr.Slider(1, 16, value=1, step=1, label="Batch count")
        c["batch_size"] = gr.Slider(1, 8, value=1, step=1, label="Batch size")
    c["cfg_scale"] = gr.Slider(0, 30, value=cfg, step=0.5, label="CFG Scale")  # the server's model's default
    c["seed"] = gr.Number(-1, precision=0, label="Seed (-1: random)", elem_id=f"{tab}-seed")
    return c


def output_panel(tab: str) -> Controls:
    """Progress and live preview, the gallery of saved images, and the first image's parameters."""
    return {
        "progress": gr.Markdown(elem_id=f"{tab}-progress"),
        "preview": gr.Image(label="Preview", visible=False, interactive=False),
        "gallery": gr.Gallery(label="Output", type="filepath", columns=4, height="auto", elem_id=f"{tab}-gallery",
                              interactive=False),
        "info": gr.Textbox(label="Generation parameters", lines=3, interactive=False, buttons=["copy"],
                           elem_id=f"{tab}-info"),
    }


# -- running a request ------------------------------------------------------------------------------


def run_request(server, mode: str, request: GenerationRequest):
    """Queue ``request`` on the server's worker; yield (progress, preview, gallery, info) updates
    while it runs, then the saved files (``<out>/<mode>``) and the first one's infotext."""
    from gouache.server.schemas import check_limits

    trackers = []

    def work(tracker):
        trackers.append(tracker)
        return server.generator.render(request, mode, tracker)

    try:
        request.validate()
        check_limits(request, server.config)
        future = server.queue.submit(mode, work)
    except GouacheError as err:
        raise gr.Error(str(err)) from None
    while not wait([future], timeout=0.4).done:
        yield *_progress(server, trackers[0] if trackers else None), gr.update(), gr.update()
    try:
        saved = future.result()
    except GouacheError as err:
        raise gr.Error(str(err)) from None
    info = saved[0][1] if saved else "Interrupted."
    yield "", gr.update(value=None, visible=False), [str(path) for path, _ in saved], info


def interrogation(server, image: Image.Image | None) -> str:
    """A1111's Interrogate CLIP prompt for ``image``, run on the server's worker like a generation."""
    if image is None:
        raise gr.Error("Drop an image first.")
    try:
        from gouache.server.schemas import check_pixels

        check_pixels("image", image.size, server.config.max_pixels)
        return server.queue.submit("interrogate", lambda tracker: server.generator.interrogate(image, tracker)).result()
    except GouacheError as err:
        raise gr.Error(str(err)) from None


def _progress(server, tracker):
    """A1111's progress bar, as text; the preview appears once the pipeline has shown one."""
    if tracker is None:
        return f"Waiting in the queue ({server.queue.waiting} jobs)…", gr.update()
    if not tracker.steps:
        return "Loading the model…", gr.update()
    text = f"Step {tracker.step}/{tracker.steps} ({100 * tracker.fraction():.0f}%)"
    return text, gr.update(value=tracker.preview, visible=True) if tracker.preview is not None else gr.update()


def wire(server, mode: str, make: Callable[[dict], GenerationRequest], inputs: Controls, model,
         generate: gr.Button, interrupt: gr.Button, out: Controls) -> None:
    """Generate → ``make({field: value})`` → :func:`run_request`; Interrupt stops the running job."""
    components = {**inputs, "model": model}

    def on_generate(data: dict):
        values = {name: data[c] for name, c in components.items()}
        try:
            request = make(values)
        except GouacheError as err:
            raise gr.Error(str(err)) from None
        for progress, preview, files, info in run_request(server, mode, request):
            # the saved files as an update, like the progress updates before them: Gradio then files
            # its cached copies under the gallery itself, which delete_cache cleans; a plain value
            # after an update goes through the session's own copy of the gallery, which nothing cleans
            yield progress, preview, gr.update(value=files) if isinstance(files, list) else files, info

    outputs = [out["progress"], out["preview"], out["gallery"], out["info"]]
    generate.click(on_generate, set(components.values()), outputs, concurrency_limit=None)
    interrupt.click(server.queue.interrupt, None, None, queue=False)


def common_fields(v: dict) -> dict:
    """The request fields every tab has, from the controls' values (the image prompt's too:
    :func:`gouache.server.ui.image_prompt.units`)."""
    from gouache.server.ui import image_prompt

    return {
        "prompt": v["prompt"], "negative_prompt": v["negative_prompt"], "model": v["model"] or None,
        "steps": int(v["steps"]), "cfg_scale": float(v["cfg_scale"]), "sampler": v["sampler"],
        "scheduler": v["scheduler"], "seed": int(v["seed"] if v["seed"] is not None else -1),
        "width": int(v["width"]) or None if "width" in v else None,
        "height": int(v["height"]) or None if "height" in v else None,
        "batch_size": int(v["batch_size"]), "n_iter": int(v["n_iter"]),
        "ip_adapters": image_prompt.units(v),
        "styles": tuple(v.get("styles") or ()),
    }


# -- tabs -------------------------------------------------------------------------------------------


def _tab(server, model, tab: str, mode: str, extra: Callable[[], Controls], make, size: bool = True,
         image: Callable[[], Controls] | None = None) -> Controls:
    """A tab's layout: prompts on top; input image, settings and mode's controls left; outputs
    right, the image prompt (:mod:`gouache.server.ui.image_prompt`) under the mode's controls.
    ``mode`` is the output folder (A1111's: inpainting and SD upscale are img2img)."""
    from gouache.server.ui import image_prompt

    inputs, generate, interrupt = prompts(tab, server)
    with gr.Row():
        with gr.Column():
            if image is not None:
                inputs.update(image())
            inputs.update(settings(tab, size=size, cfg=default_cfg_scale(server.generator.checkpoint)))
            inputs.update(extra())
            inputs.update(image_prompt.controls(tab))
        with gr.Column():
            out = output_panel(tab)
    wire(server, mode, make, inputs, model, generate, interrupt, out)
    return {**inputs, **out}


def txt2img_tab(server, model) -> Controls:
    from gouache.server.ui import xyz

    plot_button = []

    def hires() -> Controls:
        with gr.Accordion("Hires. fix", open=False):
            c = {"enable_hr": gr.Checkbox(False, label="Hires. fix")}
            with gr.Row():
                c["hr_upscaler"] = gr.Dropdown(list(HR_UPSCALERS), value="Latent", label="Upscaler")
                c["hr_scale"] = gr.Slider(1, 4, value=2, step=0.05, label="Upscale by")
            with gr.Row():
                c["hr_second_pass_steps"] = gr.Slider(0, 150, value=0, step=1, label="Hires steps (0: as many)")
                c["denoising_strength"] = gr.Slider(0, 1, value=0.7, step=0.01, label="Denoising strength")
        plot, button = xyz.controls("txt2img")  # the X/Y/Z plot section, under the hires fix
        plot_button.append(button)
        return {**c, **plot}

    def make(v: dict) -> GenerationRequest:
        return GenerationRequest(**common_fields(v), enable_hr=bool(v["enable_hr"]), hr_scale=float(v["hr_scale"]),
                                 hr_upscaler=v["hr_upscaler"], hr_second_pass_steps=int(v["hr_second_pass_steps"]),
                                 denoising_strength=float(v["denoising_strength"]))

    controls = _tab(server, model, "txt2img", "txt2img", hires, make)
    xyz.wire(server, controls, model, plot_button[0], make)
    return controls


def _strength(default: float) -> Controls:
    return {"denoising_strength": gr.Slider(0, 1, value=default, step=0.01, label="Denoising strength")}


def _need(image, what: str) -> Image.Image:
    if image is None:
        raise gr.Error(f"Drop {what} first.")
    return image


def img2img_tab(server, model) -> Controls:
    def extra() -> Controls:
        modes = list(RESIZE_MODES.values())  # A1111's resize_mode 0, 1, 2
        return {**_strength(0.75), "resize_mode": gr.Radio(modes, value=modes[0], type="index",
                                                             label="Resize mode")}

    def make(v: dict) -> Img2ImgRequest:
        return Img2ImgRequest(**common_fields(v), init_image=_need(v["init_image"], "an image"),
                              denoising_strength=float(v["denoising_strength"]), resize_mode=v["resize_mode"] or 0)

    buttons = []

    def image() -> Controls:
        picture = gr.Image(label="Image", type="pil", image_mode=None, elem_id="img2img-image")
        buttons.append(gr.Button("Interrogate CLIP", elem_id="img2img-interrogate"))
        return {"init_image": picture}

    controls = _tab(server, model, "img2img", "img2img", extra, make, image=image)
    buttons[0].click(lambda picture: interrogation(server, picture), controls["init_image"], controls["prompt"],
                     concurrency_limit=None)
    return controls


def inpaint_tab(server, model) -> Controls:
    """Paint the area to repaint over the image (white brush), or name it in "Mask from words"
    (:mod:`gouache.server.ui.masks`); it becomes the request's mask."""
    from gouache.server.ui import masks

    preview = []

    def image() -> Controls:
        brush = gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=12)
        editor = gr.ImageEditor(label="Image (paint the area to repaint)", type="pil", brush=brush,
                                eraser=gr.Eraser(), layers=False, image_mode="RGBA", elem_id="inpaint-editor")
        c, button, shown = masks.words_controls("inpaint")
        preview.extend((button, shown))
        return {"editor": editor, **c}

    def extra() -> Controls:
        c = _strength(0.75)
        c["mask_blur"] = gr.Slider(0, 64, value=4, step=1, label="Mask blur")
        c["inpainting_fill"] = gr.Radio(list(MASKED_CONTENT.values()), value="original", type="index",
                                        label="Masked content")
        c["inpaint_full_res"] = gr.Radio(["Whole picture", "Only masked"], value="Whole picture", type="index",
                                         label="Inpaint area")
        c["inpaint_full_res_padding"] = gr.Slider(0, 256, value=32, step=4, label="Only masked padding, pixels")
        c["keep_edges"] = gr.Slider(0, 2, value=0, step=0.05, elem_id="inpaint-keep-edges",
                                    label="Keep edges: a canny ControlNet on the image at this weight (0: off)")
        return c

    def make(v: dict) -> InpaintRequest:
        init, painted = editor_image_and_mask(v["editor"])
        return InpaintRequest(**common_fields(v), init_image=init, **masks.words_fields(v, painted),
                              denoising_strength=float(v["denoising_strength"]), mask_blur=int(v["mask_blur"]),
                              inpainting_fill=v["inpainting_fill"], inpaint_full_res=bool(v["inpaint_full_res"]),
                              inpaint_full_res_padding=int(v["inpaint_full_res_padding"]),
                              keep_edges=float(v["keep_edges"]))

    controls = _tab(server, model, "inpaint", "img2img", extra, make, image=image)
    button, shown = preview
    words = [controls[n] for n in ("mask_prompt", "mask_threshold", "mask_invert", "segmenter")]
    button.click(lambda value, *rest: masks.preview_mask(server, editor_image_and_mask(value)[0], *rest),
                 [controls["editor"], *words], shown, concurrency_limit=None)
    return controls


def editor_image_and_mask(value: dict | None) -> tuple[Image.Image, Image.Image]:
    """The image under an ImageEditor's strokes, and the strokes as a mask (white = painted)."""
    background = _need((value or {}).get("background"), "an image")
    mask = Image.new("L", background.size, 0)
    for layer in value.get("layers") or []:
        if layer is not None:
            alpha = layer.convert("RGBA").getchannel("A").point(lambda a: 255 if a > 0 else 0)
            mask.paste(255, (0, 0), alpha.resize(background.size))
    return background.convert("RGB"), mask


def upscale_tab(server, model) -> Controls:
    """A1111's "SD upscale": Lanczos, then img2img in overlapping tiles at a low strength."""
    def extra() -> Controls:
        c = _strength(0.3)
        c["scale"] = gr.Slider(1, 8, value=2, step=0.25, label="Scale factor")
        c["tile"] = gr.Slider(0, 2048, value=0, step=8, label="Tile size (0: the model's size)")
        c["overlap"] = gr.Slider(0, 512, value=0, step=8, label="Tile overlap (0: a quarter of a tile)")
        return c

    def make(v: dict) -> UpscaleRequest:
        return UpscaleRequest(**common_fields(v), init_image=_need(v["init_image"], "an image").convert("RGB"),
                              denoising_strength=float(v["denoising_strength"]), scale=float(v["scale"]),
                              tile=int(v["tile"]) or None, overlap=int(v["overlap"]) or None)

    image = lambda: {"init_image": gr.Image(label="Image", type="pil", image_mode=None)}  # noqa: E731
    return _tab(server, model, "upscale", "img2img", extra, make, size=False, image=image)
