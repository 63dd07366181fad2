"""Text-to-video (and image-to-video) with AnimateDiff motion adapters, on the one denoising loop.

A clip of ``frames`` frames is one sample with a time axis: frame ``k`` starts from seed ``seed + k``'s
noise, the motion adapter's modules are hooked onto the model's UNet
(:meth:`gouache.adapters.motion.LoadedMotion.installed`), and the model call runs the frames
together in context windows (:class:`gouache.sampling.frames.FrameAxis`). Everything else — the
sampler, CFG, LoRA, ControlNet (one control image for every frame), previews — is the engine's
(:mod:`gouache.pipelines.engine`), unchanged.

* **Prompt travel** — keyframed prompts (:mod:`gouache.prompts.travel`), each frame's text
  embedding mixed between its keyframes'.
* **Image-to-video** — ``init_image``: every frame starts from the picture at ``denoising_strength``;
  with ``init_frames="first"`` the first frame is also held to it at every step (the others move
  away from it), as an inpainting blend over the time axis.
* **FreeInit** — ``free_init`` passes (:mod:`gouache.sampling.freeinit`): each pass after the
  first starts from the last one's low frequencies, for frames that hold together; it costs as
  many whole samplings.
* **The adapter's settings** — a motion adapter folder may declare the CFG scale and guidance
  interval it was measured best at (``gouache.json``, :func:`gouache.adapters.motion.read_defaults`);
  a request that leaves them unset gets those instead of the image model's.
* **Motion scale** — ``--motion NAME:SCALE`` blends each motion module's output with its input.
  At 0 the modules are off and each frame is made alone: frame ``k`` is exactly the image
  ``gouache generate`` makes with seed ``seed + k`` (a test holds it bit for bit).

>>> video = txt2vid(load_model(), VideoRequest("a red circle on a blue background", motion="mm", frames=16))  # doctest: +SKIP
>>> video.save("outputs/txt2vid/circle.gif")                                                                   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from gouache.errors import InvalidArgument, check_int, check_number
from gouache.pipelines.engine import Progress, generation, prompt_conditioning, resolve_request
from gouache.pipelines.fields import infotext_params, number, read_request
from gouache.pipelines.model import LoadedModel, pixels_of
from gouache.pipelines.prompting import with_prompt_tools
from gouache.pipelines.request import GenerationRequest, check_image

MAX_FRAMES = 256  # a request's work is bounded; 64 frames of gouache-tiny take seconds, 256 of SD 1.5 long minutes
MAX_FPS = 60
INIT_FRAMES = ("first", "all")


@dataclass
class VideoRequest(GenerationRequest):
    """A text-to-video request: a :class:`GenerationRequest` (one clip: batch size 1) plus the clip.

    ``motion``: the motion adapter's name (``$GOUACHE_HOME/motion``) or, in Python and on the
    command line, a path; None: the model's own, if it declares one. ``motion_loras``: ``(name,
    weight)`` pairs. ``context_length``/``context_overlap``: the windows longer clips run in (A1111
    AnimateDiff's ``batch_size``/``overlap``); ``context_schedule``: ``uniform`` moves them from one
    sampling step to the next, ``static`` keeps them in place (:mod:`gouache.sampling.frames`);
    ``closed_loop``: the windows wrap round so the last frame leads into the first. ``loop_number``: times a GIF/WebP plays (0: for ever).
    ``free_init``: FreeInit's sampling passes (0 or 1: off; the A1111 extension's ``freeinit_iters``),
    with its low-pass ``free_init_filter`` and stop frequencies ``free_init_ds`` (spatial) and
    ``free_init_dt`` (temporal) (:mod:`gouache.sampling.freeinit`).

    >>> VideoRequest("a red circle", motion="mm_sd_v15_v2", frames=16, fps=8).validate()
    """

    frames: int = 16
    fps: float = 8.0
    motion: str | None = None
    motion_scale: float = 1.0
    motion_loras: tuple = ()
    context_length: int = 16
    context_overlap: int = 4
    context_schedule: str = "uniform"
    closed_loop: bool = False
    video_format: str = "gif"
    loop_number: int = 0
    init_image: Image.Image | None = None
    init_frames: str = "first"
    free_init: int = 0
    free_init_filter: str = "butterworth"
    free_init_ds: float = 0.25
    free_init_dt: float = 0.25

    def free_init_spec(self):
        """The :class:`~gouache.sampling.freeinit.FreeInit` the request asks for, or None (one pass)."""
        from gouache.sampling.freeinit import FreeInit

        if self.free_init in (0, 1):
            return None
        return FreeInit(self.free_init, self.free_init_filter, self.free_init_ds, self.free_init_dt)

    def validate(self) -> None:
        super().validate()
        from gouache.adapters.motion import MAX_SCALE
        from gouache.metadata.video import check_format
        from gouache.sampling.frames import CONTEXT_SCHEDULES

        check_int("frames", self.frames, 1, MAX_FRAMES)
        check_number("fps", self.fps, 1, MAX_FPS)
        if self.motion is not None and (not isinstance(self.motion, str) or not self.motion.strip()):
            raise InvalidArgument(f"`motion` must be a motion adapter's name, got {self.motion!r}")
        check_number("motion_scale", self.motion_scale, 0, MAX_SCALE, " (0: no motion, 1: as trained)")
        for item in self.motion_loras:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                raise InvalidArgument(f"`motion_loras` must be (name, weight) pairs, got {item!r}")
            check_number("motion LoRA weight", item[1], -MAX_SCALE, MAX_SCALE)
        check_int("context_length", self.context_length, 2, 64)
        check_int("context_overlap", self.context_overlap, 0, self.context_length - 1)
        if self.context_schedule not in CONTEXT_SCHEDULES:
            raise InvalidArgument(f"`context_schedule` must be one of {', '.join(CONTEXT_SCHEDULES)} (uniform: the "
                                  f"windows move each step), got {self.context_schedule!r}")
        check_format(self.video_format)
        check_int("loop_number", self.loop_number, 0, 10_000)
        if self.init_image is not None:
            check_image("init_image", self.init_image)
        if self.init_frames not in INIT_FRAMES:
            raise InvalidArgument(f"`init_frames` must be one of {', '.join(INIT_FRAMES)}, got {self.init_frames!r}")
        from gouache.sampling.freeinit import FreeInit

        FreeInit(self.free_init, self.free_init_filter, self.free_init_ds, self.free_init_dt).validate()
        if self.free_init > 1 and self.init_image is not None:
            raise InvalidArgument("`free_init` samples the clip again from its own noise, which would leave the init "
                                  "image behind; leave one of them out")
        for name, value, fine in (("batch_size", self.batch_size, 1), ("n_iter", self.n_iter, 1),
                                  ("enable_hr", self.enable_hr, False), ("deepcache_interval", self.deepcache_interval, 1),
                                  ("loss_guidance", self.loss_guidance, None), ("refiner_checkpoint", self.refiner_checkpoint, None)):
            if value != fine:
                raise InvalidArgument(f"`{name}` ({value!r}) is not for video: a request makes one clip; leave it out")



@dataclass
class GeneratedVideo:
    """One clip with exactly what made it: its frames, request, infotext (and its parameters)."""

    frames: list[Image.Image]
    request: VideoRequest
    infotext: str
    params: dict = field(default_factory=dict)
    windows: list = field(default_factory=list)  # the context windows the frames ran in
    path: Path | None = None  # where :meth:`save` wrote it
    codec: str | None = None

    @property
    def seed(self) -> int:
        return self.request.seed

    def save(self, path, overwrite: bool = False) -> Path:
        """The clip at ``path`` (its suffix picks the format; no suffix: a folder of PNG frames) and
        its sidecar ``.txt`` (:func:`gouache.metadata.video.save_video`)."""
        from gouache.metadata.video import save_video

        self.path, self.codec = save_video(self.frames, path, self.request.fps, self.infotext,
                                           self.request.loop_number, overwrite)
        return self.path


# -- the infotext's video keys: written after the request's, read back by video_request_from_infotext ----


def video_params(req: VideoRequest, motion) -> dict:
    """The video keys of the infotext (the A1111 AnimateDiff extension records the same settings)."""
    out = {"Frames": req.frames, "FPS": f"{req.fps:g}"}
    if motion is not None:
        out["Motion module"] = motion.name
        out["Motion module hash"] = motion.hash
        if motion.text_lora is not None and req.motion_scale:  # the adapter's own LoRA: a remake must find the same
            out["Motion module LoRA hash"] = motion.text_lora_hash
        if motion.readout is not None and req.motion_scale:  # the prompt's readout for the modules
            out["Motion module text hash"] = motion.readout_hash
    if req.motion_scale != 1:
        out["Motion scale"] = f"{req.motion_scale:g}"
    if req.motion_loras:
        out["Motion LoRA"] = "; ".join(f"{n}: {w:g}" for n, w in req.motion_loras)
        out["Motion LoRA hashes"] = "; ".join(f"{n}: {h}" for n, (_, h) in (motion.loras.items() if motion else []))
    if req.frames > req.context_length:
        out["Context length"], out["Context overlap"] = req.context_length, req.context_overlap
        out["Context schedule"] = req.context_schedule
    if req.closed_loop:
        out["Closed loop"] = True
    out["Video format"] = req.video_format
    if req.loop_number:
        out["Loop number"] = req.loop_number
    if req.init_image is not None:
        out["Denoising strength"] = float(req.denoising_strength)
        out["Init frames"] = req.init_frames
    if req.free_init_spec() is not None:
        out["FreeInit"] = req.free_init
        out["FreeInit filter"] = req.free_init_filter
        out["FreeInit ds"], out["FreeInit dt"] = f"{req.free_init_ds:g}", f"{req.free_init_dt:g}"
    return out


def video_request_from_infotext(text: str, paths: bool = True) -> VideoRequest:
    """The request that made a video, from its infotext (``gouache video --from``): the image keys as
    :func:`gouache.pipelines.fields.read_request` reads them, then the video keys."""
    from gouache.metadata.infotext import parse_infotext

    base = read_request(text, paths)
    p = parse_infotext(text).params
    if "Frames" not in p:
        raise InvalidArgument("the parameters have no `Frames` key: they are an image's, not a video's "
                              "(use gouache generate --from)")
    values = {f.name: getattr(base, f.name) for f in dataclasses.fields(GenerationRequest)}
    loras = []
    for part in filter(None, (s.strip() for s in p.get("Motion LoRA", "").split(";"))):
        name, _, weight = part.rpartition(":")
        loras.append((name.strip(), number({"w": weight}, "w", float, 1.0)))
    video = dict(frames=number(p, "Frames", int, 16), fps=number(p, "FPS", float, 8.0),
                 motion=p.get("Motion module"), motion_scale=number(p, "Motion scale", float, 1.0),
                 motion_loras=tuple(loras), context_length=number(p, "Context length", int, 16),
                 context_overlap=number(p, "Context overlap", int, 4), closed_loop=p.get("Closed loop") == "True",
                 # windows were static before the key was written: an older video is remade as it was made
                 context_schedule=p.get("Context schedule", "static" if "Context length" in p else "uniform"),
                 video_format=p.get("Video format", "gif"), loop_number=number(p, "Loop number", int, 0))
    if "Init frames" in p:
        video["init_frames"] = p["Init frames"]
    if "FreeInit" in p:
        video.update(free_init=number(p, "FreeInit", int, 0), free_init_filter=p.get("FreeInit filter", "butterworth"),
                     free_init_ds=number(p, "FreeInit ds", float, 0.25), free_init_dt=number(p, "FreeInit dt", float, 0.25))
    return VideoRequest(**values, **video)


# -- the pipeline -------------------------------------------------------------------------------------


def load_motion_for(model: LoadedModel, req: VideoRequest, paths: bool = True):
    """The request's motion adapter (with its motion LoRAs), or the model's own when it names none,
    checked against the model's UNet."""
    from gouache.adapters.motion import check_fits, load_motion

    name = req.motion or getattr(model.facts, "motion_adapter", None)
    if name is None:
        from gouache.adapters.motion import list_motions

        listed = ", ".join(list_motions()) or "none installed"
        raise InvalidArgument(f"name a motion adapter (motion=NAME, --motion NAME); {model.name} has no default. "
                              f"Available: {listed}")
    motion = load_motion(name, paths, list(req.motion_loras))
    check_fits(motion, model.unet)
    return motion


