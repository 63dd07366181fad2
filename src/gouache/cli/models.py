"""``gouache models``: every model a command can name — checkpoints, LoRAs, embeddings, ControlNets, IP-Adapters,
CLIP models, captioners, segmenters —
from the models directory and those that ship with gouache (marked ``built-in``)."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("models", help="list the checkpoints, LoRAs, embeddings and ControlNets gouache can use",
                       description="Every model a command can name, by kind: what is in $GOUACHE_HOME and what "
                                   "ships with gouache (marked built-in).")
    p.set_defaults(handler=run)


def listing() -> dict[str, list[tuple[str, str, Path]]]:
    """``{kind: [(name, origin, path)]}``; origin is ``built-in`` or ``$GOUACHE_HOME``."""
    from gouache.adapters.embeddings import EmbeddingLibrary
    from gouache.adapters.ip_adapter import list_ip_adapters
    from gouache.adapters.lora import list_loras
    from gouache.control.models import list_controlnets
    from gouache.models.builtin import weights_dir
    from gouache.models.registry import list_models
    from gouache.vision.captioners import list_captioners
    from gouache.vision.clip import listed_clips
    from gouache.vision.segment import listed_segmenters

    def origin(path: Path, shipped: Path) -> str:
        return "built-in" if Path(path).resolve().is_relative_to(shipped.resolve()) else "$GOUACHE_HOME"

    weights = weights_dir()  # every shipped model lies below it
    library = EmbeddingLibrary.scan()
    return {
        "checkpoints": [(e.name, "built-in" if e.kind == "builtin" else "$GOUACHE_HOME", e.path) for e in list_models()],
        "lora": [(name, origin(p, weights), p) for name, p in list_loras().items()],
        "embeddings": [(name, origin(p, weights), p) for name, p in sorted(library.paths.items())],
        "controlnet": [(e.name, "built-in" if e.kind == "builtin" else "$GOUACHE_HOME", e.path)
                       for e in list_controlnets()],
        "ip-adapter": [(e.name, origin(e.path, weights), e.path) for e in list_ip_adapters()],
        "clip": [(name, origin(p, weights), p) for name, p in listed_clips().items()],
        "captioners": [(e.name, origin(e.path, weights), e.path) for e in list_captioners()],
        "segmenters": [(name, origin(p, weights), p) for name, p in listed_segmenters().items()],
    }


def run(args) -> int:
    from gouache.models.home import KINDS, gouache_home, models_dir

    kinds = listing()
    width = max(len(name) for entries in kinds.values() for name, _, _ in entries)
    for kind, entries in kinds.items():
        print(f"{kind}:" if kind == "checkpoints" else f"\n{kind}:")
        if not entries:
            print(f"  (none; put them in {models_dir(kind)})")
        for name, where, path in entries:
            print(f"  {name:<{width}}  {where:<13}  {path}")
    print(f"\nmodels directory: {gouache_home()} ({', '.join(kind + '/' for kind in KINDS)})")
    return 0
