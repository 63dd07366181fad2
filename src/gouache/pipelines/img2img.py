"""Image-to-image over the one denoising loop: txt2img that starts from an image.

The init image is resized to the request's size (A1111's resize modes), encoded once, noised to
the first step that runs, and denoised for the last ``int(steps · denoising_strength)`` steps
(diffusers' semantics; see :func:`gouache.sampling.loop.first_step`). The request,
:class:`~gouache.pipelines.request.Img2ImgRequest`, lives with the others in ``request.py``.

>>> from PIL import Image
>>> from gouache.pipelines.request import Img2ImgRequest
>>> request = Img2ImgRequest("a red circle", init_image=Image.open("in.png"), denoising_strength=0.5)  # doctest: +SKIP
>>> images = img2img(load_model(), request)                                                            # doctest: +SKIP
"""

from __future__ import annotations

from PIL import Image

from gouache.images import flatten, resize_image
from gouache.pipelines.controlnet import prepare_controls
from gouache.pipelines.engine import Progress, generation, resolve_request
from gouache.pipelines.model import LoadedModel, pixels_of
from gouache.pipelines.prompting import with_prompt_tools
from gouache.pipelines.request import GeneratedImage, Img2ImgRequest
from gouache.sampling.preview import Preview, previewer
from gouache.sampling.start import ImageStart

__all__ = ["Img2ImgRequest", "img2img", "size_for"]


def size_for(image: Image.Image) -> tuple[int, int]:
    """The working size an image implies: its own, rounded down to a multiple of 8, within 64–4096."""
    return tuple(min(max(v // 8 * 8, 64), 4096) for v in image.size)


@with_prompt_tools
def img2img(model: LoadedModel, request: Img2ImgRequest, progress: Progress | None = None,
            preview: Preview | None = None, preview_every: int = 5) -> list[GeneratedImage]:
    """All ``n_iter × batch_size`` images of a request, each from the init image and its own seed.
    ``preview`` as :func:`~gouache.pipelines.txt2img.txt2img`'s.

    Strength 1 ignores the image (the same picture as txt2img with that seed); a strength that runs
    no step gives the init image back through the VAE (encoded and decoded, not bit for bit).
    """
    # 1. Check inputs
    request.validate()
    req = resolve_request(request, model, size_for(request.init_image))
    # 2. The init image at the request's size, encoded once for every image of the request
    image = resize_image(req.resize_mode, flatten(req.init_image), req.width, req.height)
    watch = previewer(model, preview, preview_every)
    controls = prepare_controls(model, req, init=flatten(req.init_image))  # a unit without an image reads the init image
    with generation(model, req, controls, watch) as gen:
        start = ImageStart(model.encode(pixels_of(image)), req.denoising_strength)
        # 3. Each batch through the one loop, from the init image
        return gen.run(lambda seeds, tick: gen.images(seeds, tick, start), progress)
