"""What a generation asks for, validated where it enters, and what it gives back.

Every mode's request lives here (txt2img's :class:`GenerationRequest`, :class:`Img2ImgRequest`,
:class:`InpaintRequest`), so that commands and the server can build and check one without
loading a model; the pipelines that run them are :mod:`gouache.pipelines.txt2img`,
:mod:`~gouache.pipelines.img2img` and :mod:`~gouache.pipelines.inpaint`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace

from PIL import Image

from gouache.errors import InvalidArgument, check_int, check_number
from gouache.images import RESIZE_MODES

MAX_SEED = 2**32 - 1  # AUTOMATIC1111's seeds are 32-bit unsigned
# A1111's hires-fix upscalers that gouache has: "Latent" modes resize the latents (A1111's
# ``latent_upscale_modes``), "Lanczos" decodes, resizes the pixels with PIL and encodes again
HR_UPSCALERS = ("Latent", "Latent (nearest-exact)", "Lanczos")
MAX_HR_SCALE = 8.0


@dataclass
class GenerationRequest:
    """A text-to-image request; field names follow AUTOMATIC1111's API where one exists.

    >>> GenerationRequest("a red circle on a blue background", steps=20, seed=42).validate()
    """

    prompt: str
    negative_prompt: str = ""
    model: str | None = None  # name in $GOUACHE_HOME/checkpoints, a path, or None for gouache-tiny
    steps: int = 20
    cfg_scale: float | None = None  # None: the model's default (7, AUTOMATIC1111's; 5 for gouache-tiny)
    sampler: str = "DPM++ 2M"
    scheduler: str = "Automatic"  # A1111 1.9's "Schedule type"
    seed: int = -1  # -1 picks one at random and records it
    width: int | None = None  # None: the model's native size
    height: int | None = None
    batch_size: int = 1
    n_iter: int = 1
    # remaking one image of a batch made in one UNet call (the CUDA path): its position; the batch
    # (seed = the first image's) runs and only this image is kept. Read from A1111's "Batch pos".
    batch_pos: int | None = None
    clip_skip: int = 1  # A1111's "Clip skip": 2 uses the text encoder's penultimate layer
    emphasis: str = "Original"  # A1111's "Emphasis": Original, No norm, Ignore, None
    old_prompt_editing: bool = False  # A1111 < 1.6's rule for [a:b:N]: N < 1 fraction, else step
    # A1111's "Variation seed": the noise is slerp-ed this far (0-1) towards the subseed's noise
    subseed: int = -1  # -1 picks one at random; image i uses subseed+i
    subseed_strength: float = 0.0
    # A1111's "Hires. fix": generate at the size above, upscale by hr_scale, then img2img there
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: str = "Latent"  # one of HR_UPSCALERS
    hr_second_pass_steps: int = 0  # 0: as many as ``steps``
    denoising_strength: float = 0.7  # the second pass's (img2img's own default is 0.75)
    # guidance by a loss on the predicted image (gouache.sampling.loss.LossGuidance), or None
    loss_guidance: object | None = None
    # SDXL refiner (A1111's names): the model that takes over after refiner_switch_at of the steps
    refiner_checkpoint: str | None = None
    refiner_switch_at: float = 0.8
    # ControlNet units (gouache.control.spec.ControlSpec), applied together; the refiner runs without them
    controls: list = field(default_factory=list)
    # IP-Adapter units (gouache.adapters.ip_spec.IPAdapterSpec): image prompts, applied together
    ip_adapters: list = field(default_factory=list)
    # Approximations that trade a little adherence for speed (gouache.speed; measured in benchmarks/approximations.py)
    tome_ratio: float = 0.0  # token merging: this fraction of the full-resolution self-attention's tokens merged (A1111's "Token merging ratio")
    deepcache_interval: int = 1  # DeepCache: the whole UNet every N-th step, its shallow branch in between; 1 is off
    # guidance only on the first this fraction of the steps (the unconditional pass skipped after it);
    # 1 is every step; None: the model's default (1; 0.5 for gouache-tiny, see docs/gouache-tiny.md)
    cfg_truncation: float | None = None
    # Prompt tools (gouache.pipelines.prompting): these styles of $GOUACHE_HOME/styles.csv applied in order, then
    # Dynamic Prompts' {a|b} variants and __wildcards__ resolved per image from its seed; literal_prompts: as written
    styles: tuple = ()
    literal_prompts: bool = False
    # the idea an LLM wrote the prompt from (gouache.prompts.expand); the infotext's "Prompt idea"; "" if none
    prompt_idea: str = ""
    # how the prompts are read: "a1111" (gouache.prompts) or "compel" (gouache.prompts.compel_syntax)
    prompt_syntax: str = "a1111"

    _controls_need_images = True  # img2img and inpainting fall back to the init image

    def validate(self) -> None:
        """Raise :class:`InvalidArgument` naming the field, its value and the fix."""
        from gouache.sampling.samplers import resolve

        if not isinstance(self.prompt, str):
            raise InvalidArgument(f"`prompt` must be text, got {type(self.prompt).__name__}")
        if not isinstance(self.negative_prompt, str):
            raise InvalidArgument(f"`negative_prompt` must be text, got {type(self.negative_prompt).__name__}")
        if not isinstance(self.prompt_idea, str):
            raise InvalidArgument(f"`prompt_idea` must be text, got {type(self.prompt_idea).__name__}")
        check_int("steps", self.steps, 1, 1000)
        if self.cfg_scale is not None:
            check_number("cfg_scale", self.cfg_scale, 0, 100)
        check_int("seed", self.seed, -1, MAX_SEED)
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is None:
                continue
            check_int(name, value, 64, 4096)
            if value % 8:
                raise InvalidArgument(
                    f"`{name}` must be a multiple of 8, got {value} (try {value // 8 * 8} or {value // 8 * 8 + 8})"
                )
        check_int("batch_size", self.batch_size, 1, 64)
        check_int("n_iter", self.n_iter, 1, 10_000)
        if self.batch_pos is not None:
            check_int("batch_pos", self.batch_pos, 0, self.batch_size - 1)
            if self.n_iter != 1:
                raise InvalidArgument(f"`batch_pos` remakes one image of one batch; `n_iter` must be 1, got {self.n_iter}")
        check_int("clip_skip", self.clip_skip, 1, 12)
        from gouache.prompts.encode import EMPHASIS_MODES

        if self.emphasis not in EMPHASIS_MODES:
            raise InvalidArgument(f"`emphasis` must be one of {', '.join(EMPHASIS_MODES)}, got {self.emphasis!r}")
        resolve(self.sampler, self.scheduler)
        check_number("denoising_strength", self.denoising_strength, 0, 1, " (0 keeps the image, 1 replaces it)")
        check_int("subseed", self.subseed, -1, MAX_SEED)
        check_number("subseed_strength", self.subseed_strength, 0, 1, " (0 the seed's image, 1 the variation seed's)")
        self._validate_hires()
        if self.loss_guidance is not None:
            from gouache.sampling.loss import LossGuidance

            if not isinstance(self.loss_guidance, LossGuidance):
                raise InvalidArgument("`loss_guidance` must be a gouache.sampling.loss.LossGuidance, "
                                      f"got {type(self.loss_guidance).__name__}")
            self.loss_guidance.validate()
        check_number("refiner_switch_at", self.refiner_switch_at, 0, 1, " (the fraction of the steps the base runs)")
        if self.refiner_switch_at in (0, 1):
            raise InvalidArgument("`refiner_switch_at` must be between 0 and 1, not at either end (both models run "
                                  f"some steps), e.g. 0.8, got {self.refiner_switch_at!r}")
        self._validate_controls()
        self._validate_ip_adapters()
        self._validate_approximations()
        self._validate_prompt_tools()
        self._validate_prompt_syntax()

    def _validate_prompt_tools(self) -> None:
        """Styles that exist, and prompts that resolve whatever the seed (gouache.pipelines.prompting)."""
        from gouache.pipelines.prompting import check_prompt_tools

        check_prompt_tools(self)

    def _validate_prompt_syntax(self) -> None:
        from gouache.prompts.compel_syntax import PROMPT_SYNTAXES, check_syntax

        if self.prompt_syntax not in PROMPT_SYNTAXES:
            raise InvalidArgument(f"`prompt_syntax` must be one of {', '.join(PROMPT_SYNTAXES)}, got {self.prompt_syntax!r}")
        if self.prompt_syntax == "compel":
            for name, value, default in (("emphasis", self.emphasis, "Original"),
                                         ("old_prompt_editing", self.old_prompt_editing, False)):
                if value != default:
                    raise InvalidArgument(f"`{name}` ({value!r}) is for A1111's prompt syntax; compel syntax weighs "
                                          "words its own way (word++, (words)1.3): leave it out")
            check_syntax(self.prompt, "prompt")
            check_syntax(self.negative_prompt, "negative_prompt")

    def _validate_approximations(self) -> None:
        from gouache.speed.deepcache import MAX_INTERVAL
        from gouache.speed.tome import MAX_RATIO

        check_number("tome_ratio", self.tome_ratio, 0, MAX_RATIO,
                     " (the fraction of the tokens merged, 0 is off; e.g. 0.5)")
        check_int("deepcache_interval", self.deepcache_interval, 1, MAX_INTERVAL)
        if self.cfg_truncation is not None:
            check_number("cfg_truncation", self.cfg_truncation, 0, 1,
                         " (the fraction of the steps guided, 1 is off; e.g. 0.5)")

    def uncond_until(self, steps: int | None = None) -> int | None:
        """The first sampling step whose unconditional pass CFG truncation skips, or None."""
        if self.cfg_truncation is None or self.cfg_truncation >= 1:
            return None
        return math.ceil(self.cfg_truncation * (steps or self.steps))

    def _validate_controls(self) -> None:
        from gouache.control.spec import ControlSpec

        if not isinstance(self.controls, (list, tuple)):
            raise InvalidArgument(f"`controls` must be a list of ControlSpec, got {type(self.controls).__name__}")
        for k, spec in enumerate(self.controls):
            if not isinstance(spec, ControlSpec):
                raise InvalidArgument(f"`controls[{k}]` must be a gouache.control.spec.ControlSpec, got {type(spec).__name__}")
            spec.validate(k, needs_image=self._controls_need_images)

    def _validate_ip_adapters(self) -> None:
        from gouache.adapters.ip_spec import IPAdapterSpec

        if not isinstance(self.ip_adapters, (list, tuple)):
            raise InvalidArgument(f"`ip_adapters` must be a list of IPAdapterSpec, got {type(self.ip_adapters).__name__}")
        for k, spec in enumerate(self.ip_adapters):
            if not isinstance(spec, IPAdapterSpec):
                raise InvalidArgument(f"`ip_adapters[{k}]` must be a gouache.adapters.ip_spec.IPAdapterSpec, "
                                      f"got {type(spec).__name__}")
            spec.validate(k)

    def _validate_hires(self) -> None:
        if not isinstance(self.enable_hr, bool):
            raise InvalidArgument(f"`enable_hr` must be True or False, got {self.enable_hr!r}")
        s = check_number("hr_scale", self.hr_scale, 1, MAX_HR_SCALE)
        if self.hr_upscaler not in HR_UPSCALERS:
            raise InvalidArgument(f"`hr_upscaler` must be one of {', '.join(HR_UPSCALERS)}, got {self.hr_upscaler!r}")
        check_int("hr_second_pass_steps", self.hr_second_pass_steps, 0, 1000)
        if self.enable_hr and self.width is not None and self.height is not None:
            w, h = self.hires_size(self.width, self.height)
            if max(w, h) > 4096:
                raise InvalidArgument(
                    f"`hr_scale` {s:g} makes {self.width}x{self.height} into {w}x{h}, over 4096; use a smaller scale"
                )

    def hires_size(self, width: int, height: int) -> tuple[int, int]:
        """The second pass's size: ``hr_scale`` times the first's, rounded down to a multiple of 8
        (A1111's ``hr_upscale_to_x``, which the latents' size rounds the same way)."""
        return int(width * self.hr_scale) // 8 * 8, int(height * self.hr_scale) // 8 * 8

    def hires_steps(self) -> int:
        """Steps of the second pass's schedule: ``hr_second_pass_steps``, or ``steps`` when 0."""
        return self.hr_second_pass_steps or self.steps

    def infotext_extra(self) -> dict:
        """This request's mode keys of A1111's infotext (:func:`gouache.pipelines.fields.extra_params`)."""
        from gouache.pipelines.fields import extra_params

        return extra_params(self)

    def with_seed(self) -> "GenerationRequest":
        """A copy whose seeds are fixed: -1 becomes a random 32-bit seed, as in AUTOMATIC1111
        (for the variation seed too)."""
        seed = random.randrange(MAX_SEED) if self.seed == -1 else self.seed
        subseed = random.randrange(MAX_SEED) if self.subseed == -1 else self.subseed
        return replace(self, seed=seed, subseed=subseed)

    def seeds_of(self, seed: int) -> "GenerationRequest":
        """The request of the image made with ``seed``: batch size 1, and its variation seed
        moved by as much as its seed (A1111: image i uses seed+i and subseed+i)."""
        return replace(self, seed=seed, subseed=self.subseed + seed - self.seed, batch_size=1, n_iter=1,
                       batch_pos=None)


