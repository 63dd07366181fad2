"""Text-to-image over the one denoising loop.

>>> from gouache import txt2img
>>> images = txt2img("a red circle on a blue background", seed=42, steps=20)   # doctest: +SKIP
>>> images[0].image.size, images[0].seed                                        # doctest: +SKIP
((64, 64), 42)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, TypeVar

import torch
from PIL import Image

from gouache import __version__
from gouache.adapters.embeddings import EmbeddingLibrary
from gouache.adapters.lora import activate, lora_requests
from gouache.metadata.infotext import format_infotext, ordered
from gouache.pipelines.model import LoadedModel
from gouache.pipelines.request import GeneratedImage, GenerationRequest
from gouache.prompts.encode import PromptEncoder, pad_conditionings
from gouache.prompts.plan import ScheduledPrompt
from gouache.sampling.guidance import CFGDenoiser, Conditioning, ConditioningAt
from gouache.sampling.loop import denoise, initial_noise, step_generators
from gouache.sampling.loss import LossGuidedDenoiser
from gouache.sampling.preview import Preview, previewer
from gouache.sampling.samplers import make_scheduler, resolve
from gouache.sampling.start import ImageStart
from gouache.speed.threads import generation_threads, torch_threads

Progress = Callable[[int, int], None]
# make_batch(conditioning_at, seeds, progress) -> one image per seed
MakeBatch = Callable[[ConditioningAt, list[int], Progress], list[Image.Image]]
R = TypeVar("R", bound=GenerationRequest)
Watch = Callable[[int, int, torch.Tensor], None]  # (step, total, latents), see sampling.preview.previewer


def _hashes(found: dict[str, str]) -> str | None:
    return ", ".join(f"{name}: {h}" for name, h in found.items()) or None


def infotext_params(req: GenerationRequest, model: LoadedModel, adapters: dict | None = None,
                    extra: dict | None = None) -> dict:
    """AUTOMATIC1111's parameter line for one image, in its key order; ``extra`` holds a mode's own
    keys (img2img's "Denoising strength", inpainting's "Mask blur", ...). Written as the field table
    says (:func:`gouache.pipelines.fields.infotext_params`)."""
    from gouache.pipelines import fields

    return fields.infotext_params(req, model, adapters, extra)


def resolve_request(req: R, model: LoadedModel, size: tuple[int, int] | None = None) -> R:
    """A copy with the seed fixed (-1 picks one), the CFG scale and truncation filled in (the model's
    defaults) and the size: the request's, else ``size`` (img2img: the init image's), else the
    model's native size."""
    width, height = size or (model.native_size, model.native_size)
    cfg = model.default_cfg_scale if req.cfg_scale is None else req.cfg_scale
    trunc = model.default_cfg_truncation if req.cfg_truncation is None else req.cfg_truncation
    return replace(req.with_seed(), width=req.width or width, height=req.height or height, cfg_scale=cfg,
                   cfg_truncation=trunc)


def txt2img(model: LoadedModel, request: GenerationRequest, progress: Progress | None = None,
            preview: Preview | None = None, preview_every: int = 5, refiner: LoadedModel | None = None
            ) -> list[GeneratedImage]:
    """All ``n_iter × batch_size`` images of a request; image ``i`` uses seed ``seed + i``.

    ``preview(step, total, image)``, if given, gets a cheap preview of each batch every
    ``preview_every`` steps and after the last (:mod:`gouache.sampling.preview`); with the hires
    fix, of each pass. With an SDXL ``refiner``, the base runs the first ``refiner_switch_at`` of
    the steps and the refiner the rest (:func:`refiner_batch`).
    """
    # 1. Check inputs
    if refiner is not None:
        _check_refiner(model, refiner, request)
        request = replace(request, refiner_checkpoint=refiner.name)
    elif request.refiner_checkpoint is not None:
        from gouache.errors import InvalidArgument

        raise InvalidArgument(f"the request names refiner {request.refiner_checkpoint!r}: load it and pass "
                              "`refiner=` (gouache.txt2img and `gouache generate --refiner` do this)")
    request.validate()
    req = resolve_request(request, model)
    req.validate()  # again: the hires fix's size, now that the size is known
    # 2. ControlNets and their control maps, at the request's size
    from gouache.pipelines.controlnet import prepare_controls

    controls = prepare_controls(model, req)
    extra = {**req.infotext_extra(), **(controls.infotext() if controls else {})}
    # 3.-5. Conditioning, then every batch through the one loop from pure noise
    watch = previewer(model, preview, preview_every)
    if refiner is not None:
        at_refiner = refiner_schedule(refiner, req)

        def make_batch(at, seeds, tick):
            return refiner_batch(model, refiner, req, at, at_refiner, seeds, tick, watch, controls)
    else:
        def make_batch(at, seeds, tick):
            if req.enable_hr:
                return hires_batch(model, req, at, seeds, tick, watch=watch, controls=controls)
            return sample_batch(model, req, at, seeds, tick, watch=watch, controls=controls)
    return generate_images(model, req, make_batch, progress, extra)


