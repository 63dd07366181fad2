"""AUTOMATIC1111's request and response shapes, and their conversion to gouache's requests.

The fields, their names and defaults are those of A1111's ``/sdapi/v1`` (``modules/api/models.py``;
see ``reference/a1111-api.md``): every key A1111 knows is accepted, unknown keys are ignored, and
``null`` means the default. ``styles`` name rows of the server's ``styles.csv`` and the prompts may hold
dynamic prompts (``{a|b}``, ``__name__`` of the server's wildcards folder: :mod:`gouache.pipelines.prompting`).
Fields gouache has no use for (``restore_faces``, ``eta``,
``alwayson_scripts`` other than ControlNet's, whose IP-Adapter units go to gouache's IP-Adapter,
...) are accepted and ignored. Checking the values is
left to the request dataclasses' ``validate()``, so the API and the CLI give the same messages.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
from dataclasses import replace
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gouache.errors import GouacheError, InvalidArgument
from gouache.pipelines.fields import api_names, api_settings, api_values
from gouache.pipelines.request import GenerationRequest, Img2ImgRequest, InpaintRequest, request_from_infotext


class RequestTooLarge(InvalidArgument):
    """A request body or image over the server's limits (HTTP 413)."""


class _A1111Body(BaseModel):
    """Fields of A1111's ``StableDiffusionProcessing``, shared by txt2img and img2img."""

    model_config = ConfigDict(extra="ignore")

    prompt: str | list[str] = ""
    negative_prompt: str | list[str] = ""
    styles: list[str] | None = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = None
    sampler_index: str | None = None  # absent: gouache's default sampler (A1111's API would use Euler)
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    # absent (or null): the model's defaults, as in the CLI, Python and the UI — 20 steps, its native
    # size, its CFG scale (7; 5 for gouache-tiny). A1111's API would take 50 steps at 512x512, CFG 7.
    steps: int | None = None
    cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    comments: dict[str, Any] | None = None
    force_task_id: str | None = None
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    send_images: bool = True
    save_images: bool = False
    infotext: str | None = None
    # gouache's own: "compel" reads the prompts with compel's syntax (docs/compel.md); absent: A1111's
    prompt_syntax: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data):
        # A1111's fields are all Optional and clients send null for "the default"; "" seeds too
        if isinstance(data, dict):
            return {k: v for k, v in data.items()
                    if v is not None and not (k in ("seed", "subseed") and v == "")}
        return data


class Txt2ImgBody(_A1111Body):
    """``POST /sdapi/v1/txt2img``."""

    denoising_strength: float | None = None  # the hires fix's; None: 0.7
    enable_hr: bool = False
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    firstpass_image: str | None = None


class Img2ImgBody(_A1111Body):
    """``POST /sdapi/v1/img2img``; a ``mask`` makes it inpainting (white = repaint)."""

    init_images: list[str] | None = None
    denoising_strength: float = 0.75
    resize_mode: int = 0
    image_cfg_scale: float | None = None
    mask: str | None = None
    mask_blur: int | None = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float | None = None
    latent_mask: str | None = None
    include_init_images: bool = Field(default=False, exclude=True)
    # gouache's own: a mask from words instead of ``mask`` (inpainting_mask_invert inverts it too)
    mask_prompt: str = ""
    mask_threshold: float = 0.5
    mask_dilate: int = 0
    mask_refine: int = 4  # gouache.vision.segment.DEFAULT_REFINE
    segmenter: str | None = None  # a segmenter's name ($GOUACHE_HOME/segmenters, rembg:MODEL); never a path
    # gouache's own: hold the init image's edges while inpainting (a canny unit on it at this weight, the
    # model's default canny ControlNet), as `gouache edit background --keep-edges`; 0: off
    keep_edges: float = 0.0


class ImageResponse(BaseModel):
    """A1111's ``TextToImageResponse`` / ``ImageToImageResponse``: ``info`` is a JSON string."""

    images: list[str]
    parameters: dict[str, Any]
    info: str


class PngInfoBody(BaseModel):
    image: str


class InterrogateBody(BaseModel):
    """``POST /sdapi/v1/interrogate``: an image (base64 or a data URL) and the model, A1111's "clip"."""

    model_config = ConfigDict(extra="ignore")

    image: str = ""
    model: str = "clip"


