"""``gouache inpaint``: repaint the white area of a mask from the command line."""

from __future__ import annotations

from gouache.cli.common import (IMAGE_ARGS, IMG2IMG_FLAGS, MASK_FLAGS, REQUEST_FLAGS, add_img2img_options, add_mask_options,
                                add_output_options, add_request_options, given_options, run_request)


def register(sub) -> None:
    p = sub.add_parser("inpaint", help="repaint the white area of a mask, or what words name",
                       description="Repaint where MASK is white (black is kept), or what --mask-prompt names "
                                   "(then leave MASK out), guided by a prompt.")
    p.add_argument("init", metavar="INIT", help="the image to change")
    p.add_argument("mask", metavar="MASK", nargs="?", default=None,
                   help="an image of INIT's size: white = repaint (or an RGBA image's alpha); leave it out with "
                        "--mask-prompt")
    p.add_argument("prompt", metavar="PROMPT", help="what to draw there (A1111 prompt syntax)")
    add_img2img_options(p)
    add_mask_options(p)
    p.add_argument("--keep-edges", type=float, default=None, metavar="WEIGHT",
                   help="keep INIT's edges where it repaints: the model's canny ControlNet on INIT at this weight "
                        "(0-2; as --control canny by hand)")
    add_request_options(p, size="INIT's size, rounded down to a multiple of 8; with --only-masked the model's size")
    add_output_options(p, "outputs/inpaint")
    p.set_defaults(handler=run, field_flags={**REQUEST_FLAGS, **IMG2IMG_FLAGS, **MASK_FLAGS, **IMAGE_ARGS,
                                            "keep_edges": "--keep-edges"})


def build_request(args):
    """The InpaintRequest of the options (``gouache batch`` builds its inpainting lines' too)."""
    from gouache.cli.common import UsageError
    from gouache.images import load_image
    from gouache.pipelines.request import InpaintRequest

    if (args.mask is None) == (args.mask_prompt is None):
        raise UsageError("give a MASK image or --mask-prompt WORDS (one of them)")
    mask = load_image(args.mask, "mask") if args.mask is not None else None
    edges = getattr(args, "keep_edges", None)
    return InpaintRequest(prompt=args.prompt, init_image=load_image(args.init, "init image"), mask=mask,
                          **given_options(args, REQUEST_FLAGS, IMG2IMG_FLAGS, MASK_FLAGS),
                          **({"keep_edges": edges} if edges is not None else {}))


def run(args) -> int:
    from gouache.pipelines.inpaint import inpaint

    return run_request(args, build_request(args), inpaint, "inpaint")
