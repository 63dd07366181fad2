"""Text-to-image: pure noise through the one loop (:mod:`gouache.pipelines.engine`), with the
hires fix (:mod:`gouache.pipelines.hires`) or an SDXL refiner (:mod:`gouache.pipelines.refiner`).

>>> from gouache import txt2img
>>> images = txt2img("a red circle on a blue background", seed=42, steps=20)   # doctest: +SKIP
>>> images[0].image.size, images[0].seed                                        # doctest: +SKIP
((64, 64), 42)
"""

from __future__ import annotations

from dataclasses import replace

from gouache.errors import InvalidArgument
from gouache.pipelines.engine import Progress, generation, resolve_request
from gouache.pipelines.model import LoadedModel
from gouache.pipelines.prompting import with_prompt_tools
from gouache.pipelines.request import GeneratedImage, GenerationRequest
from gouache.sampling.preview import Preview, previewer


@with_prompt_tools
def txt2img(model: LoadedModel, request: GenerationRequest, progress: Progress | None = None,
            preview: Preview | None = None, preview_every: int = 5, refiner: LoadedModel | None = None
            ) -> list[GeneratedImage]:
    """All ``n_iter × batch_size`` images of a request; image ``i`` uses seed ``seed + i``.

    ``preview(step, total, image)``, if given, gets a cheap preview of each batch every
    ``preview_every`` steps and after the last (:mod:`gouache.sampling.preview`); with the hires
    fix, of each pass. With an SDXL ``refiner``, the base runs the first ``refiner_switch_at`` of
    the steps and the refiner the rest (:func:`gouache.pipelines.refiner.refiner_batch`).
    """
    from gouache.pipelines.controlnet import prepare_controls
    from gouache.pipelines.hires import hires_batch
    from gouache.pipelines.refiner import check_refiner, refiner_batch, refiner_schedule

    # 1. Check inputs
    if refiner is not None:
        check_refiner(model, refiner, request)
        request = replace(request, refiner_checkpoint=refiner.name)
    elif request.refiner_checkpoint is not None:
        raise InvalidArgument(f"the request names refiner {request.refiner_checkpoint!r}: load it and pass "
                              "`refiner=` (gouache.txt2img and `gouache generate --refiner` do this)")
    request.validate()
    req = resolve_request(request, model)
    req.validate()  # again: the hires fix's size, now that the size is known
    # 2. ControlNets and their control maps, at the request's size
    controls = prepare_controls(model, req)
    # 3. Conditioning, then every batch through the one loop from pure noise
    watch = previewer(model, preview, preview_every)
    with generation(model, req, controls, watch, refiner) as gen:
        if refiner is not None:
            at_refiner = refiner_schedule(refiner, req)
            return gen.run(lambda seeds, tick: refiner_batch(gen, refiner, at_refiner, seeds, tick), progress)
        if req.enable_hr:
            return gen.run(lambda seeds, tick: hires_batch(gen, seeds, tick), progress)
        return gen.run(gen.images, progress)