class InterrogateResponse(BaseModel):
    caption: str


INTERROGATORS = ("clip",)  # A1111 also has "deepdanbooru", a tagger gouache does not include


def interrogate_image(body: InterrogateBody, limits) -> Image.Image:
    """The image of an interrogate body, once its model is known to be one gouache has."""
    if body.model not in INTERROGATORS:
        raise InvalidArgument(f"interrogation model {body.model[:40]!r} is not supported; gouache has "
                              f"{', '.join(repr(m) for m in INTERROGATORS)}")
    if not body.image:
        raise InvalidArgument("`image` is missing: send the image to interrogate, base64-encoded")
    return decode_image("image", body.image, limits.max_pixels)


class RembgBody(BaseModel):
    """``POST /rembg``, the route of AUTOMATIC1111's sd-webui-rembg extension: ``model`` is a
    segmenter's listed name or a rembg model's (null: the server's default segmenter, not the
    extension's ``u2net``, which gouache has only when rembg and ``u2net.onnx`` are installed)."""

    model_config = ConfigDict(extra="ignore")

    input_image: str = ""
    model: str | None = None
    return_mask: bool = False
    alpha_matting: bool = False  # rembg's matting pass: not done (gouache's alpha is the segmenter's soft edge)
    alpha_matting_foreground_threshold: int = 240
    alpha_matting_background_threshold: int = 10
    alpha_matting_erode_size: int = 10


class RembgResponse(BaseModel):
    image: str | None  # a base64 PNG: RGBA cut-out, or the L mask (white = the object); null if interrupted


def rembg_job(body: RembgBody, limits) -> tuple[Image.Image, str]:
    """The image and segmenter name of a ``/rembg`` body, checked before it is queued."""
    from gouache.server.catalog import find_segmenter_name

    if body.alpha_matting:
        raise InvalidArgument("`alpha_matting` is not supported: gouache's cut-out is already soft at the edges "
                              "(the segmenter's probabilities); send alpha_matting: false")
    if body.model == "None":  # the extension's "no removal"
        raise InvalidArgument("`model` 'None' asks for no background removal; name a segmenter from "
                              "/sdapi/v1/segmenters, or leave `model` out for the server's default")
    name = find_segmenter_name(body.model, "model", bare_rembg=True)
    if not body.input_image:
        raise InvalidArgument("`input_image` is missing: send the image, base64-encoded")
    return decode_image("input_image", body.input_image, limits.max_pixels), name


# -- conversion --------------------------------------------------------------------------------


def txt2img_request(body: Txt2ImgBody, limits, options: dict) -> GenerationRequest:
    """The :class:`GenerationRequest` an A1111 txt2img body asks for, checked against ``limits``
    (a :class:`~gouache.server.config.ServerConfig`); ``options`` are the server's /options."""
    fields = _common_fields(body, options)
    fields["controls"] = _controls(body, limits)
    fields["ip_adapters"] = _ip_adapters(body, limits)
    if body.enable_hr:  # hr_upscaler, hr_second_pass_steps, denoising_strength (None: the second pass's 0.7)
        fields.update(enable_hr=True, hr_scale=_hires_scale(body), **api_values(body, "hires"))
        _unsupported(body, {"hr_checkpoint_name": None, "hr_sampler_name": fields["sampler"],
                            "hr_prompt": body.prompt, "hr_negative_prompt": body.negative_prompt})
    request = _with_infotext(GenerationRequest(**fields), body, fields, limits)
    request.validate()
    check_limits(request, limits)
    return request


