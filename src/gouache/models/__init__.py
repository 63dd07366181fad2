"""Load models: the built-in gouache-tiny, diffusers folders and single-file checkpoints, offline.

Names are re-exported lazily, so ``import gouache.models`` imports neither torch nor diffusers:

- :func:`load_pipeline`, :func:`resolve_model`, :func:`list_models`, :class:`ModelEntry`, ``BUILTIN``
  (:mod:`gouache.models.registry`)
- :func:`load_single_file`, :func:`read_state_dict` (:mod:`gouache.models.single_file`)
- :func:`detect_architecture`, ``ARCHITECTURES`` (:mod:`gouache.models.detect`)
- :func:`model_hash` (:mod:`gouache.models.hashing`)
- :func:`gouache_home`, :func:`models_dir` (:mod:`gouache.models.home`)
- :class:`ModelFacts`, :func:`read_facts` (:mod:`gouache.models.facts`: what a model declares about itself)

The built-in gouache-tiny and every shipped weight: :mod:`gouache.models.builtin`; the one rule
for names of checkpoints, ControlNets and LoRA: :mod:`gouache.models.names`.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "BUILTIN": "registry",
    "ModelEntry": "registry",
    "list_models": "registry",
    "load_pipeline": "registry",
    "resolve_model": "registry",
    "load_single_file": "single_file",
    "read_state_dict": "single_file",
    "ARCHITECTURES": "detect",
    "detect_architecture": "detect",
    "model_hash": "hashing",
    "ModelFacts": "facts",
    "read_facts": "facts",
    "gouache_home": "home",
    "models_dir": "home",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gouache.models' has no attribute {name!r}")
    return getattr(import_module(f"gouache.models.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
