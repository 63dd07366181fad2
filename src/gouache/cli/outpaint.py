"""``gouache outpaint``: extend an image beyond its borders from the command line."""

from __future__ import annotations

from gouache.cli.common import (IMAGE_ARGS, IMG2IMG_FLAGS, MASK_FLAGS, REQUEST_FLAGS, add_img2img_options, add_mask_options,
                                add_output_options, add_request_options, given_options, run_request)

SIDES = ("left", "right", "up", "down")


def register(sub) -> None:
    p = sub.add_parser("outpaint", help="extend an image beyond its borders",
                       description="Grow the canvas by --left/--right/--up/--down pixels and paint the new area.")
    p.add_argument("init", metavar="INIT", help="the image to extend")
    p.add_argument("prompt", metavar="PROMPT", help="what to draw (A1111 prompt syntax)")
    for side in SIDES:
        p.add_argument(f"--{side}", type=int, default=0, metavar="N", help=f"pixels to add {side}, a multiple of 8")
    add_img2img_options(p)
    add_mask_options(p, only_masked=False, words=False)
    add_request_options(p, size="the grown canvas's size")
    add_output_options(p, "outputs/outpaint")
    p.set_defaults(handler=run, field_flags={**REQUEST_FLAGS, **IMG2IMG_FLAGS, **MASK_FLAGS, **IMAGE_ARGS,
                                             **{side: f"--{side}" for side in SIDES}})


def run(args) -> int:
    from gouache.images import load_image
    from gouache.pipelines.inpaint import inpaint, outpaint_request
    from gouache.pipelines.request import InpaintRequest

    request = InpaintRequest(prompt=args.prompt, init_image=load_image(args.init, "init image"),
                             **given_options(args, REQUEST_FLAGS, IMG2IMG_FLAGS, MASK_FLAGS))
    request = outpaint_request(request, **{side: getattr(args, side) for side in SIDES})
    return run_request(args, request, inpaint, "outpaint")