def img2img_request(body: Img2ImgBody, limits, options: dict) -> Img2ImgRequest:
    """An :class:`Img2ImgRequest`, or an :class:`InpaintRequest` when the body has a ``mask``."""
    if not body.init_images:
        raise InvalidArgument("`init_images` is required: a list with one base64 image (PNG, JPEG or WebP)")
    if len(body.init_images) > 1:
        raise InvalidArgument(f"`init_images` has {len(body.init_images)} images; gouache takes one per request "
                              "(use batch_size for several results)")
    image = decode_image("init_images[0]", body.init_images[0], limits.max_pixels)
    fields = _common_fields(body, options)
    fields["controls"] = _controls(body, limits)
    fields["ip_adapters"] = _ip_adapters(body, limits)
    fields.update(init_image=image, **api_values(body, "img2img"))  # denoising_strength, resize_mode
    # A1111's resize_mode 3 resizes the latents instead of the pixels: the same picture, near enough
    fields["resize_mode"] = 0 if fields["resize_mode"] == 3 else fields["resize_mode"]
    if body.mask is not None and body.mask_prompt:
        raise InvalidArgument("give a `mask` or a `mask_prompt`, not both")
    if body.mask is not None:
        mask = decode_image("mask", body.mask, limits.max_pixels)
        request = InpaintRequest(**fields, **_mask_fields(body, mask, image), keep_edges=body.keep_edges)
    elif body.mask_prompt:
        request = InpaintRequest(**fields, **_words_mask_fields(body), keep_edges=body.keep_edges)
    elif body.keep_edges:
        raise InvalidArgument("`keep_edges` holds the image's edges while a masked area is repainted; give a `mask` "
                              "or a `mask_prompt`, or leave keep_edges out")
    else:
        request = Img2ImgRequest(**fields)
    request = _with_infotext(request, body, fields, limits)
    request.validate()
    check_limits(request, limits)
    return request


# sd-webui-controlnet's module names for what gouache's preprocessors do (others are gouache's own names)
CONTROLNET_MODULES = {"depth_midas": "depth", "depth_leres": "depth", "depth_zoe": "depth", "tile_resample": "tile",
                      "softedge_hed": "softedge", "softedge_pidinet": "softedge", "scribble_hed": "scribble",
                      "scribble_pidinet": "scribble", "scribble_xdog": "scribble", "openpose_full": "openpose",
                      "dw_openpose_full": "openpose", "lineart_standard": "softedge"}


def _controls(body: _A1111Body, limits) -> list:
    """The ControlNet units of sd-webui-controlnet's API (``alwayson_scripts.controlnet.args``) as
    :class:`~gouache.control.spec.ControlSpec`: ``module``, ``model`` (a name in the controlnet folder,
    `` [hash]`` allowed), ``weight``, ``image`` (base64), ``guidance_start``/``guidance_end``; units with
    ``enabled: false`` are skipped. Images come from the body only, never from a path."""
    from gouache.control.spec import ControlSpec

    out = []
    for i, unit in _enabled_units(body, limits):
        where = f"alwayson_scripts.controlnet.args[{i}]"
        if not isinstance(unit, dict):
            raise InvalidArgument(f"`{where}` must be an object with module, model, weight, image, ...")
        module = unit.get("module") or "none"
        if not isinstance(module, str):
            raise InvalidArgument(f"`{where}.module` must be a preprocessor name, got {type(module).__name__}")
        if is_ip_adapter_unit(unit):
            continue  # an image prompt: _ip_adapters
        model = _listed_controlnet(where, unit.get("model"))
        image = unit.get("image") or unit.get("input_image")
        if isinstance(image, dict):  # {"image": b64, "mask": b64} from the extension's newer clients
            image = image.get("image")
        try:
            weight = _finite(unit.get("weight", 1.0))
            start, end = _finite(unit.get("guidance_start", 0.0)), _finite(unit.get("guidance_end", 1.0))
        except (TypeError, ValueError, OverflowError):
            raise InvalidArgument(f"`{where}`: weight, guidance_start and guidance_end must be numbers") from None
        picture = decode_image(f"{where}.image", image, limits.max_pixels) if image else None
        out.append(ControlSpec(CONTROLNET_MODULES.get(module, module), picture, model, weight, start, end))
    return out


