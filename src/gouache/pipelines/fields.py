"""One table of what a request holds, and every place a field shows up outside Python.

Each :class:`Field` says how one request attribute (or one infotext key) is written to
AUTOMATIC1111's infotext, read back from it, spelled on the command line and named in A1111's API.
From :data:`FIELDS` come the infotext writer (:func:`infotext_params`, :func:`extra_params`), the
reader (:func:`read_request`), the command-line options (``gouache.cli.common``) and the API
mapping (``gouache.server.schemas``).

The writer keeps A1111's key order (:func:`gouache.metadata.infotext.ordered`): A1111's own keys by
their rank; gouache's own keys (unknown to A1111) in table order, after the known ones; the keys
that say how the model ran (``Dtype``, ``Attention``) last, before ``Version``.

>>> [f.key for f in FIELDS if f.run]
['Dtype', 'Attention']
>>> cli_flags("hires")["denoising_strength"]
'--hires-strength'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from gouache.errors import InvalidArgument
from gouache.metadata.infotext import ParsedInfotext, ordered, parse_infotext
from gouache.pipelines.request import (MASKED_CONTENT, GenerationRequest, Img2ImgRequest, InpaintRequest,
                                       UpscaleRequest)


@dataclass(frozen=True)
class Run:
    """What made an image besides its request: the loaded model and the adapters its prompt used
    (``{"lora": {name: hash}, "ti": {name: hash}}``)."""

    model: Any
    adapters: dict


@dataclass(frozen=True)
class Flag:
    """One command-line option of a field, in one group of options (:data:`GROUPS`).

    ``shown`` says in words what a default of None ends up as; ``choices`` maps the names the
    option takes to the field's values; ``sets`` are other fields that giving the option sets.
    An option with its own ``dest`` is no request attribute (the command reads it itself).
    """

    name: str
    group: str
    help: str
    shown: str | None = None
    choices: dict | None = None
    sets: dict | None = None
    dest: str | None = None
    kind: type | None = None
    metavar: str | None = None
    action: str | None = None  # argparse's, for an option the command reads itself: "append", "store_true"


@dataclass(frozen=True)
class Field:
    """One request attribute or infotext key.

    ``write(request, run)`` gives the infotext value (None: not written; ``run`` is None where only
    the request is known). Where the key goes: ``fixed`` keys are always in the parameters line
    (A1111's own); a key with ``extra`` is one of the request's mode keys (A1111's
    ``extra_generation_params``) when ``extra(request)`` holds, for requests of class ``mode``;
    ``run`` keys say how the model ran and close the line. ``read(parsed, paths)`` gives the request
    attributes the infotext sets (``paths``: whether values that name files may be used).
    ``api`` are the names in A1111's API body (the first one set wins), ``setting`` the A1111
    option (``override_settings``) it is read from instead.
    """

    key: str | None
    attr: str | None = None
    mode: type = GenerationRequest
    write: Callable[[Any, Run | None], object] | None = None
    fixed: bool = False
    extra: Callable[[Any], bool] | None = None
    run: bool = False
    read: Callable[[ParsedInfotext, bool], dict] | None = None
    flags: tuple[Flag, ...] = ()
    api: tuple[str, ...] = ()
    setting: str | None = None


# Groups of command-line options, and the request class whose defaults they show
GROUPS: dict[str, type] = {
    "request": GenerationRequest,
    "hires": GenerationRequest,
    "refiner": GenerationRequest,
    "guidance": GenerationRequest,
    "img2img": Img2ImgRequest,
    "upscale": UpscaleRequest,
    "mask": InpaintRequest,
    "ip-adapter": GenerationRequest,
}
# gouache.speed's attention kinds as the infotext names them ("auto" is gouache's own processor)
ATTENTION_LABELS = {"auto": "gouache", "sdpa": "sdpa", "sliced": "sliced"}


def group_class(group: str) -> type:
    """The request class of an option group; an unknown group names the known ones."""
    if group not in GROUPS:
        raise InvalidArgument(f"unknown option group {group!r}; one of {', '.join(GROUPS)}")
    return GROUPS[group]


# -- how single fields are written and read ---------------------------------------------------------


def _attr(name: str) -> Callable[[Any, Run | None], object]:
    return lambda req, run: getattr(req, name)


def _value(key: str, attr: str) -> Callable[[ParsedInfotext, bool], dict]:
    """Reader of one key, typed as :meth:`ParsedInfotext.value` types it, into one attribute."""
    return lambda p, paths: {attr: p.value(key)}


def _hires_value(key: str, attr: str) -> Callable[[ParsedInfotext, bool], dict]:
    """A hires-fix key counts only when the text has ``Hires upscale`` (the fix was on)."""
    return lambda p, paths: {attr: p.value(key)} if "Hires upscale" in p.params else {}


def _sampler(req, run) -> str:
    from gouache.sampling.samplers import resolve

    return resolve(req.sampler, req.scheduler)[0].name


def _schedule(req, run) -> str | None:
    from gouache.sampling.samplers import resolve

    schedule = resolve(req.sampler, req.scheduler)[1]
    return None if schedule == "Automatic" else schedule


def _size(p: ParsedInfotext, paths: bool) -> dict:
    """An SD upscale's ``Size`` is the result's; the model drew at its tile's size."""
    size = p.value("SD upscale tile") or p.size
    return {"width": size[0], "height": size[1]} if size else {}


def _hashes(kind: str) -> Callable[[Any, Run | None], str | None]:
    def write(req, run: Run | None) -> str | None:
        found = (run.adapters if run is not None else {}).get(kind, {})
        return ", ".join(f"{name}: {h}" for name, h in found.items()) or None

    return write


def _cfg_truncation(req, run: Run | None) -> float | None:
    """The request's truncation when it truncates; guidance on every step (1) is said where the
    model's default is less, so that the infotext makes the image again."""
    value = req.cfg_truncation
    if value is not None and value < 1:
        return value
    if run is not None and value in (None, 1) and run.model.default_cfg_truncation < 1:
        return 1
    return None


def _guided_by_colour(req) -> bool:
    if req.loss_guidance is None:
        return False
    from gouache.sampling.loss import ColourLoss

    return isinstance(req.loss_guidance.loss, ColourLoss)


def _loss_name(req, run) -> str:
    """A custom loss is recorded by name: it cannot be made again from text."""
    loss = req.loss_guidance.loss
    return getattr(loss, "__name__", type(loss).__name__)


def _guidance(p: ParsedInfotext, paths: bool) -> dict:
    if "Guidance colour" not in p.params:
        return {}
    from gouache.sampling.loss import LossGuidance, parse_colour

    colour = parse_colour(p.params["Guidance colour"])
    return {"loss_guidance": LossGuidance(colour, number(p.params, "Guidance scale", float, 100.0),
                                          number(p.params, "Guidance every", int, 1))}


def _refiner(p: ParsedInfotext, paths: bool) -> dict:
    if not paths or "Refiner" not in p.params:
        return {}
    return {"refiner_checkpoint": p.params["Refiner"],
            "refiner_switch_at": number(p.params, "Refiner switch at", float, 0.8)}


def _controls(p: ParsedInfotext, paths: bool) -> dict:
    """ControlNet units (``ControlNet 0``, ...; written by ``Controls.infotext``); their ``Image``
    and ``Model`` may be paths. A unit without an image fails validation until one is given."""
    if not paths:
        return {}
    from gouache.control.spec import controls_from_params

    return {"controls": controls_from_params(p.params) or None}


def _ip_adapters(p: ParsedInfotext, paths: bool) -> dict:
    """IP-Adapter units (``IP-Adapter 0``, ...; written by ``ImagePrompts.infotext``); their ``Image N``
    are paths. A unit without them fails validation until ``--ip-image`` gives its image."""
    if not paths:
        return {}
    from gouache.adapters.ip_spec import specs_from_params

    return {"ip_adapters": specs_from_params(p.params) or None}


def _styles(p: ParsedInfotext, paths: bool) -> dict:
    """The styles of $GOUACHE_HOME/styles.csv the prompts were made with, taken out of them again
    (A1111's ``Styles array``, "Apply if any"): applying them gives the recorded prompts back. A styles
    file that cannot be read finds none."""
    from gouache.prompts.styles import extract_styles, load_styles

    try:
        styles = load_styles()
    except InvalidArgument:
        return {}
    names, prompt, negative = extract_styles(p.prompt, p.negative_prompt, styles) if styles else ([], "", "")
    return {"styles": tuple(names), "prompt": prompt, "negative_prompt": negative} if names else {}


def _batch(p: ParsedInfotext, paths: bool) -> dict:
    """A1111's "Batch size" and "Batch pos" (gouache writes them for images made in one UNet call
    with their batch, the CUDA path): the batch again, from its first image's seed, keeping this one."""
    size, pos = number(p.params, "Batch size", int, None), number(p.params, "Batch pos", int, None)
    if size is None or pos is None or size < 2:
        return {}
    if not 0 <= pos < size:
        raise InvalidArgument(f"infotext 'Batch pos' must be from 0 to 'Batch size' - 1 ({size - 1}), got {pos}")
    out = {"batch_size": size, "batch_pos": pos}
    if isinstance(p.value("Seed"), int):
        out["seed"] = p.value("Seed") - pos
    if isinstance(p.value("Variation seed"), int):
        out["subseed"] = p.value("Variation seed") - pos
    return out


def _dtype(req, run: Run | None) -> str | None:
    if run is None:
        return None
    from gouache.speed.hardware import DTYPES

    dtype = run.model.dtype
    return next((name for name, d in DTYPES.items() if d == dtype), str(dtype).removeprefix("torch."))


def _attention(req, run: Run | None) -> str | None:
    speed = getattr(run.model, "speed", None) if run is not None else None
    if not speed or "attention" not in speed:
        return None  # a model set up outside gouache.speed: its processors are diffusers' own
    kind = speed["attention"]
    if kind not in ATTENTION_LABELS:
        raise InvalidArgument(f"unknown attention kind {kind!r}; one of {', '.join(ATTENTION_LABELS)}")
    return ATTENTION_LABELS[kind]


def _version(req, run) -> str:
    from gouache.version import __version__

    return f"gouache {__version__}"


def _hires(req) -> bool:
    return req.enable_hr


def _words(req) -> bool:
    """An inpainting request whose mask comes from words."""
    return bool(req.mask_prompt)


def _always(req) -> bool:
    return True


# -- the table ----------------------------------------------------------------------------------------
# Order: the reader evaluates fields in this order (the first malformed key is the one reported), and
# gouache's own keys are written in it.

_STRENGTH_HELP = "how much to change: 0 keeps the image, 1 replaces it; the last strength x steps steps run"

FIELDS: tuple[Field, ...] = (
    Field(None, "negative_prompt", flags=(Flag("--negative", "request", "what the image should not show"),)),
    Field("Steps", "steps", write=_attr("steps"), fixed=True, read=_value("Steps", "steps"),
          flags=(Flag("--steps", "request", "denoising steps"),), api=("steps",)),
    Field("CFG scale", "cfg_scale", write=_attr("cfg_scale"), fixed=True, read=_value("CFG scale", "cfg_scale"),
          flags=(Flag("--cfg", "request", "classifier-free guidance scale", shown="7; 5 for gouache-tiny"),),
          api=("cfg_scale",)),
    Field("Sampler", "sampler", write=_sampler, fixed=True, read=_value("Sampler", "sampler"),
          flags=(Flag("--sampler", "request", "sampler name, see `gouache samplers`"),),
          api=("sampler_name", "sampler_index")),
    Field("Schedule type", "scheduler", write=_schedule, fixed=True, read=_value("Schedule type", "scheduler"),
          flags=(Flag("--scheduler", "request",
                      "schedule type: Automatic, Uniform, Karras, Exponential, SGM Uniform"),),
          api=("scheduler",)),
    Field("Seed", "seed", write=_attr("seed"), fixed=True, read=_value("Seed", "seed"),
          flags=(Flag("--seed", "request", "seed of the first image; image i uses seed+i; -1 picks one"),),
          api=("seed",)),
    Field("Model hash", write=lambda req, run: run.model.hash, fixed=True),
    Field("Model", "model", write=lambda req, run: run.model.name, fixed=True, read=_value("Model", "model"),
          flags=(Flag("--model", "request",
                      "model name in $GOUACHE_HOME/checkpoints, or a path; the built-in gouache-tiny if omitted"),)),
    Field("Size", "width", write=lambda req, run: f"{req.width}x{req.height}", fixed=True, read=_size,
          flags=(Flag("--width", "request", "image width, a multiple of 8", shown="the model's size"),),
          api=("width",)),
    Field(None, "height", flags=(Flag("--height", "request", "image height, a multiple of 8",
                                      shown="the model's size"),), api=("height",)),
    Field(None, "batch_size", flags=(Flag("--batch-size", "request", "images generated together"),),
          api=("batch_size",)),
    Field("Batch pos", "batch_pos", read=_batch),  # written by Generation.run, for batched images only
    Field(None, "n_iter", flags=(Flag("--n-iter", "request", "batches generated one after another"),),
          api=("n_iter",)),
    Field("Clip skip", "clip_skip", write=lambda req, run: req.clip_skip if req.clip_skip > 1 else None,
          fixed=True, read=_value("Clip skip", "clip_skip"),
          flags=(Flag("--clip-skip", "request",
                      "stop the text encoder this many layers from the end (A1111's Clip skip)"),),
          setting="CLIP_stop_at_last_layers"),
    Field("Emphasis", "emphasis", write=lambda req, run: None if req.emphasis == "Original" else req.emphasis,
          fixed=True, read=_value("Emphasis", "emphasis"),
          flags=(Flag("--emphasis", "request", "how (word:1.2) weights apply: Original, No norm, Ignore, None"),)),
    Field("Old prompt editing timelines", "old_prompt_editing",
          write=lambda req, run: True if req.old_prompt_editing else None, fixed=True,
          read=lambda p, paths: {"old_prompt_editing": True if p.params.get("Old prompt editing timelines") == "True"
                                 else None},
          flags=(Flag("--old-prompt-editing", "request",
                      "read [a:b:N] as A1111 before 1.6 did: N < 1 a fraction of the steps, else a step"),)),
    Field("Prompt syntax", "prompt_syntax", write=_attr("prompt_syntax"), extra=lambda req: req.prompt_syntax != "a1111",
          read=_value("Prompt syntax", "prompt_syntax"),
          flags=(Flag("--prompt-syntax", "request", "how prompts are read: a1111 (default; (word:1.2), [a:b:0.5], AND) "
                      "or compel ((\"a\", \"b\").blend(0.7, 0.3), word++, (words)1.3; needs pip install compel)",
                      choices={"a1111": "a1111", "compel": "compel"}),),
          api=("prompt_syntax",)),
    Field("Denoising strength", "denoising_strength", write=lambda req, run: float(req.denoising_strength),
          extra=lambda req: req.enable_hr or isinstance(req, Img2ImgRequest),
          read=_value("Denoising strength", "denoising_strength"),
          flags=(Flag("--hires-strength", "hires", "hires fix: how much the second pass changes, 0 to 1"),
                 Flag("--strength", "img2img", _STRENGTH_HELP),
                 Flag("--strength", "upscale",
                      "how much each tile is repainted: 0 keeps the Lanczos upscale, 1 replaces it")),
          api=("denoising_strength",)),
    Field("Variation seed", "subseed", write=lambda req, run: req.subseed if req.subseed_strength > 0 else None,
          fixed=True, read=_value("Variation seed", "subseed"),
          flags=(Flag("--variation-seed", "request",
                      "variation seed: the seed whose noise --variation-strength mixes in; -1 picks one"),),
          api=("subseed",)),
    Field("Variation seed strength", "subseed_strength",
          write=lambda req, run: req.subseed_strength if req.subseed_strength > 0 else None, fixed=True,
          read=_value("Variation seed strength", "subseed_strength"),
          flags=(Flag("--variation-strength", "request",
                      "how far towards the variation seed's image: 0 none, 1 all the way"),),
          api=("subseed_strength",)),
    Field("Prompt idea", "prompt_idea", write=lambda req, run: req.prompt_idea or None,
          extra=lambda req: bool(req.prompt_idea), read=_value("Prompt idea", "prompt_idea")),
    Field("Lora hashes", write=_hashes("lora"), fixed=True),
    Field("TI hashes", write=_hashes("ti"), fixed=True),
    Field("Guidance colour", write=lambda req, run: req.loss_guidance.loss.infotext(), extra=_guided_by_colour,
          flags=(Flag("--guide-colour", "guidance",
                      "guidance by loss: pull the image towards this colour (0-255 each, e.g. 0,0,255 for blue)",
                      dest="guide_colour", metavar="R,G,B"),)),
    Field("Guidance loss", write=_loss_name,
          extra=lambda req: req.loss_guidance is not None and not _guided_by_colour(req)),
    Field("Guidance scale", write=lambda req, run: req.loss_guidance.scale,
          extra=lambda req: req.loss_guidance is not None,
          flags=(Flag("--guide-scale", "guidance", "how hard --guide-colour pulls (default: 300)",
                      dest="guide_scale", kind=float),)),
    Field("Guidance every", write=lambda req, run: req.loss_guidance.every if req.loss_guidance.every > 1 else None,
          extra=lambda req: req.loss_guidance is not None,
          flags=(Flag("--guide-every", "guidance", "apply --guide-colour every K steps (default: 1)",
                      dest="guide_every", kind=int),)),
    Field("Token merging ratio", "tome_ratio", write=_attr("tome_ratio"), extra=lambda req: bool(req.tome_ratio),
          read=_value("Token merging ratio", "tome_ratio"),
          flags=(Flag("--tome", "request", "approximation: merge this fraction of the tokens in full-resolution "
                                           "self-attention (ToMe), e.g. 0.5"),),
          setting="token_merging_ratio"),
    Field("DeepCache interval", "deepcache_interval", write=_attr("deepcache_interval"),
          extra=lambda req: req.deepcache_interval > 1, read=_value("DeepCache interval", "deepcache_interval"),
          flags=(Flag("--deepcache", "request", "approximation: run the whole UNet every N-th step and reuse its "
                                                "deep features in between (DeepCache), e.g. 3"),),
          setting="deepcache_interval"),
    Field("CFG truncation", "cfg_truncation", write=_cfg_truncation, fixed=True,
          extra=lambda req: req.cfg_truncation is not None and req.cfg_truncation < 1,
          read=_value("CFG truncation", "cfg_truncation"),
          flags=(Flag("--cfg-truncation", "request",
                      "guide only the first this fraction of the steps, e.g. 0.5 (faster); 1 is every step "
                      "(default: the model's, 1; 0.5 for gouache-tiny)"),),
          setting="cfg_truncation"),
    Field("Hires upscale", "hr_scale", write=_attr("hr_scale"), extra=_hires,
          read=lambda p, paths: {"enable_hr": True, "hr_scale": p.value("Hires upscale")}
          if "Hires upscale" in p.params else {},
          flags=(Flag("--hires-scale", "hires", "hires fix: generate at --width x --height, then upscale this many "
                                                "times and repaint (A1111's Hires. fix)", sets={"enable_hr": True}),)),
    Field("Hires upscaler", "hr_upscaler", write=_attr("hr_upscaler"), extra=_hires,
          read=_hires_value("Hires upscaler", "hr_upscaler"),
          flags=(Flag("--hires-upscaler", "hires", "hires fix upscaler: Latent, Latent (nearest-exact) or Lanczos"),),
          api=("hr_upscaler",)),
    Field("Hires steps", "hr_second_pass_steps", write=lambda req, run: req.hr_second_pass_steps or None,
          extra=_hires, read=_hires_value("Hires steps", "hr_second_pass_steps"),
          flags=(Flag("--hires-steps", "hires", "hires fix: steps of the second pass's schedule; 0 = --steps"),),
          api=("hr_second_pass_steps",)),
    Field("Refiner", "refiner_checkpoint", write=_attr("refiner_checkpoint"),
          extra=lambda req: req.refiner_checkpoint is not None, read=_refiner,
          flags=(Flag("--refiner", "refiner", "SDXL refiner (name or path) that takes over for the last steps"),)),
    Field("Refiner switch at", "refiner_switch_at", write=_attr("refiner_switch_at"),
          extra=lambda req: req.refiner_checkpoint is not None,
          flags=(Flag("--refiner-switch-at", "refiner",
                      "fraction of the steps the base runs before the refiner takes over"),)),
    Field(None, "controls", read=_controls),
    Field(None, "ip_adapters", read=_ip_adapters,
          flags=(Flag("--ip-adapter", "ip-adapter", "IP-Adapter: an image prompt through this adapter (a name in "
                      "$GOUACHE_HOME/ip-adapter, gouache-tiny-ip-adapter, or a path) at SCALE (default 1; 0 is off); "
                      "repeat for several", dest="ip_adapter", metavar="NAME[:SCALE]", action="append"),
                 Flag("--ip-image", "ip-adapter", "the image prompt of --ip-adapter: one adapter takes every "
                      "--ip-image, several take one each, in order", dest="ip_image", metavar="IMAGE", action="append"),
                 Flag("--ip-style", "ip-adapter", "style transfer (InstantStyle): the adapters act on the style "
                      "blocks only, so the image prompt gives its style and the text the content",
                      dest="ip_style", action="store_true"))),
    Field(None, "loss_guidance", read=_guidance),  # from the Guidance keys above
    # styles and dynamic prompts (gouache.pipelines.prompting): the infotext holds the prompt they made, as
    # A1111's does; its reader finds the styles in it again, and takes the prompt as written
    Field(None, "styles", read=_styles, api=("styles",),
          flags=(Flag("--style", "request", "apply this style of $GOUACHE_HOME/styles.csv (A1111's styles) to the "
                      "prompts; repeat for several, applied in order", dest="style", metavar="NAME",
                      action="append"),)),
    Field(None, "literal_prompts", read=lambda p, paths: {"literal_prompts": True},
          flags=(Flag("--no-wildcards", "request", "take {a|b} and __name__ in the prompts as text, not as dynamic "
                                                  "prompts (variants and $GOUACHE_HOME/wildcards)"),)),
    Field(None, "resize_mode", mode=Img2ImgRequest,
          flags=(Flag("--resize-mode", "img2img",
                      "when the size differs: 0 just resize, 1 crop and resize, 2 resize and fill"),),
          api=("resize_mode",)),
    Field("Mask blur", "mask_blur", mode=InpaintRequest, write=_attr("mask_blur"), extra=_always,
          flags=(Flag("--mask-blur", "mask", "blur the mask edge by this many pixels, so the new area blends in"),)),
    Field("Inpaint area", "inpaint_full_res", mode=InpaintRequest, extra=_always,
          write=lambda req, run: "Only masked" if req.inpaint_full_res else "Whole picture",
          flags=(Flag("--only-masked", "mask",
                      "work on the area around the mask only, at --width x --height, and paste it back"),),
          api=("inpaint_full_res",)),
    Field("Masked area padding", "inpaint_full_res_padding", mode=InpaintRequest, extra=_always,
          write=lambda req, run: req.inpaint_full_res_padding if req.inpaint_full_res else None,
          flags=(Flag("--padding", "mask", "pixels around the mask that --only-masked also works on"),),
          api=("inpaint_full_res_padding",)),
    Field("Masked content", "inpainting_fill", mode=InpaintRequest, extra=_always,
          write=lambda req, run: MASKED_CONTENT[req.inpainting_fill],
          flags=(Flag("--fill", "mask", "what the masked area starts from: original (default), fill (the colours "
                                        "around it), noise (latent noise), nothing (latent zeros)",
                      choices={name.split()[-1]: k for k, name in MASKED_CONTENT.items()}),),
          api=("inpainting_fill",)),
    Field("Mask prompt", "mask_prompt", mode=InpaintRequest, write=lambda req, run: req.mask_prompt or None,
          extra=_words,
          flags=(Flag("--mask-prompt", "mask", "repaint what these words name (a mask from words, by the segmenter), "
                                               "e.g. \"the background\", instead of a MASK image"),),
          api=("mask_prompt",)),
    Field("Mask threshold", "mask_threshold", mode=InpaintRequest, extra=_words,
          write=lambda req, run: req.mask_threshold if req.mask_prompt else None,
          flags=(Flag("--mask-threshold", "mask", "with --mask-prompt: a pixel is in the mask above this score"),),
          api=("mask_threshold",)),
    Field("Mask dilate", "mask_dilate", mode=InpaintRequest, extra=_words,
          write=lambda req, run: req.mask_dilate if req.mask_prompt and req.mask_dilate else None,
          flags=(Flag("--mask-dilate", "mask", "with --mask-prompt: grow the mask by this many pixels"),),
          api=("mask_dilate",)),
    Field("Mask refine", "mask_refine", mode=InpaintRequest, extra=_words,
          write=lambda req, run: req.mask_refine if req.mask_prompt and req.mask_refine else None,
          flags=(Flag("--mask-refine", "mask", "with --mask-prompt: snap the mask's edge to the image's over this "
                                               "radius in pixels (a guided filter); 0: off"),),
          api=("mask_refine",)),
    Field("Mask invert", "mask_invert", mode=InpaintRequest, extra=_words,
          write=lambda req, run: True if req.mask_prompt and req.mask_invert else None,
          flags=(Flag("--invert-mask", "mask", "with --mask-prompt: repaint everything but what the words name"),)),
    Field("Segmenter", "segmenter", mode=InpaintRequest, extra=_words,
          write=lambda req, run: (req.segmenter or "gouache-tiny-clipseg") if req.mask_prompt else None,
          flags=(Flag("--segmenter", "mask", "with --mask-prompt: the segmenter, a name in $GOUACHE_HOME/segmenters, "
                                             "a folder or rembg:MODEL", shown="the built-in gouache-tiny-clipseg"),),
          api=("segmenter",)),
    Field(None, "scale", mode=UpscaleRequest,
          flags=(Flag("--scale", "upscale", "how many times bigger the result is"),)),
    Field(None, "tile", mode=UpscaleRequest,
          flags=(Flag("--tile", "upscale", "tile size in pixels, a multiple of 8", shown="the model's size"),)),
    Field("SD upscale overlap", "overlap", mode=UpscaleRequest, write=_attr("overlap"), extra=_always,
          flags=(Flag("--overlap", "upscale", "least overlap of neighbouring tiles in pixels; they are blended "
                                              "across it", shown="a quarter of the tile"),)),
    Field("SD upscale upscaler", mode=UpscaleRequest, write=lambda req, run: "Lanczos", extra=_always),
    Field("Dtype", write=_dtype, run=True),
    Field("Attention", write=_attention, run=True),
    Field("Version", write=_version, fixed=True),
)


# -- the infotext writer -------------------------------------------------------------------------------


def infotext_params(req: GenerationRequest, model, adapters: dict | None = None, extra: dict | None = None) -> dict:
    """AUTOMATIC1111's parameters line for one image, in its key order: the fixed keys, then
    ``extra`` (the mode's keys, :func:`extra_params`, and ControlNet's), then how the model ran."""
    run = Run(model, adapters or {})
    fixed = {f.key: f.write(req, run) for f in FIELDS if f.fixed}
    closing = {f.key: f.write(req, run) for f in FIELDS if f.run}
    return ordered({**fixed, **(extra or {}), **closing})


def extra_params(req: GenerationRequest) -> dict:
    """The request's mode keys (A1111's ``extra_generation_params``): the hires fix's when it is on,
    guidance by loss, the approximations, the refiner, img2img's strength, inpainting's, SD upscale's."""
    return {f.key: f.write(req, None) for f in FIELDS
            if f.extra is not None and isinstance(req, f.mode) and f.extra(req)}


# -- the infotext reader -------------------------------------------------------------------------------


def read_request(text: str, paths: bool = True) -> GenerationRequest:
    """The request an infotext describes, each field read in table order (the first malformed key
    is the one reported); see :func:`gouache.pipelines.request.request_from_infotext`."""
    p = parse_infotext(text)
    if len(p.params) < 3:
        raise InvalidArgument("the image's parameters have no settings line (Steps, Sampler, Seed, ...)")
    values: dict = {"prompt": p.prompt, "negative_prompt": p.negative_prompt}
    for f in FIELDS:
        if f.read is not None:
            values.update(f.read(p, paths))
    return GenerationRequest(**{k: v for k, v in values.items() if v is not None})


def number(params: dict[str, str], key: str, kind: type, default):
    """``params[key]`` as ``kind`` (``default`` when absent), for keys the parser does not type; a
    malformed value names the key."""
    raw = params.get(key)
    if raw is None:
        return default
    text = raw.strip()
    try:
        if len(text) > 32:
            raise ValueError
        value = kind(text)
        if not math.isfinite(value):
            raise ValueError
    except (ValueError, OverflowError):
        raise InvalidArgument(f"infotext {key!r} must be a number, got {raw[:40]!r}") from None
    return value


def recorded_run(p: ParsedInfotext) -> dict[str, str]:
    """How the model ran, as the infotext records it (``Dtype``, ``Attention``; absent in older
    images). Informational: they do not change the request."""
    return {f.key: p.params[f.key] for f in FIELDS if f.run and f.key in p.params}


def run_difference(p: ParsedInfotext, model) -> str | None:
    """Where ``model`` runs otherwise than the infotext records, in words (``"dtype fp32 and
    attention sdpa; this run uses bf16 and gouache"``), or None: the same, or not recorded."""
    now = {f.key: f.write(None, Run(model, {})) for f in FIELDS if f.run}
    differ = [(key, value, now[key]) for key, value in recorded_run(p).items()
              if now[key] is not None and value != now[key]]
    if not differ:
        return None
    made = " and ".join(f"{key.lower()} {value}" for key, value, _ in differ)
    return f"{made}; this run uses {' and '.join(current for _, _, current in differ)}"


# -- command-line options and API names ----------------------------------------------------------------


def flags_of(group: str) -> list[tuple[Field, Flag]]:
    """The fields with an option in ``group``, with that option, in table order."""
    group_class(group)
    return [(f, flag) for f in FIELDS for flag in f.flags if flag.group == group]


def cli_flags(*groups: str) -> dict[str, str]:
    """Request attribute -> option, for the groups' options that set a request attribute."""
    return {f.attr: flag.name for group in groups for f, flag in flags_of(group) if flag.dest is None}


def api_values(body, group: str) -> dict:
    """The request attributes of ``group``'s fields that A1111's API body names directly: the first
    of a field's ``api`` names that is set (not None or empty), else the request's default."""
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(group_class(group))}
    out = {}
    for f, flag in flags_of(group):
        if f.api:
            given = (getattr(body, name) for name in f.api)
            out[f.attr] = next((v for v in given if v is not None and v != ""), defaults[f.attr])
    return out


def api_settings(overrides: dict, options: dict) -> dict:
    """The request attributes read from A1111 options: the request's ``override_settings``, else
    the server's options, else the request's default."""
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(GenerationRequest)}
    return {f.attr: overrides.get(f.setting, options.get(f.setting, defaults[f.attr]))
            for f in FIELDS if f.setting is not None}


def api_names() -> dict[str, str]:
    """A1111 API body name -> request attribute, for the names that differ."""
    return {name: f.attr for f in FIELDS for name in f.api if name != f.attr}
