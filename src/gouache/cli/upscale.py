"""``gouache upscale``: tiled upscaling (A1111's SD upscale) from the command line."""

from __future__ import annotations

from gouache.cli.common import (REQUEST_FLAGS, UPSCALE_FLAGS, add_output_options, add_request_options,
                                add_upscale_options, given_options, run_request)


def register(sub) -> None:
    p = sub.add_parser("upscale", help="tiled upscaling",
                       description="Enlarge an image with Lanczos, then repaint it tile by tile at the model's size; "
                                   "tiles are blended across their overlaps.")
    p.add_argument("image", metavar="IMAGE", help="the image to upscale")
    p.add_argument("prompt", metavar="PROMPT", help="what the image shows (A1111 prompt syntax)")
    add_upscale_options(p)
    add_request_options(p, size=None)
    add_output_options(p, "outputs/upscale")
    flags = {k: v for k, v in REQUEST_FLAGS.items() if k not in ("width", "height")}  # the tile's, set by --tile
    p.set_defaults(handler=run, field_flags={**flags, **UPSCALE_FLAGS, "init_image": "IMAGE"})


def run(args) -> int:
    from gouache.images import load_image
    from gouache.pipelines.request import UpscaleRequest
    from gouache.pipelines.upscale import upscale

    request = UpscaleRequest(prompt=args.prompt, init_image=load_image(args.image, "image"),
                             **given_options(args, REQUEST_FLAGS, UPSCALE_FLAGS))
    return run_request(args, request, upscale, "upscale")