def travel_conditioning(model: LoadedModel, req: VideoRequest):
    """``conditioning(encoder)`` for :func:`~gouache.pipelines.engine.generation` when the prompt
    travels (:mod:`gouache.prompts.travel`), else None."""
    from gouache.prompts.travel import check_travel, parse_travel, travel_schedule

    keys = parse_travel(req.prompt)
    if keys is None:
        return None
    check_travel(keys, req.frames)

    def conditioning(encoder):
        ats = [prompt_conditioning(model, replace(req, prompt=k.prompt), encoder) for k in keys]
        return travel_schedule(ats, [k.frame for k in keys], req.frames, encoder.empty_chunk())

    return conditioning


def _start(model: LoadedModel, req: VideoRequest):
    """Where the loop starts: pure noise, or the init image for every frame (held on the first)."""
    import torch

    from gouache.images import flatten, resize_image
    from gouache.sampling.start import ImageStart

    if req.init_image is None:
        return None
    image = resize_image(1, flatten(req.init_image), req.width, req.height)
    latents = model.encode(pixels_of(image))
    if req.init_frames == "all":
        return ImageStart(latents, req.denoising_strength)
    f = model.vae_scale_factor
    repaint = torch.ones(req.frames, 1, req.height // f, req.width // f, dtype=latents.dtype)
    repaint[0] = 0
    return ImageStart(latents, req.denoising_strength, repaint=repaint)


DECODE_CHUNK = 4  # frames decoded together: near a whole batch's speed at a quarter of its extra memory


def _decode(model: LoadedModel, latents, moving: bool) -> list[Image.Image]:
    """The frames: ``DECODE_CHUNK`` at a time when they move together, one at a time (as images are)
    when each frame was made alone (motion scale 0: frame ``k`` is then exactly ``generate``'s image)."""
    if not moving:
        return model.decode(latents)
    return [im for i in range(0, latents.shape[0], DECODE_CHUNK)
            for im in model.decode(latents[i:i + DECODE_CHUNK], together=True)]


def _passes(model: LoadedModel, req: VideoRequest, gen, seeds: list[int], progress: Progress | None, start, axis):
    """The clip's latents: one sampling, or FreeInit's passes, each from the last one's low
    frequencies (:mod:`gouache.sampling.freeinit`); the progress counts every pass's steps."""
    import torch

    from gouache.pipelines.engine import seed_noise
    from gouache.sampling.freeinit import RenoisedStart, next_start, pass_seed

    spec = req.free_init_spec()
    passes = 1 if spec is None else spec.iterations

    def counted(k: int):
        if progress is None:
            return None
        return lambda i, n: progress(k * n + i, passes * n)

    latents = gen.sample(seeds, counted(0), start, frames=axis)
    noise = seed_noise(model, req, seeds).cpu() if passes > 1 else None  # the clip's own first noise
    for k in range(1, passes):
        fresh = torch.Generator().manual_seed(pass_seed(req.seed, k))
        begin = next_start(latents.cpu(), noise, model.scheduler_config, spec, fresh)
        latents = gen.sample(seeds, counted(k), RenoisedStart(begin), frames=axis)
    return latents


@contextlib.contextmanager
def _bounded_text_cache(model: LoadedModel, rows: int):
    """The speed scope without its cross-attention key/value cache (:mod:`gouache.speed.attention`)
    when it would be large. A clip's text is one row per frame, and the cache keeps each run of
    equal rows once (an image's size); a travelling prompt's rows all differ, so there it would keep
    ``rows`` = parts · F of them (hundreds of MB on SD 1.5 for 16 frames, to save two projections of
    77 tokens a step) and is kept only while that stays small (gouache-tiny's: a few MB)."""
    speed = model.speed
    if text_cache_bytes(model.unet, rows) > TEXT_CACHE_BUDGET:
        model.speed = {**(speed or {}), "cache_text": False}
    try:
        yield
    finally:
        model.speed = speed


TEXT_CACHE_BUDGET = 64 << 20  # bytes of text keys and values a clip may keep for its whole generation


def text_cache_bytes(unet, rows: int, tokens: int = 77) -> int:
    """What the text key/value cache holds for ``rows`` different texts: two ``tokens``-long
    projections per cross-attention layer."""
    from gouache.adapters.ip_attention import cross_attention_layers

    p = next(unet.parameters())
    return sum(2 * rows * tokens * attn.to_k.out_features * p.element_size() for _, attn in cross_attention_layers(unet))


def _group_norm(mod):
    """A UNet GroupNorm that takes a clip's channels-last batch the fast way
    (:func:`gouache.speed.packing.few_channel_group_norm`) and anything else its own way."""
    from gouache.speed.packing import few_channel_group_norm

    plain = type(mod).forward

    def forward(x):
        out = few_channel_group_norm(x, mod)
        return plain(mod, x) if out is None else out

    return forward


def _split_geglu(mod):
    """GEGLU's ``h * gelu(g)`` from two products on the halves of its projection (views of its
    weight, no copy) instead of one product twice as wide that is then cut in two: on CPU at a motion
    module's width a fifth less time, the same values up to rounding."""
    import torch
    import torch.nn.functional as F

    plain = type(mod).forward

    def forward(x, *args, **kwargs):
        proj = mod.proj
        if args or kwargs or torch.is_grad_enabled() or x.device.type != "cpu":
            return plain(mod, x, *args, **kwargs)
        half = proj.out_features // 2
        bias = proj.bias
        gate = F.gelu(F.linear(x, proj.weight[half:], None if bias is None else bias[half:]))
        return F.linear(x, proj.weight[:half], None if bias is None else bias[:half]).mul_(gate)

    return forward


@contextlib.contextmanager
def _motion_speed(model: LoadedModel, adapter):
    """The model's speed path on the motion modules too (they are not the UNet's, so the generation's
    speed scope does not reach them): its attention processor (gouache's, unless the model runs
    diffusers' reference settings) and, on CPU, oneDNN-packed linears — the temporal attention's
    projections and feed-forwards are a third of a clip's time on gouache-tiny. With gouache's
    attention, the frames' attention runs as two batched matmuls, GEGLU's product is split in two
    (:func:`_split_geglu`) and the UNet's GroupNorms take the clip's channels-last batch without
    PyTorch's slow kernel for few channels per group (:func:`_group_norm`)."""
    import torch
    from diffusers.models.activations import GEGLU
    from diffusers.models.attention_processor import Attention

    from gouache.speed import attention_processor
    from gouache.speed.packing import instance_patches, packed_weights

    done = model.speed if model.speed is not None else {}
    kind = done.get("attention", "auto")
    for layer in adapter.modules():  # a MotionAdapter has no set_attn_processor of its own
        if isinstance(layer, Attention):
            processor = attention_processor(kind)
            if hasattr(processor, "temporal"):  # gouache's: the frames' short attentions as two matmuls
                processor.temporal = True
            layer.set_processor(processor)
    fast = kind == "auto"  # diffusers' reference settings keep diffusers' layers as they are
    with contextlib.ExitStack() as stack:
        # the clip's batch makes GEGLU's wide product the slowest layer, in the motion modules and the UNet's
        # transformers alike (one whose forward another scope replaced is left to it)
        geglus = (m for net in (adapter, model.unet) for m in net.modules()
                  if type(m) is GEGLU and type(m.proj) is torch.nn.Linear and "forward" not in m.__dict__) if fast else ()
        stack.enter_context(instance_patches("_gouache_motion", ((m, {"forward": _split_geglu(m)}) for m in geglus)))
        norms = (m for m in model.unet.modules() if type(m) is torch.nn.GroupNorm) if fast else ()
        stack.enter_context(instance_patches("_gouache_motion", ((m, {"forward": _group_norm(m)}) for m in norms)))
        if done.get("pack_weights", True):
            stack.enter_context(packed_weights(adapter))
        yield


@with_prompt_tools
def txt2vid(model: LoadedModel, request: VideoRequest, progress: Progress | None = None, preview=None,
            preview_every: int = 5, paths: bool = True, motion=None) -> list[GeneratedVideo]:
    """One clip (in a list, as every pipeline returns; styles and wildcards apply as for images).
    ``preview(step, total, image)`` gets a grid of the frames' cheap previews; ``paths=False`` (the
    server) looks motion adapters up by name only; ``motion``: a
    :class:`~gouache.adapters.motion.LoadedMotion` already loaded (:func:`load_motion_for`), for a
    caller that makes several clips with one adapter; it must be the one the request names."""
    from gouache.adapters.motion import FrameCount
    from gouache.pipelines.controlnet import prepare_controls
    from gouache.sampling.frames import FrameAxis, context_windows
    from gouache.sampling.preview import previewer

    # 1. Check inputs, then the motion adapter against the UNet, before any step
    request.validate()
    size = None
    if request.init_image is not None:
        from gouache.pipelines.img2img import size_for

        size = size_for(request.init_image)
    req = resolve_request(request, model, size)
    req.validate()
    conditioning = travel_conditioning(model, req)
    if motion is None:
        motion = load_motion_for(model, req, paths)
    elif req.motion not in (None, motion.name) or req.motion_loras != tuple((n, w) for n, (w, _) in motion.loras.items()):
        raise InvalidArgument(f"`motion` {motion.name!r} (loaded) is not the request's {req.motion!r} "
                              "with its motion LoRAs; pass the adapter the request names")
    # what the adapter declares it is at its best with, where the request leaves it to the defaults
    declared = {k: v for k, v in motion.generation_defaults.items() if getattr(request, k) is None}
    if declared and req.motion_scale > 0:
        req = replace(req, **declared)
    # 2. The time axis: windows over the frames (one frame each when the motion is off)
    moving = req.motion_scale > 0
    length = min(req.context_length, motion.max_frames)
    windows = (context_windows(req.frames, length, req.context_overlap, req.closed_loop) if moving
               else [[k] for k in range(req.frames)])
    counter = FrameCount()
    shifting = (length, req.context_overlap, req.closed_loop) if moving and req.context_schedule == "uniform" else None
    axis = FrameAxis(req.frames, windows, counter, shifting)
    seeds = [req.seed + k for k in range(req.frames)]
    controls = prepare_controls(model, req)
    watch = previewer(model, preview, preview_every)
    # 3. The clip through the one loop, with the motion modules hooked onto the UNet
    different = (req.frames if conditioning is not None else 1) * (1 if req.cfg_scale == 1 else 2)
    scope = generation(model, req, controls, watch, conditioning=conditioning, loras=motion.unet_loras(req.motion_scale))
    with _bounded_text_cache(model, different), scope as gen:
        start = _start(model, req)
        hooked = motion.installed(model.unet, counter, req.motion_scale) if moving else contextlib.nullcontext()
        with hooked, (_motion_speed(model, motion.adapter) if moving else contextlib.nullcontext()):
            latents = _passes(model, req, gen, seeds, progress, start, axis)
        frames = _decode(model, latents, moving)
    params = infotext_params(req, model, gen.adapters, {**req.infotext_extra(), **video_params(req, motion),
                                                       **(controls.infotext() if controls else {})})
    from gouache.metadata.infotext import format_infotext

    text = format_infotext(req.prompt, req.negative_prompt, params)
    return [GeneratedVideo(frames, req, text, params, windows)]
