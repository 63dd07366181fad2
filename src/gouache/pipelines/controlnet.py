"""ControlNet in every mode: the request's controls made ready for the one loop.

:func:`prepare_controls` loads each unit's net and makes its control map at the working size
(the control image cropped and resized as the A1111 extension's "Crop and Resize", then
preprocessed); :meth:`Controls.residuals` turns them into the hook the guided model call runs
(:class:`~gouache.control.guidance.ControlResiduals`). txt2img, img2img, inpainting and the tiled
upscaler pass the same object to :func:`~gouache.pipelines.engine.sample_latents`.

>>> from gouache.control.spec import ControlSpec
>>> request = GenerationRequest("a red circle on a blue background", controls=[ControlSpec("canny", "edges.png")])  # doctest: +SKIP
>>> txt2img(load_model(), request)                                                                            # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from PIL import Image

from gouache.control.guidance import ActiveControl, ControlResiduals, control_tensor
from gouache.control.models import LoadedControlNet, default_controlnet, load_controlnet
from gouache.control.preprocessors import run_preprocessor
from gouache.control.spec import ControlSpec
from gouache.images import resize_image


@dataclass
class PreparedControl:
    spec: ControlSpec
    net: LoadedControlNet
    map: Image.Image | None  # the control map at the working size (None: made per tile by the upscaler)


@dataclass
class Controls:
    items: list[PreparedControl]

    def residuals(self, width: int, height: int, steps: int) -> ControlResiduals:
        """The loop's hook for images of ``width``×``height`` (maps of another size are resized, as for
        the hires fix's second pass)."""
        active = []
        for item in self.items:
            m = item.map
            if m.size != (width, height):
                m = m.resize((width, height), Image.Resampling.BILINEAR)
            active.append(ActiveControl(item.net.net, control_tensor(m), item.spec.weight, item.spec.start, item.spec.end))
        return ControlResiduals(active, steps)

    def infotext(self) -> dict:
        return {f"ControlNet {k}": item.spec.infotext(item.net.title) for k, item in enumerate(self.items)}

    def with_maps(self, maps: list[Image.Image]) -> "Controls":
        """The same nets with other maps (the upscaler's, one per tile)."""
        return Controls([replace(item, map=m) for item, m in zip(self.items, maps)])


def control_map(spec: ControlSpec, source: Image.Image, width: int, height: int,
                crop: tuple[int, int, int, int] | None = None) -> Image.Image:
    """``source`` (cropped to ``crop`` first, if given) at ``width``×``height`` through ``spec``'s preprocessor."""
    if crop is not None:
        source = source.crop(crop)
    return run_preprocessor(spec.preprocessor, resize_image(1, source, width, height))


def load_net(spec: ControlSpec, model) -> LoadedControlNet:
    if isinstance(spec.model, LoadedControlNet):
        p = next(spec.model.net.parameters())
        if p.dtype != model.dtype or p.device != torch.device(model.device):
            spec.model.net.to(model.device, model.dtype)
        return spec.model
    name = spec.model if spec.model is not None else default_controlnet(model.name, spec.preprocessor)
    return load_controlnet(name, model)


def prepare_controls(model, req, init: Image.Image | None = None, crop: tuple[int, int, int, int] | None = None,
                     per_tile: bool = False) -> Controls | None:
    """The request's controls for ``model`` at ``req``'s size, or None when it has none.

    A unit without an image uses ``init`` (img2img, inpainting); ``crop`` is inpainting's
    "Only masked" box, in the control image's pixels when it has the init image's size. With
    ``per_tile`` (the upscaler) no map is made here.
    """
    controls = getattr(req, "controls", None) or []
    if not controls:
        return None
    from gouache.errors import InvalidArgument

    items, nets = [], {}
    for k, spec in enumerate(controls):
        # units naming the same net share one copy of it (a request cannot multiply the memory it takes)
        key = (spec.model, spec.preprocessor if spec.model is None else None) if not isinstance(
            spec.model, LoadedControlNet) else id(spec.model)
        if key not in nets:
            nets[key] = load_net(spec, model)
        net = nets[key]
        _check_net(net, model, k)
        if per_tile:
            items.append(PreparedControl(spec, net, None))
            continue
        source = spec.load_image() if spec.image is not None else init
        if source is None:
            raise InvalidArgument(f"`controls[{k}]` has no image; give the image to take the {spec.preprocessor} map from")
        box = crop if crop is not None and init is not None and source.size == init.size else None
        items.append(PreparedControl(spec, net, control_map(spec, source, req.width, req.height, box)))
    return Controls(items)


def _check_net(net: LoadedControlNet, model, k: int) -> None:
    """A net for another architecture would fail deep inside the UNet; say so here."""
    from gouache.errors import InvalidArgument

    cn, unet = net.net.config, model.unet.config
    if cn.cross_attention_dim != unet.cross_attention_dim or tuple(cn.block_out_channels) != tuple(unet.block_out_channels):
        raise InvalidArgument(f"ControlNet {net.name} (`controls[{k}]`) is for another kind of model than {model.name}: "
                              f"its blocks are {tuple(cn.block_out_channels)} wide with text width "
                              f"{cn.cross_attention_dim}, the model's {tuple(unet.block_out_channels)} and "
                              f"{unet.cross_attention_dim}; use a ControlNet trained for this base")
