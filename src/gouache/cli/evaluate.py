"""``gouache evaluate``: score a model with gouache-tiny's judge (seen and held-out colour–shape pairs)."""

from __future__ import annotations

from gouache.tiny.evaluate import EvalConfig

FLAGS = {"model": "--model", "n": "--n", "steps": "--steps", "sampler": "--sampler", "cfg_scale": "--cfg", "seed": "--seed"}
HELP = {"n": "images per set", "seed": "seed of the first image of each set", "model": "the model to judge",
        "cfg_scale": "classifier-free guidance scale", "steps": "denoising steps", "sampler": "sampler name"}


def register(sub) -> None:
    from gouache.cli.common import add_dataclass_options

    p = sub.add_parser("evaluate", help="judge a model on the shapes task (seen and held-out pairs)")
    add_dataclass_options(p, EvalConfig, FLAGS, HELP)
    p.add_argument("--save", help="also write every judged image to this folder")
    p.set_defaults(handler=run)


def run(args) -> int:
    import dataclasses

    from gouache.cli.common import progress_bar
    from gouache.tiny.evaluate import evaluate

    given = {k: getattr(args, k) for k in FLAGS if getattr(args, k) is not None}
    cfg = dataclasses.replace(EvalConfig(save=args.save), **given)
    for name, s in evaluate(cfg, progress_bar("evaluate")).items():
        print(f"{name:>8}: {s.summary()}")
    return 0
