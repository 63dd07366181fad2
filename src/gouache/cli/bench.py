"""``gouache bench``: gouache's paths against stock diffusers on this machine (see :mod:`gouache.bench`)."""

from __future__ import annotations


def register(sub) -> None:
    from gouache.bench import parser

    p = sub.add_parser("bench", help="time gouache against stock diffusers on this machine, side by side",
                       description="Time gouache's default path and its approximations against stock diffusers, "
                                   "each side in its own process, and write JSON + Markdown results. Examples: "
                                   "`gouache bench` (gouache-tiny, images per second); "
                                   "`gouache bench --arch sd15 --flops --out bench.json` (SD 1.5 at 512², random weights).")
    parser(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from gouache.bench import run as bench

    return bench(args)
