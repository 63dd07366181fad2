"""``gouache edit background``: a new background behind the subject, from words.

The background's mask comes from words (``the background``, by the segmenter), then the masked
area is inpainted with the prompt while the subject is kept: :func:`gouache.pipelines.inpaint.inpaint`
with a ``mask_prompt``, and defaults that repaint the background whole (masked content "latent
noise", denoising strength 1, no mask blur: the refined mask follows the subject's edge, and a blur
would repaint a ring of it). Every
inpainting option still applies (``--fill``, ``--strength``, ``--only-masked``, ...), and the
infotext records the mask's words and segmenter.

**The subject's edges are kept** (``--keep-edges WEIGHT``, 1 by default): a model that knows what
the prompt names paints it again, as a second copy somewhere in the new background, when nothing
says there is only one — gouache-tiny does so for a quarter of the held-out colour-shape pairs.
A canny ControlNet unit on the image itself (what A1111 users add by hand for this) holds the
picture's structure: the subject's outline and nothing else. It is the model's default canny
ControlNet (gouache-tiny: the built-in ``gouache-tiny-edges``); a model without one gets a note
and the plain edit, and ``--control`` units, when given, replace it.
"""

from __future__ import annotations

import re

from gouache.cli.common import (IMAGE_ARGS, IMG2IMG_FLAGS, MASK_FLAGS, REQUEST_FLAGS, add_img2img_options,
                                add_mask_options, add_output_options, add_request_options, given_options, run_request)

# what `edit background` changes from inpainting's defaults: field -> (value on the command line, as shown)
BACKGROUND_DEFAULTS = {"denoising_strength": 1.0, "inpainting_fill": "noise", "mask_blur": 0}
KEEP_EDGES = 1.0  # the weight of the canny unit on the image that keeps the subject's edges


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
    b.add_argument("--keep-edges", type=float, default=KEEP_EDGES, metavar="WEIGHT",
                   help="weight of a canny ControlNet on IMAGE that keeps its structure, so the subject is not "
                        "painted again in the new background (the model's default canny ControlNet; 0: off; "
                        f"--control replaces it) (default: {KEEP_EDGES:g})")
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


def request_keeping_edges(model, request, weight: float, warn=None):
    """``request`` asking for the subject's edges to be kept at ``weight``
    (:func:`gouache.pipelines.inpaint.with_kept_edges` adds the canny unit). A model without a default
    canny ControlNet gets the request as it is and a note through ``warn``."""
    import dataclasses

    from gouache.pipelines.inpaint import has_edge_model

    if weight == 0 or request.controls:
        return request
    if not has_edge_model(model):
        if warn is not None:
            warn(f"note: {model.name} has no default canny ControlNet, so the subject's edges are not held (it may be "
                 "painted again in the background); add --control canny --control-model NAME, or --keep-edges 0")
        return request
    return dataclasses.replace(request, keep_edges=weight)


def run_background(args) -> int:
    import sys

    from gouache.images import load_image
    from gouache.pipelines.inpaint import inpaint
    from gouache.pipelines.request import InpaintRequest

    from gouache.cli.common import UsageError

    if not 0 <= args.keep_edges <= 2:
        raise UsageError(f"--keep-edges must be a weight from 0 (off) to 2, got {args.keep_edges:g}")
    request = InpaintRequest(prompt=args.prompt, init_image=load_image(args.init, "IMAGE"),
                             **given_options(args, REQUEST_FLAGS, IMG2IMG_FLAGS, MASK_FLAGS))

    def edit(model, req, progress):
        note = lambda line: print(line, file=sys.stderr)  # noqa: E731
        return inpaint(model, request_keeping_edges(model, req, args.keep_edges, note), progress)

    return run_request(args, request, edit, "edit background")
