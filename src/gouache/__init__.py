"""gouache: a toolkit for Stable Diffusion.

Nothing heavy happens on import; the public API is loaded on first use::

    import gouache
    images = gouache.txt2img("a red circle on a blue background", seed=1)
    images[0].save("circle.png")
    edited = gouache.img2img("a blue circle on a blue background", "circle.png", denoising_strength=0.6)
"""

from __future__ import annotations

from gouache.version import __version__  # noqa: F401  (gouache.__version__)

_LAZY = {
    "GenerationRequest": ("gouache.pipelines.request", "GenerationRequest"),
    "Img2ImgRequest": ("gouache.pipelines.request", "Img2ImgRequest"),
    "InpaintRequest": ("gouache.pipelines.request", "InpaintRequest"),
    "GeneratedImage": ("gouache.pipelines.request", "GeneratedImage"),
    "load_model": ("gouache.pipelines.model", "load_model"),
    "LoadedModel": ("gouache.pipelines.model", "LoadedModel"),
    "GouacheError": ("gouache.errors", "GouacheError"),
    "LossGuidance": ("gouache.sampling.loss", "LossGuidance"),
    "colour_loss": ("gouache.sampling.loss", "colour_loss"),
    "PlotResult": ("gouache.pipelines.xyz", "PlotResult"),
    "expand_prompt": ("gouache.prompts.expand", "expand_prompt"),  # an idea made a prompt by an LLM
    "ExpandedPrompt": ("gouache.prompts.expand", "ExpandedPrompt"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'gouache' has no attribute {name!r}")


def txt2img(prompt: str, *, model=None, progress=None, preview=None, preview_every: int = 5, refiner=None, **options):
    """Generate images from a prompt; ``model`` is a name, a path, a loaded model or None (gouache-tiny).

    Quiet by default; ``progress=True`` draws a bar on stderr, and a function ``progress(i, n)`` is
    called after each step instead (every function here takes it). ``preview(step, total, image)`` gets a cheap
    preview of the latents every ``preview_every`` steps (:mod:`gouache.sampling.preview`).

    Options are :class:`~gouache.pipelines.request.GenerationRequest` fields (``negative_prompt``,
    ``steps``, ``cfg_scale``, ``sampler``, ``scheduler``, ``seed``, ``width``, ``height``,
    ``batch_size``, ``n_iter``, ``loss_guidance``, ``refiner_switch_at``), and image prompts:
    ``ip_adapter`` (``"NAME[:SCALE]"``, a path, an :class:`~gouache.adapters.ip_spec.IPAdapterSpec` or
    a list), ``ip_image`` (a PIL image or a path, or a list) and ``ip_style`` (style transfer; every
    function here takes them). ``refiner`` (an SDXL
    refiner: a name, a path or a loaded model) takes over after ``refiner_switch_at`` of the steps. Returns a list of :class:`~gouache.pipelines.request.GeneratedImage`.

    >>> images = txt2img("a red circle on a blue background", seed=7, steps=20)   # doctest: +SKIP
    >>> images[0].infotext.splitlines()[-1]                                        # doctest: +SKIP
    'Steps: 20, Sampler: DPM++ 2M, CFG scale: 5.0, Seed: 7, Size: 64x64, Model hash: ..., Model: gouache-tiny, ...'
    """
    from gouache.pipelines.model import LoadedModel, load_model
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.txt2img import txt2img as run
    from gouache.progress import progress_option

    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    request = GenerationRequest(prompt=prompt, model=loaded.path, **_with_ip_adapter(options))
    return run(loaded, request, progress_option(progress, "txt2img"), preview, preview_every, refiner=None if refiner is None else _loaded(refiner))


def txt2vid(prompt: str, *, model=None, motion=None, output=None, overwrite: bool = False, progress=None, preview=None,
            preview_every: int = 5, init_image=None, motion_loras=(), **options):
    """A short video from a prompt with an AnimateDiff motion adapter (:mod:`gouache.pipelines.video`).

    ``motion``: ``"NAME[:SCALE]"`` (a name in ``$GOUACHE_HOME/motion`` or a path); ``motion_loras``:
    ``["NAME[:WEIGHT]", ...]``; ``init_image``: a PIL image or a path (image-to-video). Options are
    :class:`~gouache.pipelines.video.VideoRequest` fields (``frames``, ``fps``, ``context_length``,
    ``context_overlap``, ``closed_loop``, ``video_format``, ``denoising_strength``, ``init_frames``,
    ``free_init`` (FreeInit's passes) with ``free_init_filter``/``free_init_ds``/``free_init_dt``, and
    those of :func:`txt2img`). With ``output`` (a ``.gif``/``.webp``/``.mp4`` file, or a folder for PNG
    frames) the video and its sidecar ``.txt`` are written there. Returns a
    :class:`~gouache.pipelines.video.GeneratedVideo` (``frames``, ``infotext``, ``path``, ``save``).

    >>> video = txt2vid("a red circle on a blue background", motion="mm_tiny", frames=16, seed=1,
    ...                 output="circle.gif")                                          # doctest: +SKIP
    >>> len(video.frames), video.path                                                 # doctest: +SKIP
    (16, PosixPath('circle.gif'))
    """
    from gouache.adapters.motion import parse_motion
    from gouache.pipelines.video import VideoRequest, txt2vid as run
    from gouache.progress import progress_option

    if motion is not None:
        options["motion"], options["motion_scale"] = parse_motion(motion)
    options["motion_loras"] = tuple(parse_motion(m) for m in motion_loras)
    if output is not None and "video_format" not in options:
        from pathlib import Path

        options["video_format"] = Path(output).suffix.lower().lstrip(".") or "png"
    image = _image(init_image, "init image")
    loaded = _loaded(model)
    request = VideoRequest(prompt=prompt, model=loaded.path, init_image=image, **_with_ip_adapter(options))
    request.validate()
    if output is not None:
        from gouache.metadata.video import check_output

        check_output(output, overwrite)
    video = run(loaded, request, progress_option(progress, "video"), preview, preview_every)[0]
    if output is not None:
        video.save(output, overwrite=overwrite)
    return video


def xyz(prompt: str, *, x, y=None, z=None, model=None, progress=None, vary_seeds: str = "",
        keep_random_seeds: bool = False, **options):
    """AUTOMATIC1111's X/Y/Z plot: one image per combination of the axes' values, each an ordinary
    txt2img request (options as :func:`txt2img`) with those values applied, and a labelled grid per
    Z value. Axes are ``"LABEL: VALUES"`` (:mod:`gouache.pipelines.axes`: ``"Sampler: Euler, DPM++ 2M"``,
    ``"CFG scale: 3-9 (+2)"``, ``"Prompt S/R: red, green"``); at most 400 images. A seed of -1 is
    picked once for every cell unless ``keep_random_seeds``; ``vary_seeds="x"`` (or ``"xy"``, ...)
    adds the cell's index along those axes to its seed. Returns a
    :class:`~gouache.pipelines.xyz.PlotResult` (``grids``, ``images``, ``save_plot``).

    >>> result = xyz("a red circle on a blue background", x="Sampler: Euler, DPM++ 2M",
    ...              y="CFG scale: 3-9 (+3)", seed=1, steps=8)                       # doctest: +SKIP
    >>> result.grids[0].save("grid.png"); len(result.images)                        # doctest: +SKIP
    6
    """
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.xyz import plan_xyz, run_plot, txt2img_cells
    from gouache.progress import progress_option

    loaded = _loaded(model)
    request = GenerationRequest(prompt=prompt, model=loaded.path, **_with_ip_adapter(options))
    plot = plan_xyz(request, x, y, z, vary_seeds, keep_random_seeds)
    return run_plot(plot, txt2img_cells(loaded), progress_option(progress, "xyz"))


def prompt_matrix(prompt: str, *, model=None, progress=None, put_at_start: bool = False, different_seeds: bool = False,
                  prompt_type: str = "positive", delimiter: str = "comma", **options):
    """AUTOMATIC1111's prompt matrix: ``"fixed part|optional 1|optional 2"`` makes one image per
    combination of the optional parts (2, 4, 8, ... images; at most 8 parts) and a grid whose
    legends show which parts each cell has. ``prompt_type="negative"`` splits the negative prompt
    instead; ``delimiter`` is ``"comma"`` or ``"space"``. Options as :func:`txt2img`; returns a
    :class:`~gouache.pipelines.xyz.PlotResult`.

    >>> result = prompt_matrix("a red circle|on a blue background|outline style", seed=3)  # doctest: +SKIP
    """
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.xyz import plan_prompt_matrix, run_plot, txt2img_cells
    from gouache.progress import progress_option

    loaded = _loaded(model)
    request = GenerationRequest(prompt=prompt, model=loaded.path, **_with_ip_adapter(options))
    plot = plan_prompt_matrix(request, put_at_start, different_seeds, prompt_type, delimiter)
    return run_plot(plot, txt2img_cells(loaded), progress_option(progress, "prompt matrix"))


def _with_ip_adapter(options: dict) -> dict:
    """``ip_adapter=`` (a name ``"NAME[:SCALE]"``, a path, an IPAdapterSpec or a list), ``ip_image=``
    (its image prompt(s): PIL images or paths) and ``ip_style=`` as the request's ``ip_adapters``."""
    if "ip_adapter" not in options:
        if "ip_image" in options or "ip_style" in options:
            from gouache.errors import InvalidArgument

            raise InvalidArgument("`ip_image` and `ip_style` need `ip_adapter`, e.g. "
                                  "ip_adapter=\"gouache-tiny-ip-adapter\", ip_image=\"shape.png\"")
        return options
    from gouache.adapters.ip_spec import specs_from_option

    options = dict(options)
    specs = specs_from_option(options.pop("ip_adapter"), options.pop("ip_image", None), options.pop("ip_style", False))
    return {**options, "ip_adapters": specs}


def _loaded(model):
    from gouache.pipelines.model import LoadedModel, load_model

    return model if isinstance(model, LoadedModel) else load_model(model)


def _image(image, what: str):
    from PIL import Image

    from gouache.images import load_image

    return image if isinstance(image, Image.Image) or image is None else load_image(image, what)


def img2img(prompt: str, init_image, *, model=None, progress=None, **options):
    """Repaint ``init_image`` (a PIL image or a path) guided by ``prompt``.

    Options are :class:`~gouache.pipelines.request.Img2ImgRequest` fields: those of :func:`txt2img`
    plus ``denoising_strength`` (0 keeps the image, 1 replaces it; the last ``int(steps × strength)``
    steps run) and ``resize_mode`` (0 just resize, 1 crop and resize, 2 resize and fill).

    >>> images = img2img("a blue square", "circle.png", denoising_strength=0.6, seed=1)  # doctest: +SKIP
    """
    from gouache.pipelines.img2img import img2img as run
    from gouache.progress import progress_option
    from gouache.pipelines.request import Img2ImgRequest

    image = _image(init_image, "init image")  # a bad path fails before the model loads
    loaded = _loaded(model)
    return run(loaded, Img2ImgRequest(prompt=prompt, model=loaded.path, init_image=image, **_with_ip_adapter(options)),
               progress_option(progress, "img2img"))


def inpaint(prompt: str, init_image, mask=None, *, model=None, progress=None, **options):
    """Repaint where ``mask`` is white, or what ``mask_prompt`` names (then ``mask`` is None); images
    are PIL images or paths. Pixels the blurred mask does not reach are returned unchanged.

    Options are :class:`~gouache.pipelines.request.InpaintRequest` fields: those of :func:`img2img`
    plus ``mask_blur``, ``inpainting_fill`` (0 fill, 1 original, 2 latent noise, 3 latent nothing),
    ``inpaint_full_res`` ("Only masked"), ``inpaint_full_res_padding``, and the mask from words:
    ``mask_prompt``, ``mask_threshold``, ``mask_dilate``, ``mask_refine``, ``mask_invert``, ``segmenter``.

    >>> images = inpaint("a blue square", "photo.png", "mask.png", denoising_strength=0.8)  # doctest: +SKIP
    >>> images = inpaint("a red circle on a green background", "photo.png", mask_prompt="the background",
    ...                  inpainting_fill=2, denoising_strength=1.0)                           # doctest: +SKIP
    """
    from gouache.pipelines.inpaint import inpaint as run
    from gouache.progress import progress_option
    from gouache.pipelines.request import InpaintRequest

    image, mask = _image(init_image, "init image"), _image(mask, "mask")
    loaded = _loaded(model)
    request = InpaintRequest(prompt=prompt, model=loaded.path, init_image=image, mask=mask, **_with_ip_adapter(options))
    return run(loaded, request, progress_option(progress, "inpaint"))


def mask(image, words: str, *, threshold: float = 0.5, dilate: int = 0, blur: int = 0, invert: bool = False,
         refine: int = 4, segmenter=None, device: str = "cpu"):
    """A black-and-white ``L`` mask of ``image`` (a PIL image or a path), white where ``words`` match,
    by ``segmenter`` (a name, a folder, ``rembg:MODEL``, a loaded one, or None: the built-in
    gouache-tiny-clipseg); see :mod:`gouache.vision.segment`.

    >>> gouache.mask("photo.png", "the background", dilate=4).save("mask.png")   # doctest: +SKIP
    """
    from gouache.vision.segment import MaskOptions, mask_image

    return mask_image(_image(image, "image"), words, MaskOptions(threshold, dilate, blur, invert, refine), segmenter,
                      device)


def remove_background(image, *, refine: int = 4, segmenter=None, device: str = "cpu"):
    """``image`` (a PIL image or a path) as RGBA with its background transparent, soft at the edges.

    >>> gouache.remove_background("photo.png").save("cut-out.png")              # doctest: +SKIP
    """
    from gouache.vision.segment import remove_background as run

    return run(_image(image, "image"), segmenter, device, refine)


def outpaint(prompt: str, init_image, *, left: int = 0, right: int = 0, up: int = 0, down: int = 0,
             model=None, progress=None, **options):
    """Grow ``init_image`` by ``left``/``right``/``up``/``down`` pixels (multiples of 8) and paint the
    new area; options as :func:`inpaint` (without ``mask``).

    >>> images = outpaint("a wide beach", "photo.png", right=128, denoising_strength=0.9)  # doctest: +SKIP
    """
    from gouache.pipelines.inpaint import outpaint as run
    from gouache.progress import progress_option
    from gouache.pipelines.request import InpaintRequest

    image = _image(init_image, "init image")
    loaded = _loaded(model)
    request = InpaintRequest(prompt=prompt, model=loaded.path, init_image=image, **_with_ip_adapter(options))
    return run(loaded, request, left, right, up, down, progress_option(progress, "outpaint"))


def depth2img(prompt: str, init_image, depth_map=None, *, model=None, progress=None, **options):
    """img2img with an SD 2 depth model that keeps ``init_image``'s layout; ``depth_map`` (white =
    near; a PIL image or a path) or None to estimate it with the model's DPT estimator, if it has one.

    >>> images = depth2img("a stone castle", "photo.png", "depth.png", model="sd2-depth", denoising_strength=0.8)  # doctest: +SKIP
    """
    from gouache.pipelines.depth import depth2img as run
    from gouache.progress import progress_option
    from gouache.pipelines.request import Depth2ImgRequest

    image, depth = _image(init_image, "init image"), _image(depth_map, "depth map")
    loaded = _loaded(model)
    request = Depth2ImgRequest(prompt=prompt, model=loaded.path, init_image=image, depth_map=depth,
                               **_with_ip_adapter(options))
    return run(loaded, request, progress_option(progress, "depth2img"))