@dataclass
class Img2ImgRequest(GenerationRequest):
    """A :class:`GenerationRequest` that starts from ``init_image`` (field names as A1111's API).

    ``width``/``height`` left at None take the init image's size, rounded down to a multiple of 8.

    >>> Img2ImgRequest("a red circle", init_image=Image.new("RGB", (64, 64)), denoising_strength=0.5).validate()
    """

    init_image: Image.Image | None = None
    denoising_strength: float = 0.75  # 0 keeps the image, 1 replaces it
    resize_mode: int = 0  # 0 "Just resize", 1 "Crop and resize", 2 "Resize and fill"

    _controls_need_images = False  # a control without an image reads the init image

    def validate(self) -> None:
        super().validate()
        check_image("init_image", self.init_image)
        if self.enable_hr:
            raise InvalidArgument("`enable_hr` (the hires fix) is for text-to-image; upscale with `gouache upscale`")
        if self.refiner_checkpoint is not None:
            raise InvalidArgument(f"`refiner_checkpoint` ({self.refiner_checkpoint!r}) is for text-to-image; "
                                  "run img2img with the refiner as the model instead")
        if isinstance(self.resize_mode, bool) or self.resize_mode not in RESIZE_MODES:
            choices = ", ".join(f"{k} ({v})" for k, v in RESIZE_MODES.items())
            raise InvalidArgument(f"`resize_mode` must be one of {choices}, got {self.resize_mode!r}")


