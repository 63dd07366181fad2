"""The generation engine: what every mode shares, from a resolved request to its images.

A mode (txt2img, img2img, inpainting, depth, the tiled upscaler, the hires fix, the SDXL refiner)
says only what differs: the size it works at, where the loop starts, how a batch becomes images.
The engine owns the rest, in this order::

    req = resolve_request(request, model)          # seed, size, the model's CFG defaults
    with generation(model, req, controls) as gen:  # LoRA, prompt encoding, one speed scope
        start = ImageStart(model.encode(...), ...) # a mode's own preparation, inside the scope
        return gen.run(make_batch, progress, extra)

:meth:`Generation.run` draws the seeds of each batch (image ``i``: ``seed + i``), calls the mode's
``make_batch(seeds, tick)``, and writes each image's infotext; :meth:`Generation.sample` is one
batch through the one loop (:func:`gouache.sampling.loop.denoise`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, TypeVar

import torch
from PIL import Image

from gouache.adapters.embeddings import EmbeddingLibrary
from gouache.adapters.lora import activate, lora_requests
from gouache.metadata.infotext import format_infotext
from gouache.pipelines.fields import infotext_params
from gouache.pipelines.model import LoadedModel
from gouache.pipelines.request import GeneratedImage, GenerationRequest
from gouache.prompts.conditioning import ConditioningAt, conditioning_schedule, with_image_embeds
from gouache.prompts.encode import PromptEncoder
from gouache.sampling.guidance import CFGDenoiser, PerImage, unet_call
from gouache.sampling.loop import denoise, initial_noise, step_generators, to_device
from gouache.sampling.samplers import make_scheduler
from gouache.sampling.start import ImageStart, NoiseStart
from gouache.speed.cuda import batched

Progress = Callable[[int, int], None]
Watch = Callable[[int, int, torch.Tensor], None]  # (step, total, latents), see sampling.preview.previewer
MakeBatch = Callable[[list[int], Progress], list[Image.Image]]  # (seeds, tick) -> one image per seed
R = TypeVar("R", bound=GenerationRequest)


def resolve_request(req: R, model: LoadedModel, size: tuple[int, int] | None = None) -> R:
    """A copy with the seed fixed (-1 picks one), the CFG scale and truncation filled in (the model's
    defaults) and the size: the request's, else ``size`` (img2img: the init image's), else the
    model's native size."""
    width, height = size or (model.native_size, model.native_size)
    cfg = model.default_cfg_scale if req.cfg_scale is None else req.cfg_scale
    trunc = model.default_cfg_truncation if req.cfg_truncation is None else req.cfg_truncation
    return replace(req.with_seed(), width=req.width or width, height=req.height or height, cfg_scale=cfg,
                   cfg_truncation=trunc)


def prompt_conditioning(model: LoadedModel, req: GenerationRequest, encoder: PromptEncoder | None = None,
                        ) -> ConditioningAt:
    """``req``'s prompt and negative prompt, per step, as ``model``'s text encoder(s) give them
    (:func:`gouache.prompts.conditioning.conditioning_schedule`); with ``req.prompt_syntax`` "compel",
    as compel reads them (:func:`gouache.prompts.compel_syntax.compel_schedule`; ``encoder`` lends
    its embedding library only)."""
    time_ids = model.sdxl_time_ids(req.width, req.height) if model.is_sdxl else None
    if req.prompt_syntax == "compel":
        from gouache.prompts.compel_syntax import CompelEncoder, compel_schedule

        compel = CompelEncoder(model, clip_skip=req.clip_skip, embeddings=getattr(encoder, "embeddings", None))
        return compel_schedule(compel, req.prompt, req.negative_prompt, time_ids)
    encoder = encoder or PromptEncoder(model, clip_skip=req.clip_skip, emphasis=req.emphasis)
    return conditioning_schedule(encoder, req.prompt, req.negative_prompt, req.steps, req.old_prompt_editing,
                                 time_ids)