def _check_refiner(model: LoadedModel, refiner: LoadedModel, request: GenerationRequest) -> None:
    from gouache.errors import InvalidArgument

    if not isinstance(refiner, LoadedModel) or not refiner.is_sdxl:
        raise InvalidArgument(f"`refiner` must be a loaded SDXL model (gouache.load_model(...)), got {refiner!r}")
    if refiner.latent_channels != model.latent_channels or refiner.vae_scale_factor != model.vae_scale_factor:
        raise InvalidArgument(f"`refiner` {refiner.name} works on other latents than {model.name}; "
                              "pair an SDXL base with an SDXL refiner")
    if request.enable_hr:
        raise InvalidArgument("`refiner` and the hires fix (`enable_hr`) cannot be combined; use one of them")


def refiner_schedule(refiner: LoadedModel, req: GenerationRequest) -> ConditioningAt:
    """The prompt as the refiner's encoder(s) give it, with the refiner's time ids: aesthetic score
    6.0 for the prompt and 2.5 for the negative (diffusers' defaults); a base's 6 size/crop ids otherwise."""
    at = conditioning_schedule(refiner, req, PromptEncoder(refiner, clip_skip=req.clip_skip, emphasis=req.emphasis))
    if not refiner.is_refiner:
        return at
    pos = refiner.refiner_time_ids(req.width, req.height, 6.0)
    neg = refiner.refiner_time_ids(req.width, req.height, 2.5)

    def at_refiner(step: int):
        conds, uncond = at(step)
        return [(replace(c, time_ids=pos), w) for c, w in conds], replace(uncond, time_ids=neg)

    return at_refiner


def refiner_batch(model: LoadedModel, refiner: LoadedModel, req: GenerationRequest, at: ConditioningAt,
                  at_refiner: ConditioningAt, seeds: list[int], progress: Progress | None,
                  watch: Watch | None = None, controls=None) -> list[Image.Image]:
    """SDXL base + refiner, as diffusers' ``denoising_end``/``denoising_start`` and A1111's "Refiner":
    the base runs the first ``round(steps · refiner_switch_at)`` steps, and its still-noisy latents
    go on through the same loop with the refiner's UNet, conditioning and VAE (an img2img start at
    that step, with no noise added). ControlNets (``controls``) guide the base's steps only."""
    k = round(req.steps * req.refiner_switch_at)

    def first(i: int, n: int) -> None:
        if progress is not None:
            progress(i, req.steps)

    def second(i: int, n: int) -> None:
        if progress is not None:
            progress(k + i, req.steps)

    latents = sample_latents(model, req, at, seeds, first, watch=watch, end_step=k, controls=controls)
    # strength whose int(steps · strength) is exactly steps - k, whatever the float rounding
    start = ImageStart(latents, (req.steps - k + 0.5) / req.steps, noised=True)
    return refiner.decode(sample_latents(refiner, req, at_refiner, seeds, second, start, watch))