def _enabled_units(body: _A1111Body, limits) -> list[tuple[int, object]]:
    """sd-webui-controlnet's units (``alwayson_scripts.controlnet.args``) that are not switched off,
    with their index; ControlNet and IP-Adapter units count together against the server's limit."""
    units = next((v for k, v in (body.alwayson_scripts or {}).items() if k.lower() == "controlnet"), None)
    args = units.get("args") if isinstance(units, dict) else units
    if not args:
        return []
    if not isinstance(args, list):
        raise InvalidArgument("`alwayson_scripts.controlnet.args` must be a list of ControlNet units")
    enabled = [(i, unit) for i, unit in enumerate(args) if not (isinstance(unit, dict) and not unit.get("enabled", True))]
    if len(enabled) > limits.max_controlnets:  # before any image is decoded or net is looked up
        raise InvalidArgument(f"{len(enabled)} ControlNet units, over this server's limit of {limits.max_controlnets} "
                              "(gouache serve --max-controlnets)")
    return enabled


def is_ip_adapter_unit(unit: dict) -> bool:
    """sd-webui-controlnet sends IP-Adapter as a ControlNet unit whose module is one of its
    ``ip-adapter_*`` preprocessors (``ip-adapter_clip_sd15``, ``ip-adapter_clip_sdxl``,
    ``ip-adapter-auto``, ...) or whose model is an IP-Adapter (``ip-adapter_sd15 [6a3f6166]``)."""
    module, model = unit.get("module"), unit.get("model")
    named = lambda v: isinstance(v, str) and v.lower().replace("_", "-").startswith("ip-adapter")  # noqa: E731
    return named(module) or (module in (None, "", "none", "None") and named(model))


def _ip_adapters(body: _A1111Body, limits) -> list:
    """The IP-Adapter units among sd-webui-controlnet's (:func:`is_ip_adapter_unit`) as
    :class:`~gouache.adapters.ip_spec.IPAdapterSpec`: ``model`` (a name from the ip-adapter folder,
    `` [hash]`` allowed; never a path), ``image`` (base64, the image prompt), ``weight`` (the scale),
    and gouache's own ``ip_style`` (InstantStyle's style blocks only)."""
    from gouache.adapters.ip_spec import IPAdapterSpec

    out = []
    for i, unit in _enabled_units(body, limits):
        if not isinstance(unit, dict) or not is_ip_adapter_unit(unit):
            continue
        where = f"alwayson_scripts.controlnet.args[{i}]"
        if "face_id" in str(unit.get("module")).lower() or "pulid" in str(unit.get("module")).lower():
            raise InvalidArgument(f"`{where}.module` {str(unit['module'])[:60]!r}: FaceID and PuLID need InsightFace "
                                  "face embeddings, which gouache does not compute")
        image = unit.get("image") or unit.get("input_image")
        if isinstance(image, dict):
            image = image.get("image")
        if not image:
            raise InvalidArgument(f"`{where}` is an IP-Adapter unit without `image`: send the image prompt, "
                                  "base64-encoded")
        try:
            weight = _finite(unit.get("weight", 1.0))
            start, end = _finite(unit.get("guidance_start", 0.0)), _finite(unit.get("guidance_end", 1.0))
        except (TypeError, ValueError, OverflowError):
            raise InvalidArgument(f"`{where}`: weight, guidance_start and guidance_end must be numbers") from None
        if (start, end) != (0.0, 1.0):
            raise InvalidArgument(f"`{where}`: an IP-Adapter acts on every step in gouache; leave guidance_start "
                                  "at 0 and guidance_end at 1")
        style = unit.get("ip_style", False)
        if not isinstance(style, bool):
            raise InvalidArgument(f"`{where}.ip_style` must be true or false")
        picture = decode_image(f"{where}.image", image, limits.max_pixels)
        out.append(IPAdapterSpec(_listed_ip_adapter(where, unit.get("model")), [picture], weight, style))
    return out


def _listed_ip_adapter(where: str, model) -> str:
    """The weights file of the IP-Adapter a unit names, from the ip-adapter folder's listing by name."""
    from gouache.errors import UnknownName
    from gouache.server.catalog import find_ip_adapter_file

    try:
        return find_ip_adapter_file(model, f"{where}.model")
    except UnknownName as err:
        raise UnknownName(f"{err.args[0]}; over the API, a name, not a path") from None


