"""Inpainting and outpainting over the one denoising loop, as AUTOMATIC1111 does them.

The mask (white = repaint) is made binary and blurred; the area to work on is the whole picture
or, with "Only masked", a crop around the mask worked at the request's size. The repainted area
starts from A1111's "masked content"; a 4-channel model has the known region re-imposed after
every step, a 9-channel inpainting UNet is shown the mask instead (:mod:`gouache.sampling.start`).
Each result is pasted back over the input through the blurred mask, so every pixel the blur does
not reach is exactly the input's. Outpainting grows the canvas and inpaints the new area.

>>> from gouache.pipelines.request import InpaintRequest
>>> request = InpaintRequest("a blue square", init_image=image, mask=mask, denoising_strength=0.8)  # doctest: +SKIP
>>> inpaint(load_model(), request)[0].image.save("out.png")                                       # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from PIL import Image

from gouache.errors import InvalidArgument, check_int
from gouache.images import flatten, resize_image
from gouache.pipelines import masking
from gouache.pipelines.controlnet import prepare_controls
from gouache.pipelines.engine import Progress, generation, resolve_request
from gouache.pipelines.img2img import size_for
from gouache.pipelines.model import LoadedModel, pixels_of
from gouache.pipelines.prompting import with_prompt_tools
from gouache.pipelines.request import GeneratedImage, InpaintRequest, check_image
from gouache.sampling.start import ImageStart

__all__ = ["InpaintRequest", "inpaint", "outpaint", "outpaint_request"]


@with_prompt_tools
def inpaint(model: LoadedModel, request: InpaintRequest, progress: Progress | None = None) -> list[GeneratedImage]:
    """All ``n_iter × batch_size`` images of a request, each repainted under the mask with its own seed."""
    # 1. Check inputs
    request.validate()
    request = with_kept_edges(model, request)
    image = flatten(request.init_image)
    mask = masking.blur_mask(masking.binary_mask(masking.request_mask(request, image)), request.mask_blur)
    region = masking.crop_region(mask, request.inpaint_full_res_padding) if request.inpaint_full_res else None
    req = resolve_request(request, model, None if region else size_for(image))

    # 2. The area to work on, at the request's size: a crop around the mask, or the whole picture
    if region:
        region = masking.expand_crop_region(region, req.width, req.height, image.width, image.height)
        work, work_mask = (resize_image(2, im.crop(region), req.width, req.height) for im in (image, mask))
        overlay = mask
    else:
        image, mask = (resize_image(req.resize_mode, im, req.width, req.height) for im in (image, mask))
        work, work_mask = image, mask
        overlay = mask.point(lambda v: min(255, 2 * v))  # A1111 shows more of the new pixels here

    # ControlNet maps of the same area: cropped to "Only masked"'s box, or resized as the picture
    controls = prepare_controls(model, req, init=image, crop=region)
    with generation(model, req, controls) as gen:
        # 3. The start: masked content, latents, the latent mask, a 9-channel UNet's conditioning
        start = _start(model, req, work, work_mask)

        # 4. Each batch through the one loop, pasted back over the input through the blurred mask
        def make_batch(seeds, tick):
            return [masking.paste_back(im, image, overlay, region) for im in gen.images(seeds, tick, start)]

        return gen.run(make_batch, progress)


def has_edge_model(model: LoadedModel) -> bool:
    """Whether ``model`` has a default canny ControlNet, which ``keep_edges`` uses."""
    from gouache.control.models import DEFAULTS

    return (model.name, "canny") in DEFAULTS


def with_kept_edges(model: LoadedModel, request: InpaintRequest) -> InpaintRequest:
    """``request`` with a canny unit on its init image at ``keep_edges`` (the model's default canny
    ControlNet; what A1111 users add by hand to keep a subject's outline when they repaint around it),
    unless ``keep_edges`` is 0 or the request has ControlNet units of its own, which it leaves as they
    are. The unit is an ordinary one: the infotext records it, so ``--from`` remakes the image."""
    from gouache.control.spec import ControlSpec

    if not request.keep_edges or request.controls:
        return request
    if not has_edge_model(model):
        raise InvalidArgument(f"`keep_edges` uses the model's default canny ControlNet, and {model.name} has none; "
                              "give a canny ControlNet unit yourself, or set keep_edges to 0")
    return replace(request, keep_edges=0.0, controls=[ControlSpec("canny", None, weight=request.keep_edges)])


def _start(model: LoadedModel, req: InpaintRequest, image: Image.Image, mask: Image.Image) -> ImageStart:
    """What the loop starts from (A1111's ``StableDiffusionProcessingImg2Img.init``)."""
    if req.inpainting_fill == 0:
        image = masking.fill(image, mask)
    pixels = pixels_of(image)
    repaint = masking.latent_mask(mask, model.vae_scale_factor)
    conditioning = None
    if model.is_inpainting:
        masked = model.encode(masking.masked_pixels(pixels, mask))
        conditioning = torch.cat([repaint.to(masked), masked], dim=1)
    latent_fill = {2: "noise", 3: "nothing"}.get(req.inpainting_fill)
    return ImageStart(model.encode(pixels), req.denoising_strength, repaint.to(model.dtype), conditioning, latent_fill)


def outpaint_request(request: InpaintRequest, left: int = 0, right: int = 0, up: int = 0,
                     down: int = 0) -> InpaintRequest:
    """The inpainting request that outpaints: the canvas grown by ``left``/``right``/``up``/``down``
    pixels (multiples of 8), the new area masked and first filled by stretching the image's edge
    (what "original" masked content starts from there). Checked without a model.

    >>> r = outpaint_request(InpaintRequest("sky", init_image=Image.new("RGB", (64, 64))), right=32)
    >>> r.init_image.size
    (96, 64)
    """
    sides = {"left": left, "right": right, "up": up, "down": down}
    for name, value in sides.items():
        check_int(name, value, 0, 4096)
        if value % 8:
            raise InvalidArgument(f"`{name}` must be a multiple of 8, got {value} (try {value // 8 * 8 + 8})")
    if not any(sides.values()):
        raise InvalidArgument("give at least one of `left`, `right`, `up`, `down` (pixels to add), e.g. right=64")
    if request.mask is not None or request.mask_prompt:
        raise InvalidArgument("outpainting takes no `mask` or `mask_prompt`: the new area is the mask")
    check_image("init_image", request.init_image)
    image = flatten(request.init_image)
    width, height = image.width + left + right, image.height + up + down
    if max(width, height) > 4096:
        raise InvalidArgument(f"outpainting would make a {width}x{height} image; at most 4096 pixels a side")
    canvas = Image.fromarray(np.pad(np.asarray(image), ((up, down), (left, right), (0, 0)), mode="edge"))
    mask = Image.new("L", (width, height), 255)
    mask.paste(0, (left, up, left + image.width, up + image.height))
    return replace(request, init_image=canvas, mask=mask)


def outpaint(model: LoadedModel, request: InpaintRequest, left: int = 0, right: int = 0, up: int = 0, down: int = 0,
             progress: Progress | None = None) -> list[GeneratedImage]:
    """Extend the canvas by the given pixels and paint the new area (A1111's "Poor man's outpainting").

    Pixels of the input farther than the mask blur reaches (:func:`masking.blur_radius`) from the
    new area stay exactly where they were; with ``mask_blur=0`` all of them do.
    """
    return inpaint(model, outpaint_request(request, left, right, up, down), progress)
