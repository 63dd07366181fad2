"""``gouache img2img``: image-to-image from the command line."""

from __future__ import annotations

from gouache.cli.common import (IMAGE_ARGS, IMG2IMG_FLAGS, REQUEST_FLAGS, add_img2img_options, add_output_options,
                                add_request_options, given_options, run_request)


def register(sub) -> None:
    p = sub.add_parser("img2img", help="image-to-image",
                       description="Repaint an image guided by a prompt; --strength sets how much changes.")
    p.add_argument("init", metavar="INIT", help="the image to start from")
    p.add_argument("prompt", metavar="PROMPT", help="what to draw (A1111 prompt syntax)")
    add_img2img_options(p)
    add_request_options(p, size="INIT's size, rounded down to a multiple of 8")
    add_output_options(p, "outputs/img2img")
    p.set_defaults(handler=run, field_flags={**REQUEST_FLAGS, **IMG2IMG_FLAGS, **IMAGE_ARGS})


def build_request(args):
    """The Img2ImgRequest of the options (``gouache batch`` builds its img2img lines' too)."""
    from gouache.images import load_image
    from gouache.pipelines.request import Img2ImgRequest

    return Img2ImgRequest(prompt=args.prompt, init_image=load_image(args.init, "init image"),
                          **given_options(args, REQUEST_FLAGS, IMG2IMG_FLAGS))


def run(args) -> int:
    from gouache.pipelines.img2img import img2img

    return run_request(args, build_request(args), img2img, "img2img")