@dataclass
class Generation:
    """One request being generated: the model, the resolved request, its conditioning per step,
    the adapters it used (for the infotext), its ControlNets and its IP-Adapters' image prompts.
    Made by :func:`generation`."""

    model: LoadedModel
    req: GenerationRequest
    at: ConditioningAt
    adapters: dict = field(default_factory=dict)
    controls: object = None  # gouache.pipelines.controlnet.Controls
    watch: Watch | None = None
    image_prompts: object = None  # gouache.pipelines.ip_adapter.ImagePrompts

    def run(self, make_batch: MakeBatch, progress: Progress | None = None, extra: dict | None = None
            ) -> list[GeneratedImage]:
        """All ``n_iter × batch_size`` images: ``make_batch(seeds, tick)`` per batch, one progress
        bar over every batch, each image's request (batch size 1, its own seed) and infotext."""
        req, out = self.req, []
        extra = {**(extra or {}), **req.infotext_extra(), **(self.controls.infotext() if self.controls else {}),
                 **(self.image_prompts.infotext() if self.image_prompts else {})}
        together = batched(self.model.speed) and req.batch_size > 1
        for it in range(req.n_iter):
            seeds = [req.seed + it * req.batch_size + i for i in range(req.batch_size)]
            positions = list(range(req.batch_size))
            if req.batch_pos is not None and not together:  # per image: the one image alone is the same
                seeds, positions = seeds[req.batch_pos : req.batch_pos + 1], [req.batch_pos]

            def tick(i: int, n: int, it: int = it) -> None:
                if progress is not None:
                    progress(it * n + i, req.n_iter * n)

            for pos, seed, image in zip(positions, seeds, make_batch(seeds, tick)):
                if req.batch_pos is not None and pos != req.batch_pos:
                    continue
                one = req.seeds_of(seed)
                # made in one UNet call with its batch: A1111's keys, so that --from remakes the batch
                where = {"Batch size": req.batch_size, "Batch pos": pos} if together else {}
                params = infotext_params(one, self.model, self.adapters, {**extra, **where})
                out.append(GeneratedImage(image, one, format_infotext(one.prompt, one.negative_prompt, params), params))
        return out

    def sample(self, seeds: list[int], progress: Progress | None = None, start=None, *, model: LoadedModel | None = None,
               req: GenerationRequest | None = None, at: ConditioningAt | None = None, controls=...,
               frames=None) -> torch.Tensor:
        """One batch's final latents (:func:`sample_latents`), with this generation's model, request,
        conditioning, ControlNets and preview unless given (the hires pass's size, a refiner).
        ``frames`` (:class:`~gouache.sampling.frames.FrameAxis`): the batch is one clip, a frame per seed."""
        return sample_latents(model or self.model, req or self.req, at or self.at, seeds, progress, start,
                              self.watch, self.controls if controls is ... else controls, frames)

    def images(self, seeds: list[int], progress: Progress | None = None, start=None, **kwargs) -> list[Image.Image]:
        """:meth:`sample`, decoded."""
        return (kwargs.get("model") or self.model).decode(self.sample(seeds, progress, start, **kwargs))


@contextlib.contextmanager
def generation(model: LoadedModel, req: GenerationRequest, controls=None, watch: Watch | None = None,
               refiner: LoadedModel | None = None, conditioning: Callable | None = None,
               loras: list = ()) -> Iterator[Generation]:
    """The scope of one generation of the resolved ``req``: the prompt's LoRAs switched on, every
    text it uses encoded, the IP-Adapters' image prompts encoded and the adapters installed in the
    UNet (:mod:`gouache.pipelines.ip_adapter`), then one speed scope (:func:`gouache.speed.generation`)
    around whatever the mode runs inside (its init image's encode, every batch and pass).
    ``conditioning(encoder) -> ConditioningAt`` replaces the prompt's own (a video's prompt travel);
    ``loras`` (:class:`~gouache.adapters.lora.LoraRequest`) are switched on with the prompt's but are
    part of what the caller records otherwise (a motion adapter's own LoRA), not of "Lora hashes"."""
    from gouache.pipelines.ip_adapter import prepare_image_prompts
    from gouache.speed import generation as speed_scope

    adapters = {"lora": activate(model, lora_requests(req.prompt) + list(loras))}
    for extra in loras:
        adapters["lora"].pop(extra.name, None)
    library = model.embeddings if model.embeddings is not None else EmbeddingLibrary.scan()
    encoder = PromptEncoder(model, clip_skip=req.clip_skip, emphasis=req.emphasis, embeddings=library)
    at = conditioning(encoder) if conditioning is not None else prompt_conditioning(model, req, encoder)
    adapters["ti"] = {name: e.short_hash for name, e in encoder.embeddings.used.items()}
    prompts = prepare_image_prompts(model, req)
    if prompts is not None and prompts.adapters:  # more conditioning, with its own CFG negative
        at = with_image_embeds(at, prompts.embeds, prompts.negative)
    unets = [model.unet] + ([refiner.unet] if refiner is not None else [])
    nets = [item.net.net for item in controls.items] if controls else []
    with contextlib.ExitStack() as stack:
        if prompts is not None:  # installed before the speed scope: its patches see the adapters' layers
            stack.enter_context(prompts.installed(model.unet))
        stack.enter_context(speed_scope(model, unets, nets, _latent_tokens(model, req), req.tome_ratio))
        yield Generation(model, req, at, adapters, controls, watch, prompts)