def _finite(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)) or (isinstance(value, str) and len(value) > 32):
        raise ValueError(value)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _listed_controlnet(where: str, model) -> str | None:
    """The path of the ControlNet a unit names, from the controlnet folder's listing by name (never
    opened as a path): ``None`` for the model's default."""
    from gouache.control.models import find_listed_controlnet

    if model in (None, "", "None", "none"):
        return None
    if not isinstance(model, str):
        raise InvalidArgument(f"`{where}.model` must be a ControlNet name, got {type(model).__name__}")
    if len(model) > 1024:  # no net has such a name; and A1111's title regex is not linear
        raise InvalidArgument(f"`{where}.model` is {len(model)} characters long; name a ControlNet from the listing")
    try:
        return str(find_listed_controlnet(model, hint="; over the API, a name, not a path").path)
    except GouacheError as err:
        raise type(err)(f"`{where}.model`: {err}") from None


def _common_fields(body: _A1111Body, options: dict) -> dict:
    from gouache.server.catalog import find_checkpoint

    overrides = body.override_settings or {}
    model = overrides.get("sd_model_checkpoint")
    if body.script_name:  # X/Y/Z plot or prompt matrix (gouache.server.scripts), else 422
        from gouache.server.scripts import check_script_name

        check_script_name(body.script_name)
    _unsupported(body, {"refiner_checkpoint": None})
    # the body's fields as the field table names them (absent or empty: gouache's defaults, e.g. 20 steps),
    # then the settings: clip skip, A1111's "token_merging_ratio", gouache's deepcache_interval and cfg_truncation
    return {
        "prompt": _one_prompt("prompt", body.prompt),
        "negative_prompt": _one_prompt("negative_prompt", body.negative_prompt),
        "model": None if model in (None, "") else find_checkpoint(model).name,
        **api_values(body, "request"),
        **api_settings(overrides, options),
    }


def _one_prompt(name: str, value: str | list[str]) -> str:
    if isinstance(value, str):
        return value
    if len(value) == 1:
        return value[0]
    raise InvalidArgument(f"`{name}` is a list of {len(value)} prompts; gouache takes one prompt per request")


def _unsupported(body: BaseModel, allowed: dict) -> None:
    """Fields gouache cannot honour: an error when set to anything but ``allowed`` (or empty)."""
    for name, ok in allowed.items():
        value = getattr(body, name)
        if value not in (None, "", "None", ok):
            raise InvalidArgument(f"`{name}` ({value!r}) is not supported by gouache's API; leave it empty")


def _hires_scale(body: Txt2ImgBody) -> float:
    """``hr_scale``, or the scale that ``hr_resize_x``/``hr_resize_y`` (A1111's "Resize to") imply."""
    x, y = body.hr_resize_x, body.hr_resize_y
    if not x and not y:
        return body.hr_scale
    if not body.width or not body.height:
        raise InvalidArgument("`hr_resize_x`/`hr_resize_y` need `width` and `height` (the first pass's size), "
                              "or give hr_scale")
    scales = {v / size for v, size in ((x, body.width), (y, body.height)) if v}
    if len(scales) > 1 and max(scales) - min(scales) > 0.01:
        raise InvalidArgument(f"`hr_resize_x`/`hr_resize_y` {x}x{y} change the aspect ratio of "
                              f"{body.width}x{body.height}; give one of them, or hr_scale")
    return max(scales)


def _mask_fields(body: Img2ImgBody, mask: Image.Image, image: Image.Image) -> dict:
    if body.inpainting_mask_invert not in (0, 1):
        raise InvalidArgument(f"`inpainting_mask_invert` must be 0 or 1, got {body.inpainting_mask_invert!r}")
    if mask.mode == "RGBA" and mask.getextrema()[3][0] < 255:
        mask = mask.getchannel("A")  # A1111's create_binary_mask: a transparent mask's alpha
    mask = mask.convert("L")
    if mask.size != image.size:  # A1111 resizes the mask with the image
        mask = mask.resize(image.size, Image.Resampling.LANCZOS)
    if body.inpainting_mask_invert:
        mask = ImageOps.invert(mask)
    blur = body.mask_blur if body.mask_blur is not None else max(body.mask_blur_x, body.mask_blur_y)
    return {"mask": mask, "mask_blur": blur, **api_values(body, "mask")}


