"""gouache: a toolkit for Stable Diffusion.

Nothing heavy happens on import; the public API is loaded on first use::

    import gouache
    images = gouache.txt2img("a red circle on a blue background", seed=1)
    images[0].save("circle.png")
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "GenerationRequest": ("gouache.pipelines.request", "GenerationRequest"),
    "GeneratedImage": ("gouache.pipelines.request", "GeneratedImage"),
    "load_model": ("gouache.pipelines.model", "load_model"),
    "LoadedModel": ("gouache.pipelines.model", "LoadedModel"),
    "GouacheError": ("gouache.errors", "GouacheError"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'gouache' has no attribute {name!r}")


def txt2img(prompt: str, *, model=None, progress=None, **options):
    """Generate images from a prompt; ``model`` is a name, a path, a loaded model or None (gouache-tiny).

    Options are :class:`~gouache.pipelines.request.GenerationRequest` fields (``negative_prompt``,
    ``steps``, ``cfg_scale``, ``sampler``, ``scheduler``, ``seed``, ``width``, ``height``,
    ``batch_size``, ``n_iter``). Returns a list of :class:`~gouache.pipelines.request.GeneratedImage`.

    >>> images = txt2img("a red circle on a blue background", seed=7, steps=20)   # doctest: +SKIP
    >>> images[0].infotext.splitlines()[-1]                                        # doctest: +SKIP
    'Steps: 20, Sampler: DPM++ 2M, CFG scale: 7.0, Seed: 7, Size: 64x64, Model hash: ..., Model: gouache-tiny, ...'
    """
    from gouache.pipelines.model import LoadedModel, load_model
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.txt2img import txt2img as run

    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    request = GenerationRequest(prompt=prompt, model=loaded.path, **options)
    return run(loaded, request, progress)