def _latent_tokens(model: LoadedModel, req: GenerationRequest) -> int:
    """Positions in the largest latents the request samples (the hires pass's, when on)."""
    w, h = req.hires_size(req.width, req.height) if req.enable_hr else (req.width, req.height)
    return (w // model.vae_scale_factor) * (h // model.vae_scale_factor)


def _denoiser(model: LoadedModel, req: GenerationRequest, at: ConditioningAt, scheduler, controls, frames=None):
    """The guided model call: CFG over the UNet (through DeepCache when asked), ControlNet residuals
    as its extra inputs, one image at a time (the whole batch in one call on the batched path,
    :mod:`gouache.speed.cuda`) — or, for a clip (``frames``), every frame together in its context
    windows — then loss guidance around it when asked."""
    from gouache.sampling.loss import LossGuidedDenoiser
    from gouache.speed.deepcache import DeepCache

    residuals = controls.residuals(req.width, req.height, req.steps) if controls else None
    if req.deepcache_interval > 1:
        call = DeepCache(req.deepcache_interval).model_call(model.unet, residuals)
    elif residuals is None and (model.speed or {}).get("cuda_graphs"):
        import logging

        from gouache.speed.cuda import graphed_call

        call = graphed_call(model.unet, logging.getLogger("gouache.speed").warning)
    else:
        call = unet_call(model.unet, residuals)
    if frames is not None:
        call = frames.model_call(call)
    denoiser = CFGDenoiser(call, at, req.cfg_scale, uncond_until=req.uncond_until())
    if frames is None and not batched(model.speed):  # the CPU path: each image alone, bit-exact with its solo generation
        denoiser = PerImage(denoiser)
    if req.loss_guidance is not None:
        denoiser = LossGuidedDenoiser(denoiser, req.loss_guidance, model.vae, scheduler)
    return denoiser


@torch.no_grad()
def sample_latents(model: LoadedModel, req: GenerationRequest, at: ConditioningAt, seeds: list[int],
                   progress: Progress | None, start=None, watch: Watch | None = None, controls=None,
                   frames=None) -> torch.Tensor:
    """One batch through the one loop, before the decode: from pure noise (``start`` None or a
    :class:`~gouache.sampling.start.NoiseStart`) or an image (:class:`~gouache.sampling.start.ImageStart`);
    ``controls`` (:class:`~gouache.pipelines.controlnet.Controls`) add ControlNet residuals. Runs
    inside the caller's :func:`generation` scope. With ``frames`` (:class:`~gouache.sampling.frames.FrameAxis`)
    the batch is one clip: frame ``k`` is seed ``k``'s noise, and the frames go through the model together."""
    scheduler = make_scheduler(req.sampler, req.scheduler, model.scheduler_config, seeds=seeds)
    denoiser = _denoiser(model, req, at, scheduler, controls, frames)
    noise = seed_noise(model, req, seeds)
    if model.is_inpainting and not (isinstance(start, ImageStart) and start.conditioning is not None):
        # txt2img or img2img on an inpainting UNet: everything is masked (A1111's image conditioning)
        if not isinstance(start, ImageStart):
            end = start.end_step if isinstance(start, NoiseStart) else None
            start = ImageStart(torch.zeros_like(noise[:1]), 1.0, end_step=end)
        start = replace(start, conditioning=_unmasked_conditioning(model, req))

    def callback(i: int, n: int, latents: torch.Tensor) -> None:
        if progress is not None:
            progress(i, n)
        if watch is not None:
            watch(i, n, latents)

    return denoise(denoiser, scheduler, noise, req.steps, start, step_generators(seeds), callback)


def seed_noise(model: LoadedModel, req: GenerationRequest, seeds: list[int]) -> torch.Tensor:
    """The batch's first noise, one per seed (with the request's variation seeds), on the model's device."""
    f = model.vae_scale_factor
    shape = (model.latent_channels, req.height // f, req.width // f)
    subseeds = [req.subseed + s - req.seed for s in seeds]  # image i: seed+i and subseed+i
    noise = initial_noise(seeds, shape, subseeds=subseeds, subseed_strength=req.subseed_strength)
    return to_device(noise, model.device, model.dtype)


def _unmasked_conditioning(model: LoadedModel, req: GenerationRequest) -> torch.Tensor:
    """A 9-channel UNet's extra input when there is no image: all masked, the masked image grey
    (A1111's ``txt2img_image_conditioning``)."""
    grey = model.encode(torch.zeros(1, 3, req.height, req.width))
    return torch.cat([torch.ones_like(grey[:, :1]), grey], dim=1)