def check_image(name: str, value) -> None:
    if not isinstance(value, Image.Image):
        raise InvalidArgument(
            f"`{name}` must be a PIL image, got {type(value).__name__}; "
            "open a file with gouache.images.load_image(path)"
        )


@dataclass
class Depth2ImgRequest(Img2ImgRequest):
    """An :class:`Img2ImgRequest` for an SD 2 depth model: ``depth_map`` (white = near, any size)
    keeps the init image's layout; None estimates it with the model's DPT depth estimator, if it has one.

    >>> Depth2ImgRequest("a stone castle", init_image=Image.new("RGB", (64, 64)),
    ...                  depth_map=Image.new("L", (64, 64))).validate()
    """

    depth_map: Image.Image | None = None

    def validate(self) -> None:
        super().validate()
        if self.depth_map is not None:
            check_image("depth_map", self.depth_map)


# A1111's inpainting_fill: what the masked area starts from, as its infotext writes it
MASKED_CONTENT = {0: "fill", 1: "original", 2: "latent noise", 3: "latent nothing"}
MAX_BLUR = 64


@dataclass
class InpaintRequest(Img2ImgRequest):
    """An :class:`Img2ImgRequest` that repaints where ``mask`` is white (A1111's field names).

    ``inpaint_full_res`` is A1111's "Only masked": work on the box around the mask grown by
    ``inpaint_full_res_padding`` pixels, at the request's size (the model's native size if unset),
    and paste it back. Otherwise ("Whole picture") the size defaults to the init image's.

    >>> InpaintRequest("a blue square", init_image=Image.new("RGB", (64, 64)),
    ...                mask=Image.new("L", (64, 64), 255)).validate()
    """

    mask: Image.Image | None = None  # white = repaint, black = keep; or the alpha of an RGBA image
    mask_blur: int = 4  # pixels (the Gaussian's sigma, as A1111)
    inpainting_fill: int = 1  # 0 fill, 1 original, 2 latent noise, 3 latent nothing
    inpaint_full_res: bool = False  # True: "Only masked"
    inpaint_full_res_padding: int = 32
    # a mask from words instead of ``mask`` (gouache.vision.segment): what to repaint, e.g. "the background"
    mask_prompt: str = ""
    mask_threshold: float = 0.5  # a pixel is in the words' mask above this probability
    mask_dilate: int = 0  # grow the words' mask by this many pixels
    mask_invert: bool = False  # repaint everything but what the words name
    mask_refine: int = 4  # snap the words' mask to the image's edges over this radius (vision.segment.DEFAULT_REFINE)
    segmenter: str | None = None  # a segmenter's name (gouache.vision.segment); None: the built-in CLIPSeg
    # > 0: a canny ControlNet unit on the init image at this weight (the model's default canny net), so
    # what stays keeps its outline and is not painted again in the repainted area (`edit background`)
    keep_edges: float = 0.0

    def validate(self) -> None:
        super().validate()
        check_number("keep_edges", self.keep_edges, 0, 2, " (0: off)")
        if self.mask_prompt:
            self._validate_mask_prompt()
        else:
            self._validate_mask()
        check_int("mask_blur", self.mask_blur, 0, MAX_BLUR)
        if isinstance(self.inpainting_fill, bool) or self.inpainting_fill not in MASKED_CONTENT:
            choices = ", ".join(f"{k} ({v})" for k, v in MASKED_CONTENT.items())
            raise InvalidArgument(f"`inpainting_fill` must be one of {choices}, got {self.inpainting_fill!r}")
        if not isinstance(self.inpaint_full_res, bool):
            raise InvalidArgument(f"`inpaint_full_res` must be True or False, got {self.inpaint_full_res!r}")
        check_int("inpaint_full_res_padding", self.inpaint_full_res_padding, 0, 4096)

    def _validate_mask(self) -> None:
        from gouache.pipelines.masking import binary_mask

        if self.mask is None:
            raise InvalidArgument("inpainting needs a `mask` (white = repaint) or a `mask_prompt` naming what to "
                                  "repaint, e.g. \"the background\"")
        check_image("mask", self.mask)
        if self.mask.size != self.init_image.size:
            raise InvalidArgument(
                f"`mask` must be the size of `init_image` ({self.init_image.width}x{self.init_image.height}), "
                f"got {self.mask.width}x{self.mask.height}"
            )
        if binary_mask(self.mask).getbbox() is None:
            raise InvalidArgument("`mask` is all black, so there is nothing to repaint; paint the area to change white")

    def _validate_mask_prompt(self) -> None:
        from gouache.vision.segment import MaskOptions, check_words

        if self.mask is not None:
            raise InvalidArgument("give a `mask` or a `mask_prompt`, not both")
        check_words(self.mask_prompt)
        MaskOptions(self.mask_threshold, self.mask_dilate, 0, self.mask_invert, self.mask_refine).validate("mask_")
        if self.segmenter is not None and not isinstance(self.segmenter, str):
            raise InvalidArgument(f"`segmenter` must be a segmenter's name, got {self.segmenter!r}")


