"""``gouache dataset``: training data. ``prepare SRC DST`` turns a folder of images into an imagefolder dataset."""

from __future__ import annotations

import dataclasses

from gouache.data.captions import CAPTION_SOURCES
from gouache.data.prepare import MODES, PrepareConfig

PREPARE_FLAGS = {
    "resolution": "--resolution", "bucket_step": "--bucket-step", "min_size": "--min-size",
    "captioner": "--captioner", "caption_prompt": "--caption-prompt", "recaption": "--recaption", "rerank": "--rerank",
    "device": "--device", "overwrite": "--overwrite",
}
PREPARE_HELP = {
    "resolution": "training size: images become RESOLUTION x RESOLUTION, or buckets of about that area",
    "bucket_step": "with --mode bucket, bucket sides are multiples of this (use 8 for small sizes such as 64)",
    "min_size": "skip images whose shorter side is smaller than this many pixels",
    "captioner": "a captioning model (BLIP, BLIP-2, LLaVA, ...): a folder name in $GOUACHE_HOME/captioners or a "
                 "path; with --caption auto it captions images that have no sidecar or metadata caption",
    "caption_prompt": "the captioning model's prompt: the instruction for LLaVA, the caption's start for BLIP",
    "recaption": "the captioning model captions every image, even those with a sidecar or metadata caption",
    "rerank": "a CLIP model that picks each caption from the captioner's beam-search candidates (a name in "
              "$GOUACHE_HOME/clip, a folder, or gouache-tiny-clip); none: greedy decoding alone",
    "device": "device the captioning model runs on: cpu, cuda, mps",
    "overwrite": "replace a gouache dataset already in DST (a folder prepare did not write is refused)",
}


def register(sub) -> None:
    from gouache.cli.common import add_dataclass_options

    p = sub.add_parser("dataset", help="prepare training data")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    prep = actions.add_parser(
        "prepare", help="turn a folder of images into a captioned training dataset",
        description="Read the images under SRC (jpg, png, webp; any depth), make them RGB at the training size and "
                    "write them with their captions to DST as a Hugging Face imagefolder (DST/metadata.jsonl). "
                    "Unreadable and too-small files are reported and skipped.")
    prep.add_argument("src", metavar="SRC", help="folder of images (never written to)")
    prep.add_argument("dst", metavar="DST", help="new or empty output folder")
    prep.add_argument("--mode", choices=MODES, default=None,
                      help="crop: resize and centre-crop to a square; bucket: to the aspect-ratio bucket "
                           "closest to each image's (as kohya-ss) (default: crop)")
    prep.add_argument("--caption", choices=CAPTION_SOURCES, default=None,
                      help="where captions come from: sidecar (.txt/.caption beside the image), metadata "
                           "(metadata.jsonl/.csv in SRC), filename, captioner (a local captioning model; blip is "
                           "the same with $GOUACHE_HOME/captioners/blip as its default); auto tries sidecar, "
                           "metadata, then the file name (or the model if --captioner is given) (default: auto)")
    prep.add_argument("--prefix", default=None, metavar="TEXT",
                      help="trigger word or text put before every caption, followed by a comma, e.g. \"sks dog\"")
    add_dataclass_options(prep, PrepareConfig, PREPARE_FLAGS, PREPARE_HELP,
                          {"min_size": "half the resolution", "captioner": "none; with --caption captioner or --recaption, "
                                                                      "the built-in gouache-tiny-captioner",
                           "rerank": "gouache-tiny-clip with the built-in captioner, none with any other"})
    prep.add_argument("--blip", dest="captioner", default=None, metavar="NAME|FOLDER", help="the same as --captioner")
    prep.set_defaults(handler=run_prepare, field_flags={**PREPARE_FLAGS, "name_or_path": "--captioner"})

    shapes = actions.add_parser(
        "shapes", help="write gouache-tiny's shapes as a folder of images with caption sidecars",
        description="Draw N images of gouache-tiny's procedural shapes into DST as PNGs with .txt captions "
                    "(kohya's sidecar convention), ready for `gouache dataset prepare`. The example LoRA and "
                    "embedding that ship with gouache were trained on such folders.")
    shapes.add_argument("dst", metavar="DST", help="output folder (existing files are never replaced)")
    shapes.add_argument("--n", type=int, default=100, help="number of images (default: 100)")
    shapes.add_argument("--style", choices=("filled", "outline"), default="filled",
                        help="filled shapes (what gouache-tiny was trained on) or outlines (default: filled)")
    shapes.add_argument("--colour", default=None, help="draw only this colour (default: any)")
    shapes.add_argument("--shape", default=None, help="draw only this shape: circle, square, triangle (default: any)")
    shapes.add_argument("--caption", default=None, metavar="TEMPLATE",
                        help="caption template with {colour}, {shape}, {background}, e.g. "
                             "\"a <sks> on a {background} background\" (default: the dataset's own caption)")
    shapes.add_argument("--seed", type=int, default=0, help="seed of the drawing (default: 0)")
    shapes.set_defaults(handler=run_shapes)
    p.set_defaults(handler=lambda args: p.print_help() or 2)


def run_prepare(args) -> int:
    from tqdm.auto import tqdm

    from gouache.cli.common import progress_bar
    from gouache.data.prepare import prepare

    names = [f.name for f in dataclasses.fields(PrepareConfig)]
    given = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None and k not in ("src", "dst")}
    cfg = PrepareConfig(src=args.src, dst=args.dst, **given)
    if cfg.caption in ("blip", "captioner") or cfg.captioner is not None or cfg.recaption:
        from gouache.cli import quiet_libraries

        quiet_libraries()  # transformers' load logs, only when a captioning model is loaded
    prepare(cfg, report=tqdm.write, progress=progress_bar("prepare"))
    return 0


def run_shapes(args) -> int:
    from gouache.errors import InvalidArgument
    from gouache.tiny.shapes import COLOURS, SHAPES, write_folder

    if args.n < 1:
        raise InvalidArgument(f"--n must be at least 1, got {args.n}")
    if args.colour is not None and args.colour not in COLOURS:
        raise InvalidArgument(f"unknown --colour {args.colour!r}; choose one of {', '.join(COLOURS)}")
    if args.shape is not None and args.shape not in SHAPES:
        raise InvalidArgument(f"unknown --shape {args.shape!r}; choose one of {', '.join(SHAPES)}")
    if args.caption is not None:
        try:
            args.caption.format(colour="", shape="", background="")
        except (KeyError, IndexError, ValueError) as e:
            raise InvalidArgument(f"--caption may use {{colour}}, {{shape}} and {{background}} only ({e})") from None
    paths = write_folder(args.dst, args.n, seed=args.seed, style=args.style, colour=args.colour, shape=args.shape,
                         template=args.caption)
    print(f"wrote {len(paths)} images with captions to {args.dst}")
    return 0