def generate_images(model: LoadedModel, req: GenerationRequest, make_batch: MakeBatch, progress: Progress | None = None,
                    extra_params: dict | None = None) -> list[GeneratedImage]:
    """What every mode shares: the prompt's LoRA and encoding, the seeds of each batch, the infotext.

    ``make_batch(conditioning_at, seeds, progress)`` makes the images of one batch; ``req`` is
    resolved (:func:`resolve_request`). Each result's request has batch size 1 and its own seed.
    """
    # 2. Switch on the prompt's LoRA, then encode every text the prompt uses at some step
    adapters = {"lora": activate(model, lora_requests(req.prompt))}
    library = model.embeddings if model.embeddings is not None else EmbeddingLibrary.scan()
    encoder = PromptEncoder(model, clip_skip=req.clip_skip, emphasis=req.emphasis, embeddings=library)
    at = conditioning_schedule(model, req, encoder)
    adapters["ti"] = {name: e.short_hash for name, e in encoder.embeddings.used.items()}

    out: list[GeneratedImage] = []
    with torch_threads(generation_threads(_latent_tokens(model, req))):  # one thread for a small model
        for it in range(req.n_iter):
            seeds = [req.seed + it * req.batch_size + i for i in range(req.batch_size)]

            def tick(i: int, n: int, it: int = it) -> None:  # one bar over all iterations
                if progress is not None:
                    progress(it * n + i, req.n_iter * n)

            images = make_batch(at, seeds, tick)
            for seed, image in zip(seeds, images):
                one = req.seeds_of(seed)
                params = infotext_params(one, model, adapters, extra_params)
                out.append(GeneratedImage(image, one, format_infotext(one.prompt, one.negative_prompt, params), params))
    return out


