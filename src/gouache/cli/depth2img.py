"""``gouache depth2img``: image-to-image with an SD 2 depth model, which keeps the image's layout."""

from __future__ import annotations

from gouache.cli.common import (IMAGE_ARGS, IMG2IMG_FLAGS, REQUEST_FLAGS, add_img2img_options, add_output_options,
                                add_request_options, given_options, run_request)


def register(sub) -> None:
    p = sub.add_parser("depth2img", help="image-to-image that keeps the depth layout (SD 2 depth models)",
                       description="Repaint an image guided by a prompt and a depth map; --strength sets how much changes.")
    p.add_argument("init", metavar="INIT", help="the image to start from")
    p.add_argument("prompt", metavar="PROMPT", help="what to draw (A1111 prompt syntax)")
    p.add_argument("--depth", metavar="DEPTH", default=None,
                   help="depth map image (white = near); if omitted, estimated with the model's DPT estimator")
    add_img2img_options(p)
    add_request_options(p, size="INIT's size, rounded down to a multiple of 8")
    add_output_options(p, "outputs/depth2img")
    p.set_defaults(handler=run, field_flags={**REQUEST_FLAGS, **IMG2IMG_FLAGS, **IMAGE_ARGS})


def run(args) -> int:
    from gouache.images import load_image
    from gouache.pipelines.depth import depth2img
    from gouache.pipelines.request import Depth2ImgRequest

    depth = load_image(args.depth, "depth map") if args.depth else None
    request = Depth2ImgRequest(prompt=args.prompt, init_image=load_image(args.init, "init image"), depth_map=depth,
                               **given_options(args, REQUEST_FLAGS, IMG2IMG_FLAGS))
    return run_request(args, request, depth2img, "depth2img")
