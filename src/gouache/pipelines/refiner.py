"""SDXL base + refiner, as diffusers' ``denoising_end``/``denoising_start`` and A1111's "Refiner".

The base runs the first ``round(steps · refiner_switch_at)`` steps; its still-noisy latents go on
through the same loop with the refiner's UNet, conditioning and VAE (an image start at that step,
with no noise added).
"""

from __future__ import annotations

from gouache.errors import InvalidArgument
from gouache.pipelines.engine import Generation, Progress, prompt_conditioning
from gouache.pipelines.model import LoadedModel
from gouache.pipelines.request import GenerationRequest
from gouache.prompts.conditioning import ConditioningAt, with_time_ids
from gouache.prompts.encode import PromptEncoder
from gouache.sampling.start import ImageStart, NoiseStart


def check_refiner(model: LoadedModel, refiner: LoadedModel, request: GenerationRequest) -> None:
    """One clear error unless ``refiner`` can finish ``model``'s latents for ``request``."""
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
    at = prompt_conditioning(refiner, req, PromptEncoder(refiner, clip_skip=req.clip_skip, emphasis=req.emphasis))
    if not refiner.is_refiner:
        return at
    return with_time_ids(at, refiner.refiner_time_ids(req.width, req.height, 6.0),
                         refiner.refiner_time_ids(req.width, req.height, 2.5))


def refiner_batch(gen: Generation, refiner: LoadedModel, at_refiner: ConditioningAt, seeds: list[int],
                  progress: Progress | None):
    """One batch: the base's first ``k`` steps, then the refiner's from there, on one progress bar.
    ControlNets guide the base's steps only."""
    req = gen.req
    k = round(req.steps * req.refiner_switch_at)

    def first(i: int, n: int) -> None:
        if progress is not None:
            progress(i, req.steps)

    def second(i: int, n: int) -> None:
        if progress is not None:
            progress(k + i, req.steps)

    latents = gen.sample(seeds, first, NoiseStart(end_step=k))
    # strength whose int(steps · strength) is exactly steps - k, whatever the float rounding
    start = ImageStart(latents, (req.steps - k + 0.5) / req.steps, noised=True)
    return gen.images(seeds, second, start, model=refiner, at=at_refiner, controls=None)
