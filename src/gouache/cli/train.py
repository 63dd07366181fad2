"""``gouache train``: the trainers. ``base`` trains gouache-tiny from scratch."""

from __future__ import annotations

import dataclasses

from gouache.train.base import BaseTrainConfig

BASE_FLAGS = {
    "dataset": "--dataset", "seed": "--seed", "vae_steps": "--vae-steps", "diffusion_steps": "--diffusion-steps",
    "vae_batch_size": "--vae-batch-size", "diffusion_batch_size": "--batch-size", "vae_lr": "--vae-lr",
    "diffusion_lr": "--lr", "mixed_precision": "--mixed-precision", "checkpoint_minutes": "--checkpoint-minutes",
}


def register(sub) -> None:
    from gouache.cli.common import add_dataclass_options

    p = sub.add_parser("train", help="train models")
    kinds = p.add_subparsers(dest="trainer", metavar="TRAINER")
    base = kinds.add_parser("base", help="train gouache-tiny from scratch (resumes from the last checkpoint)")
    base.add_argument("--out", required=True, help="run folder: checkpoints, logs and the final weights")
    add_dataclass_options(base, BaseTrainConfig, BASE_FLAGS, {"dataset": "procedural dataset: shapes"})
    base.set_defaults(handler=run_base)
    p.set_defaults(handler=lambda args: p.print_help() or 2)


def run_base(args) -> int:
    from gouache.train.base import train_base

    given = {k: getattr(args, k) for k in BASE_FLAGS if getattr(args, k) is not None}
    cfg = dataclasses.replace(BaseTrainConfig(out_dir=args.out), **given)
    path = train_base(cfg)
    print(f"gouache-tiny weights: {path}")
    return 0