def _latent_tokens(model: LoadedModel, req: GenerationRequest) -> int:
    """Positions in the largest latents the request samples (the hires pass's, when on)."""
    w, h = req.hires_size(req.width, req.height) if req.enable_hr else (req.width, req.height)
    return (w // model.vae_scale_factor) * (h // model.vae_scale_factor)


def conditioning_schedule(model: LoadedModel, req: GenerationRequest, encoder: PromptEncoder | None = None) -> ConditioningAt:
    """The prompt and negative prompt as the denoiser asks for them at each step.

    AND parts and prompt-editing schedules are resolved per step, every distinct text is encoded
    once (up front), and everything is padded to the same number of 77-token chunks.
    """
    encoder = encoder or PromptEncoder(model, clip_skip=req.clip_skip, emphasis=req.emphasis)
    positive = ScheduledPrompt.parse(req.prompt, req.steps, old_scheduling=req.old_prompt_editing)
    negative = ScheduledPrompt.parse(req.negative_prompt, req.steps, use_and=False,
                                     old_scheduling=req.old_prompt_editing)
    time_ids = model.sdxl_time_ids(req.width, req.height) if model.is_sdxl else None
    empty = encoder.empty_chunk()
    for text in sorted(positive.texts() | negative.texts()):
        encoder.encode(text)

    def at(step: int):
        conds = [(encoder.encode(text), w) for text, w in positive.at(step)]
        uncond = encoder.encode(negative.at(step)[0][0])
        padded = pad_conditionings([uncond] + [c for c, _ in conds], empty)
        padded = [Conditioning(c.hidden, c.pooled, time_ids) for c in padded]
        return list(zip(padded[1:], (w for _, w in conds))), padded[0]

    return at


def sample_batch(model: LoadedModel, req: GenerationRequest, at: ConditioningAt, seeds: list[int],
                 progress: Progress | None, start: ImageStart | None = None, watch: Watch | None = None,
                 controls=None) -> list[Image.Image]:
    """One batch through the one loop: from pure noise, or from an image (img2img, inpainting);
    ``controls`` (:class:`~gouache.pipelines.controlnet.Controls`) add ControlNet residuals."""
    return model.decode(sample_latents(model, req, at, seeds, progress, start, watch, controls=controls))


def hires_batch(model: LoadedModel, req: GenerationRequest, at: ConditioningAt, seeds: list[int],
                progress: Progress | None, watch: Watch | None = None, controls=None) -> list[Image.Image]:
    """A1111's "Hires. fix": the batch at the request's size, upscaled ``hr_scale`` times
    (:mod:`gouache.pipelines.hires`), then img2img at that size with ``denoising_strength`` for
    the last part of a ``hires_steps()``-step schedule, from each seed's noise at the new size.
    Each pass fills half of the progress bar. ControlNets guide both passes (their maps resized)."""
    from gouache.pipelines.hires import upscale_latents

    bar = [1]  # the first pass's step count: each pass is reported as that many steps

    def first(i: int, n: int) -> None:
        bar[0] = n
        if progress is not None:
            progress(i, 2 * n)

    def second(i: int, n: int) -> None:
        if progress is not None:
            progress(bar[0] + i * bar[0] // n, 2 * bar[0])

    latents = sample_latents(model, req, at, seeds, first, watch=watch, controls=controls)
    size = req.hires_size(req.width, req.height)
    start = ImageStart(upscale_latents(model, latents, size, req.hr_upscaler), req.denoising_strength)
    steps = req.hires_steps()
    hires = replace(req, width=size[0], height=size[1], steps=steps)

    time_ids = model.sdxl_time_ids(*size) if model.is_sdxl else None

    def at_second(step: int):  # prompt editing stays on the first pass's timeline; SDXL sees the new size
        conds, uncond = at(step * req.steps // steps)
        if time_ids is None:
            return conds, uncond
        return [(replace(c, time_ids=time_ids), w) for c, w in conds], replace(uncond, time_ids=time_ids)

    images = sample_batch(model, hires, at_second, seeds, second, start, watch, controls=controls)
    if progress is not None and int(steps * start.strength) == 0:
        progress(2 * bar[0], 2 * bar[0])  # a second pass of no steps still ends the bar
    return images


@torch.no_grad()
def sample_latents(model: LoadedModel, req: GenerationRequest, at: ConditioningAt, seeds: list[int],
                   progress: Progress | None, start: ImageStart | None = None, watch: Watch | None = None,
                   end_step: int | None = None, controls=None) -> torch.Tensor:
    """:func:`sample_batch` before the decode: the batch's final latents (with ``end_step``, the
    still-noisy latents before that sampling step)."""
    from gouache.speed import token_merging
    from gouache.speed.attention import cross_attention_cache
    from gouache.speed.deepcache import DeepCache
    from gouache.speed.packing import packed_weights
    from gouache.speed.shared import shared_cfg_prefix

    residuals = controls.residuals(req.width, req.height, req.steps) if controls else None
    deepcache = DeepCache(req.deepcache_interval) if req.deepcache_interval > 1 else None
    denoiser = CFGDenoiser(model.unet, at, req.cfg_scale, residuals=residuals, uncond_until=req.uncond_until(),
                           deepcache=deepcache)
    # 3. Prepare the scheduler and the starting noise, seeded per image
    scheduler = make_scheduler(req.sampler, req.scheduler, model.scheduler_config, seeds=seeds)
    if req.loss_guidance is not None:  # a wrapper around the guided model call (gouache.sampling.loss)
        denoiser = LossGuidedDenoiser(denoiser, req.loss_guidance, model.vae, scheduler)
    f = model.vae_scale_factor
    shape = (model.latent_channels, req.height // f, req.width // f)
    subseeds = [req.subseed + s - req.seed for s in seeds]  # image i: seed+i and subseed+i
    noise = initial_noise(seeds, shape, subseeds=subseeds, subseed_strength=req.subseed_strength)
    noise = noise.to(model.device, model.dtype)
    if model.is_inpainting and (start is None or start.conditioning is None):
        # txt2img or img2img on an inpainting UNet: everything is masked (A1111's image conditioning)
        start = replace(start or ImageStart(torch.zeros_like(noise[:1]), 1.0),
                        conditioning=_unmasked_conditioning(model, req))
    # 4. Denoise, then decode. For this generation (LoRAs are fused by now), the weights are packed
    # for oneDNN, the text's cross-attention keys and values are computed once, and the layers CFG's
    # halves share run once per step.
    nets = [item.net.net for item in controls.items] if controls else []
    with token_merging(model.unet, req.tome_ratio), packed_weights(model.unet, *nets), \
            cross_attention_cache(model.unet, *nets), shared_cfg_prefix(model.unet, *nets):
        if start is None:
            end = None if end_step is None else end_step * scheduler.order
            return denoise(denoiser, scheduler, noise, req.steps, step_generators(seeds), progress, watch=watch, end=end)
        return start.denoise(denoiser, scheduler, noise, req.steps, step_generators(seeds), progress, watch)


def _unmasked_conditioning(model: LoadedModel, req: GenerationRequest) -> torch.Tensor:
    """A 9-channel UNet's extra input when there is no image: all masked, the masked image grey
    (A1111's ``txt2img_image_conditioning``)."""
    grey = model.encode(torch.zeros(1, 3, req.height, req.width))
    return torch.cat([torch.ones_like(grey[:, :1]), grey], dim=1)