@dataclass
class UpscaleRequest(Img2ImgRequest):
    """Upscale ``init_image`` ``scale`` times with Lanczos, then repaint it in overlapping tiles of
    ``tile`` pixels (the model's native size if None) with img2img at ``denoising_strength``
    (A1111's "SD upscale" script). Tiles overlap by at least ``overlap`` pixels (None: a quarter
    of a tile) and are blended with linear ramps there. ``width``/``height`` are set to the tile.

    >>> UpscaleRequest("a red circle", init_image=Image.new("RGB", (64, 64)), scale=4).validate()
    """

    denoising_strength: float = 0.3
    scale: float = 2.0
    tile: int | None = None
    overlap: int | None = None

    def validate(self) -> None:
        super().validate()
        s = check_number("scale", self.scale, 1, 16)
        w, h = self.upscaled_size()
        if max(w, h) > 8192:
            raise InvalidArgument(f"`scale` {s:g} makes {self.init_image.width}x{self.init_image.height} into "
                                  f"{w}x{h}, over 8192; use a smaller scale")
        if self.tile is not None:
            check_int("tile", self.tile, 64, 4096)
            if self.tile % 8:
                raise InvalidArgument(f"`tile` must be a multiple of 8, got {self.tile} (try {self.tile // 8 * 8 or 64})")
        if self.overlap is not None:
            tile = self.tile or self.width
            check_int("overlap", self.overlap, 0, 4096)
            if tile is not None and self.overlap >= tile // 2:
                raise InvalidArgument(f"`overlap` must be less than half the tile ({tile // 2}), got {self.overlap}")

    def upscaled_size(self) -> tuple[int, int]:
        """The result's size: ``scale`` times the image's, rounded down to a multiple of 8 (at least 64)."""
        return tuple(max(int(v * self.scale) // 8 * 8, 64) for v in self.init_image.size)


@dataclass
class GeneratedImage:
    """One image with exactly what made it: ``request`` has batch size 1 and this image's seed."""

    image: Image.Image
    request: GenerationRequest
    infotext: str
    params: dict = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.request.seed

    def save(self, path, overwrite: bool = False):
        from gouache.metadata.png import save_png

        return save_png(self.image, path, self.infotext, overwrite=overwrite)


def request_from_infotext(text: str, paths: bool = True) -> GenerationRequest:
    """The request that made an image, from its AUTOMATIC1111 infotext (``gouache generate --from``).

    Keys the text leaves out keep gouache's defaults; the model is looked up by its recorded name.
    ``paths=False`` (the server: the text came from a client) reads generation *parameters* only:
    the ControlNet units (their ``Image`` and ``Model`` may be paths) and the refiner are ignored,
    so nothing the text names is ever opened. Each key is read as :data:`gouache.pipelines.fields.FIELDS`
    says; how the model ran (``Dtype``, ``Attention``) does not change the request.

    >>> r = request_from_infotext("a cat\\nNegative prompt: dog\\nSteps: 30, Sampler: DPM++ 2M Karras, "
    ...                           "CFG scale: 6, Seed: 5, Size: 64x96, Model: gouache-tiny")
    >>> r.steps, r.sampler, r.seed, (r.width, r.height), r.negative_prompt
    (30, 'DPM++ 2M Karras', 5, (64, 96), 'dog')
    """
    from gouache.pipelines.fields import read_request

    return read_request(text, paths)
