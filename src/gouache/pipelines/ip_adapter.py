"""IP-Adapter in every mode: the request's image prompts made ready for the one loop.

:func:`prepare_image_prompts` loads the adapters a request asks for (on demand; the model keeps the
ones its last generation used, so a server or a script asking again does not reload them, and a
generation without image prompts lets them go), encodes each adapter's images once for the whole
generation, and says what the infotext records. The engine (:func:`gouache.pipelines.engine.generation`)
adds the embeddings to the per-step conditioning (:func:`gouache.prompts.conditioning.with_image_embeds`)
and installs the adapters in the UNet around its speed scope (:func:`gouache.adapters.ip_attention.installed`).

An adapter at scale 0 is recorded but never loaded or installed: the image is the one without it,
bit for bit.

>>> from gouache.adapters.ip_spec import IPAdapterSpec
>>> spec = IPAdapterSpec("gouache-tiny-ip-adapter", ["red-circle.png"], scale=0.8)               # doctest: +SKIP
>>> txt2img(load_model(), GenerationRequest("on a blue background", ip_adapters=[spec]))        # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from gouache.adapters.ip_adapter import LoadedIPAdapter, file_hash, load_ip_adapter, resolve_ip_adapter
from gouache.adapters.ip_attention import installed, style_scales
from gouache.adapters.ip_spec import IPAdapterSpec
from gouache.errors import InvalidArgument

_CACHE = "_ip_adapters"  # LoadedModel.__dict__ key: {weights path: LoadedIPAdapter} of the last generation


@dataclass
class ImagePrompts:
    """The image prompts of one generation: each unit with its title, and the adapters that act
    (scale above 0) with their embeddings and the CFG negative."""

    specs: list[IPAdapterSpec]
    titles: list[str]
    adapters: list[LoadedIPAdapter]
    scales: list[float | dict]  # per acting adapter: a number or a per-block dict (--ip-style)
    embeds: tuple[torch.Tensor, ...]
    negative: tuple[torch.Tensor, ...]

    def infotext(self) -> dict:
        return {f"IP-Adapter {k}": spec.infotext(title) for k, (spec, title) in enumerate(zip(self.specs, self.titles))}

    @contextlib.contextmanager
    def installed(self, unet) -> Iterator[None]:
        """The acting adapters in ``unet`` while inside (nothing when none acts)."""
        if not self.adapters:
            yield
            return
        with installed(unet, self.adapters, self.scales):
            yield


def prepare_image_prompts(model, req) -> ImagePrompts | None:
    """The request's IP-Adapter units for ``model``, loaded and encoded, or None when it has none
    (the adapters the model kept are then released)."""
    specs = list(getattr(req, "ip_adapters", None) or [])
    if not specs:
        release_ip_adapters(model)
        return None
    kept: dict[Path, LoadedIPAdapter] = model.__dict__.get(_CACHE) or {}
    used: dict[Path, LoadedIPAdapter] = {}
    titles, adapters, scales, embeds, negative = [], [], [], [], []
    for k, spec in enumerate(specs):
        if spec.scale == 0:  # recorded, never run: the image is the one without it
            titles.append(_title(spec))
            continue
        adapter = _loaded(model, spec, k, kept, used)
        titles.append(adapter.title)
        adapters.append(adapter)
        scales.append(style_scales(model.unet, float(spec.scale)) if spec.style else float(spec.scale))
        e, n = adapter.encode(spec.load_images())
        embeds.append(e.to(model.device, model.dtype))
        negative.append(n.to(model.device, model.dtype))
    model.__dict__[_CACHE] = used
    return ImagePrompts(specs, titles, adapters, scales, tuple(embeds), tuple(negative))


def release_ip_adapters(model) -> None:
    """Let the adapters (and image encoders) ``model`` kept from its last generation go."""
    model.__dict__.pop(_CACHE, None)


def _title(spec: IPAdapterSpec) -> str:
    from gouache.models.registry import model_title

    if isinstance(spec.model, LoadedIPAdapter):
        return spec.model.title
    entry = resolve_ip_adapter(spec.model)
    return model_title(entry.name, file_hash(entry.path))


def _loaded(model, spec: IPAdapterSpec, k: int, kept: dict, used: dict) -> LoadedIPAdapter:
    """The unit's adapter for ``model``: given loaded, kept from the last generation, or loaded now."""
    if isinstance(spec.model, LoadedIPAdapter):
        adapter = spec.model
        _check_layers(adapter, model, k)
        for m in (adapter.image_proj, adapter.to_k, adapter.to_v, adapter.encoder):
            m.to(model.device, model.dtype)
        return adapter
    entry = resolve_ip_adapter(spec.model)
    key = entry.path.resolve()
    if key not in used:
        cached = kept.get(key)
        fresh = cached is not None and cached.hash == file_hash(entry.path)
        used[key] = cached if fresh else load_ip_adapter(entry, model.unet, model.name, model.dtype, model.device)
    return used[key]


def _check_layers(adapter: LoadedIPAdapter, model, k: int) -> None:
    from gouache.adapters.ip_adapter import describe
    from gouache.adapters.ip_attention import cross_attention_layers

    layers = cross_attention_layers(model.unet)
    shapes = [(attn.to_k.out_features, attn.to_k.in_features) for _, attn in layers]
    if [tuple(m.weight.shape) for m in adapter.to_k] != shapes:
        width = adapter.to_k[0].weight.shape[1] if len(adapter.to_k) else 0
        raise InvalidArgument(f"IP-Adapter {adapter.name} (`ip_adapters[{k}]`) is for another kind of model than "
                              f"{model.name}: it adapts {describe(len(adapter.to_k), width)}, the model has "
                              f"{describe(len(layers), model.unet.config.cross_attention_dim)}")