def _words_mask_fields(body: Img2ImgBody) -> dict:
    """The mask from words: ``mask_prompt`` and its options, the segmenter by listed name only (none:
    the server's default, recorded in the infotext by its name)."""
    from gouache.server.catalog import find_segmenter_name

    if body.inpainting_mask_invert not in (0, 1):
        raise InvalidArgument(f"`inpainting_mask_invert` must be 0 or 1, got {body.inpainting_mask_invert!r}")
    blur = body.mask_blur if body.mask_blur is not None else max(body.mask_blur_x, body.mask_blur_y)
    return {**api_values(body, "mask"), "mask_blur": blur, "mask_invert": bool(body.inpainting_mask_invert),
            "segmenter": find_segmenter_name(body.segmenter)}


INFOTEXT_PARAMS_CHARS = 65_536  # an infotext's settings line: LoRA hashes, ControlNet units, extensions' keys


def _with_infotext(request: GenerationRequest, body: _A1111Body, fields: dict, limits) -> GenerationRequest:
    """A1111's ``infotext`` field: what the body does not set comes from the parameters text.

    The text is read for generation parameters only (``paths=False``): ControlNet units and the
    refiner it names are ignored, so it can neither open a file nor replace the body's own units."""
    if not body.infotext:
        return request
    longest = 2 * limits.max_prompt_chars + INFOTEXT_PARAMS_CHARS  # a prompt, a negative prompt, the settings
    if len(body.infotext) > longest:
        raise RequestTooLarge(f"`infotext` is {len(body.infotext)} characters, over this server's limit of {longest} "
                              "(twice --max-prompt-chars, and the settings line)")
    base = request_from_infotext(body.infotext, paths=False)
    names = api_names()  # sampler_name, sampler_index -> sampler
    given = {names.get(k, k) for k in body.model_fields_set} | {"controls", "ip_adapters"}
    keep = {k: v for k, v in vars(request).items() if k in given or k not in fields}
    # the text's prompt was made already: as written, unless the body gives a prompt (then dynamic)
    literal = {"literal_prompts": "prompt" not in given}
    return replace(request, **{**vars(base), **keep, **literal, "model": request.model or base.model})


_AND_WORD = re.compile(r"\bAND\b")  # A1111's split (gouache.prompts.compose.split_and)


def check_limits(request: GenerationRequest, limits) -> None:
    """The server's bounds on one job's work (``gouache serve --max-...``), for API and UI requests
    alike: prompt length and ``AND`` parts, steps, ControlNet units, images per job, pixels of each
    image and of the whole job, and the size of images sent with it. 413 for what was sent, 422 for
    what was asked."""
    for name in ("prompt", "negative_prompt"):
        text = getattr(request, name)
        if isinstance(text, str) and len(text) > limits.max_prompt_chars:
            raise RequestTooLarge(f"`{name}` is {len(text)} characters, over this server's limit of "
                                  f"{limits.max_prompt_chars} (gouache serve --max-prompt-chars)")
    parts = 1 + sum(1 for _ in _AND_WORD.finditer(request.prompt)) if isinstance(request.prompt, str) else 1
    if parts > limits.max_and_parts:
        raise InvalidArgument(f"the prompt has {parts} `AND` parts, over this server's limit of {limits.max_and_parts} "
                              "(each is one more pass of the model per step; gouache serve --max-and-parts)")
    steps = {"steps": request.steps}
    if request.enable_hr:
        steps["hr_second_pass_steps"] = request.hr_second_pass_steps
    for name, value in steps.items():
        if isinstance(value, int) and value > limits.max_steps:
            raise InvalidArgument(f"`{name}` is {value}, over this server's limit of {limits.max_steps} "
                                  "(gouache serve --max-steps)")
    units = len(request.controls) + len(request.ip_adapters)
    if units > limits.max_controlnets:
        raise InvalidArgument(f"{units} ControlNet and IP-Adapter units, over this server's limit of "
                              f"{limits.max_controlnets} (gouache serve --max-controlnets)")
    images = request.batch_size * request.n_iter
    if images > limits.max_batch:
        raise InvalidArgument(f"`batch_size` × `n_iter` = {images} images, over this server's limit of "
                              f"{limits.max_batch} (gouache serve --max-batch)")
    sent = [(name, getattr(request, name, None)) for name in ("init_image", "mask")]
    sent += [(f"ip_adapters[{k}].images[{i}]", image) for k, spec in enumerate(request.ip_adapters)
             for i, image in enumerate(getattr(spec, "images", None) or [])]
    for name, image in sent:
        if isinstance(image, Image.Image):
            check_pixels(name, image.size, limits.max_pixels)
    sizes = [_output_size(request)]
    if request.enable_hr and all(sizes[0]):
        sizes.append(request.hires_size(*sizes[0]))
    for w, h in sizes:
        if w and h and w * h > limits.max_pixels:
            raise InvalidArgument(f"{w}x{h} is {w * h} pixels, over this server's limit of {limits.max_pixels} "
                                  "(gouache serve --max-pixels)")
    w, h = sizes[-1]
    if w and h and w * h * images > limits.max_job_pixels:
        raise InvalidArgument(f"{images} images of {w}x{h} are {w * h * images} pixels, over this server's limit of "
                              f"{limits.max_job_pixels} per job (gouache serve --max-job-pixels)")


