"""``gouache models``: what is in the models directory, and the built-in model."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("models", help="list the models in $GOUACHE_HOME and the built-in one")
    p.set_defaults(handler=run)


def run(args) -> int:
    from gouache.models.home import gouache_home, models_dir
    from gouache.models.registry import list_models

    entries = list_models()
    width = max(len(e.name) for e in entries)
    for e in entries:
        print(f"{e.name:<{width}}  {e.kind:<11}  {e.path}")
    print(f"\nmodels directory: {gouache_home()} (put checkpoints in {models_dir('checkpoints')})")
    return 0
