"""``gouache edit background``: a new background behind the subject, from words.

The background's mask comes from words (``the background``, by the segmenter), then the masked
area is inpainted with the prompt while the subject is kept: :func:`gouache.pipelines.inpaint.inpaint`
with a ``mask_prompt``, and defaults that repaint the background whole (masked content "latent
noise", denoising strength 1, no mask blur: the refined mask follows the subject's edge, and a blur
would repaint a ring of it). Every
inpainting option still applies (``--fill``, ``--strength``, ``--only-masked``, ...), and the
infotext records the mask's words and segmenter.
"""

from __future__ import annotations

import re

from gouache.cli.common import (IMAGE_ARGS, IMG2IMG_FLAGS, MASK_FLAGS, REQUEST_FLAGS, add_img2img_options,
                                add_mask_options, add_output_options, add_request_options, given_options, run_request)

# what `edit background` changes from inpainting's defaults: field -> (value on the command line, as shown)
BACKGROUND_DEFAULTS = {"denoising_strength": 1.0, "inpainting_fill": "noise", "mask_blur": 0}


def register(sub) -> None:
    p = sub.add_parser("edit", help="edit an image with words: a new background, ...")
    kinds = p.add_subparsers(dest="edit", metavar="EDIT")
    b = kinds.add_parser("background", help="replace the background, keep the subject",
                         description="Mask the background from words (--mask-prompt, default \"the background\") and "
                                     "paint a new one from PROMPT, keeping the subject as it is.")
    b.add_argument("init", metavar="IMAGE", help="the image whose background to replace")
    b.add_argument("prompt", metavar="PROMPT", help="the picture with its new background (A1111 prompt syntax), "
                                                    "e.g. \"a red circle on a green background\"")
    add_img2img_options(b)
    add_mask_options(b)
    add_request_options(b, size="IMAGE's size, rounded down to a multiple of 8; with --only-masked the model's size")
    add_output_options(b, "outputs/edit")
    _defaults(b, {**BACKGROUND_DEFAULTS, "mask_prompt": "the background"})
    b.set_defaults(handler=run_background, field_flags={**REQUEST_FLAGS, **IMG2IMG_FLAGS, **MASK_FLAGS, **IMAGE_ARGS})
    p.set_defaults(handler=lambda args: p.print_help() or 2)


def _defaults(parser, values: dict) -> None:
    """``values`` become the options' defaults, and their help says so (instead of inpainting's)."""
    parser.set_defaults(**values)
    for action in parser._actions:
        if action.dest in values:
            shown = values[action.dest]
            action.help = re.sub(r" \(default: [^)]*\)$", "", action.help or "") + f" (default: {shown})"


def run_background(args) -> int:
    from gouache.images import load_image
    from gouache.pipelines.inpaint import inpaint
    from gouache.pipelines.request import InpaintRequest

    request = InpaintRequest(prompt=args.prompt, init_image=load_image(args.init, "IMAGE"),
                             **given_options(args, REQUEST_FLAGS, IMG2IMG_FLAGS, MASK_FLAGS))
    return run_request(args, request, inpaint, "edit background")
