"""``gouache mask`` and ``gouache remove-background``: masks from words, and cut-outs on transparent."""

from __future__ import annotations

import io

SEGMENTER_HELP = ("segmenter: a CLIPSeg or other transformers segmentation model (a name in $GOUACHE_HOME/segmenters "
                  "or a folder), or rembg:MODEL with the rembg package and the model's .onnx on disk "
                  "(default: the built-in gouache-tiny-clipseg)")


def register(sub) -> None:
    p = sub.add_parser("mask", help="make an inpainting mask from words (white where the words match)",
                       description="Write a black-and-white mask of IMAGE's size, white where WORDS match "
                                   "(\"the background\", \"the red shape\"), for `gouache inpaint` or any other tool.")
    p.add_argument("image", metavar="IMAGE", help="the image")
    p.add_argument("words", metavar="WORDS", help="what to mask, e.g. \"the background\"")
    p.add_argument("-o", "--out", required=True, metavar="FILE.png", help="the mask to write (PNG)")
    p.add_argument("--threshold", type=float, default=0.5, help="a pixel is in the mask above this score (default: 0.5)")
    p.add_argument("--dilate", type=int, default=0, metavar="PX", help="grow the mask by PX pixels (default: 0)")
    p.add_argument("--blur", type=int, default=0, metavar="PX", help="soften the mask's edge over PX pixels (default: 0)")
    p.add_argument("--invert", action="store_true", help="mask everything but what the words name")
    _common(p)
    p.set_defaults(handler=run_mask, field_flags={"threshold": "--threshold", "dilate": "--dilate", "blur": "--blur",
                                                  "refine": "--refine"})

    p = sub.add_parser("remove-background", help="cut the subject out: an RGBA PNG with the background transparent",
                       description="Write IMAGE as an RGBA PNG whose background is transparent, with soft edges "
                                   "from the segmenter's scores.")
    p.add_argument("image", metavar="IMAGE", help="the image")
    p.add_argument("-o", "--out", required=True, metavar="FILE.png", help="the cut-out to write (PNG)")
    _common(p)
    p.set_defaults(handler=run_remove_background, field_flags={"refine": "--refine"})


def _common(p) -> None:
    p.add_argument("--refine", type=int, default=4, metavar="PX",
                   help="snap the edge to the image's edges over PX pixels (a guided filter; 0: off) (default: 4)")
    p.add_argument("--segmenter", metavar="NAME|PATH|rembg:MODEL", default=None, help=SEGMENTER_HELP)
    p.add_argument("--device", default="cpu", help="device to run on: cpu, cuda, mps (default: cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace FILE.png if it exists")


def _check_out(args):
    from pathlib import Path

    from gouache.errors import InvalidArgument, OutputError

    out = Path(args.out).expanduser()
    if out.suffix.lower() != ".png":
        raise InvalidArgument(f"--out must name a .png file, got {args.out!r}")
    if out.exists() and not args.overwrite:
        raise OutputError(f"{out} exists; choose another --out, or pass --overwrite")
    return out


def _write(image, out, overwrite: bool) -> None:
    from gouache.metadata.png import atomic_write_bytes

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(out, buf.getvalue(), overwrite=overwrite)
    print(out)


def run_mask(args) -> int:
    from gouache.images import load_image
    from gouache.vision.segment import MaskOptions, check_words, mask_image

    options = MaskOptions(args.threshold, args.dilate, args.blur, args.invert, args.refine).validate()
    words = check_words(args.words)
    out = _check_out(args)
    image = load_image(args.image, "IMAGE")
    _write(mask_image(image, words, options, args.segmenter, args.device), out, args.overwrite)
    return 0


def run_remove_background(args) -> int:
    from gouache.images import load_image
    from gouache.vision.segment import remove_background

    out = _check_out(args)
    image = load_image(args.image, "IMAGE")
    _write(remove_background(image, args.segmenter, args.device, args.refine), out, args.overwrite)
    return 0
