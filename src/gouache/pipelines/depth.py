"""Depth-to-image (SD 2 depth models) over the one denoising loop: img2img plus a depth channel.

A depth UNet reads 5 channels: the latents and the depth map at latent size, normalised to
[-1, 1] per image (diffusers' ``StableDiffusionDepth2ImgPipeline.prepare_depth_map``). The extra
channel goes in through the same wrapper around the model call as a 9-channel inpainting UNet's
(:class:`~gouache.sampling.start.InpaintingDenoiser`, via ``ImageStart.conditioning``), so the loop
and every sampler are unchanged.

>>> request = Depth2ImgRequest("a stone castle", init_image=init, depth_map=depth, denoising_strength=0.8)  # doctest: +SKIP
>>> images = depth2img(load_model("sd2-depth"), request)                                                  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from gouache.errors import InvalidArgument
from gouache.images import flatten, resize_image
from gouache.pipelines.controlnet import prepare_controls
from gouache.pipelines.engine import Progress, generation, resolve_request
from gouache.pipelines.img2img import size_for
from gouache.pipelines.model import LoadedModel, pixels_of
from gouache.pipelines.prompting import with_prompt_tools
from gouache.pipelines.request import Depth2ImgRequest, GeneratedImage
from gouache.sampling.start import ImageStart

__all__ = ["Depth2ImgRequest", "depth2img", "depth_conditioning"]


def is_depth_model(model: LoadedModel) -> bool:
    """A UNet that reads the latents plus one depth channel."""
    return model.unet.config.in_channels == model.latent_channels + 1


@with_prompt_tools
def depth2img(model: LoadedModel, request: Depth2ImgRequest, progress: Progress | None = None) -> list[GeneratedImage]:
    """img2img guided by a depth map; ``request.depth_map`` None estimates it (see :func:`estimate_depth`)."""
    # 1. Check inputs
    request.validate()
    if not is_depth_model(model):
        raise InvalidArgument(f"{model.name} is not a depth model: its UNet reads {model.unet.config.in_channels} "
                              f"channels, a depth UNet {model.latent_channels + 1}; use img2img, or an SD 2 depth model")
    req = resolve_request(request, model, size_for(request.init_image))
    # 2. The init image's latents and the depth channel, once for every image of the request
    image = resize_image(req.resize_mode, flatten(req.init_image), req.width, req.height)
    depth = req.depth_map if req.depth_map is not None else estimate_depth(model, image)
    if isinstance(depth, Image.Image):
        depth = resize_image(req.resize_mode, flatten(depth), req.width, req.height)
    f = model.vae_scale_factor
    conditioning = depth_conditioning(depth, (req.height // f, req.width // f)).to(model.device, model.dtype)
    controls = prepare_controls(model, req, init=image)
    with generation(model, req, controls) as gen:
        start = ImageStart(model.encode(pixels_of(image)), req.denoising_strength, conditioning=conditioning)
        # 3. Each batch through the one loop, from the init image
        return gen.run(lambda seeds, tick: gen.images(seeds, tick, start), progress)


def depth_conditioning(depth, size: tuple[int, int]) -> torch.Tensor:
    """A depth map (PIL image, white = near, or a ``(H, W)``/``(1, H, W)`` tensor) as ``(1, 1, h, w)``:
    bicubic to latent size ``(h, w)``, then min–max to [-1, 1] (diffusers); a flat map becomes 0.

    >>> depth_conditioning(Image.new("L", (64, 64), 255), (8, 8)).abs().max().item()
    0.0
    """
    if isinstance(depth, Image.Image):
        depth = torch.from_numpy(np.asarray(depth.convert("L"), dtype=np.float32) / 255)
    d = torch.as_tensor(depth, dtype=torch.float32).reshape(1, 1, *depth.shape[-2:])
    d = torch.nn.functional.interpolate(d, size=size, mode="bicubic", align_corners=False)
    lo, hi = d.amin(), d.amax()
    if hi - lo < 1e-6:
        return torch.zeros_like(d)
    return 2.0 * (d - lo) / (hi - lo) - 1.0


def estimate_depth(model: LoadedModel, image: Image.Image) -> torch.Tensor:
    """The depth of ``image`` by the model's own DPT estimator (diffusers' depth pipelines carry
    ``depth_estimator``, a transformers ``DPTForDepthEstimation``, and its ``feature_extractor``).

    Only weights already on disk are used; without them the error says to pass a depth map.
    """
    estimator = getattr(model.pipeline, "depth_estimator", None)
    processor = getattr(model.pipeline, "feature_extractor", None)
    if estimator is None or processor is None:
        raise InvalidArgument(f"no depth map given, and {model.name} has no depth estimator (DPT weights) on disk "
                              "to make one: pass a depth image with --depth DEPTH.png (Python: depth_map=)")
    pixels = processor(images=image, return_tensors="pt").pixel_values.to(model.device)
    with torch.no_grad():
        return estimator(pixels.to(estimator.dtype)).predicted_depth.float()[0]