def _output_size(request: GenerationRequest) -> tuple[int | None, int | None]:
    """The size the request's images are made at, where it is known before a model is loaded."""
    from gouache.pipelines.request import UpscaleRequest

    if isinstance(request, UpscaleRequest):
        return request.upscaled_size()
    return request.width, request.height


def check_pixels(name: str, size: tuple[int, int], max_pixels: int) -> None:
    """An image sent with a request: 413 when over ``max_pixels``."""
    w, h = size
    if w * h > max_pixels:
        raise RequestTooLarge(f"`{name}` is {w}x{h}, {w * h} pixels, over this server's limit of {max_pixels} "
                              "(gouache serve --max-pixels)")


# the image formats a request may send (A1111's clients send PNG; browsers JPEG and WebP); Pillow
# reads many more, each one more parser facing the network
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")


def decode_image(name: str, text: object, max_pixels: int) -> Image.Image:
    """An image sent as base64 or a ``data:image/...;base64,`` URL (A1111's ``decode_base64_to_image``),
    in one of :data:`ACCEPTED_FORMATS`; URLs are refused (the server fetches nothing). Its pixels are
    read only if within ``max_pixels``; a damaged or truncated file is a 422, never a 500."""
    if not isinstance(text, str):
        raise InvalidArgument(f"`{name}` must be a base64 string (PNG, JPEG or WebP), got {type(text).__name__}")
    if text.startswith(("http://", "https://")):
        raise InvalidArgument(f"`{name}` is a URL; gouache does not fetch images, send the image as base64")
    if text.startswith("data:"):
        head, sep, text = text.partition(",")
        if not sep or not head.endswith(";base64"):
            raise InvalidArgument(f"`{name}` is a data URL without ';base64,' (expected data:image/png;base64,...)")
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"`{name}` is not valid base64; send the image file's bytes base64-encoded") from None
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise InvalidArgument(f"`{name}` is not an image gouache takes: send a PNG, JPEG or WebP file, base64-encoded") from None
    except Image.DecompressionBombError:
        raise RequestTooLarge(f"`{name}` has too many pixels for this server (limit {max_pixels})") from None
    except Exception as err:  # noqa: BLE001 - Pillow's header parsers raise many kinds on hostile bytes
        raise InvalidArgument(f"`{name}` is a damaged image: {_reason(err)}") from None
    check_pixels(name, image.size, max_pixels)
    try:
        image.load()
        return _usable_mode(image)
    except Exception as err:  # noqa: BLE001 - truncated or corrupt pixel data, whatever the decoder raises
        raise InvalidArgument(f"`{name}` is a damaged image: {_reason(err)}") from None


def _usable_mode(image: Image.Image) -> Image.Image:
    """RGB, RGBA or L, the modes the pipelines take (a 16-bit, CMYK or palette file is converted)."""
    if image.mode in ("RGB", "RGBA", "L"):
        return image
    alpha = image.mode in ("LA", "PA", "RGBa", "La") or "transparency" in image.info
    return image.convert("RGBA" if alpha else "RGB")


def _reason(err: Exception) -> str:
    return (str(err) or type(err).__name__)[:200]
