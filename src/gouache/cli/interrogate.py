"""``gouache interrogate``: AUTOMATIC1111's Interrogate CLIP from the command line — a caption, the
CLIP-ranked best matches of the flavour lists, and the prompt they make (alone on the last line)."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("interrogate", help="describe an image as a prompt (caption + CLIP-ranked flavours)",
                       description="A1111's Interrogate CLIP: caption the image, rank the entries of the flavour "
                                   "lists (gouache's own and $GOUACHE_HOME/interrogate/*.txt) with CLIP, and print "
                                   "the matches with their cosine similarity, then the prompt alone on the last line.")
    p.add_argument("image", metavar="IMAGE", help="the image to describe")
    p.add_argument("--clip", metavar="NAME|PATH", default=None,
                   help="CLIP model: a name in $GOUACHE_HOME/clip or a CLIPModel folder (default: the built-in "
                        "gouache-tiny-clip)")
    p.add_argument("--captioner", metavar="NAME|PATH", default=None,
                   help="captioning model: a name in $GOUACHE_HOME/captioners or a folder; 'none' for a CLIP-only "
                        "prompt (default: the built-in gouache-tiny-captioner, or none when it is not installed)")
    p.add_argument("--device", default="cpu", help="device to run on: cpu, cuda, mps (default: cpu)")
    # gouache.vision.captioners names its argument `name_or_path`: here that is --captioner
    p.set_defaults(handler=run, field_flags={"name_or_path": "--captioner"})


def _captioner(args):
    """``--captioner``'s model, or None with a note on stderr when it is left out and none is installed."""
    from gouache.cli import in_flags
    from gouache.vision.interrogate import open_captioner

    captioner, why = open_captioner(args.captioner, args.device)
    if captioner is None and args.captioner is None:
        print(f"gouache: note: no caption ({in_flags(why, args)}); the prompt is CLIP's matches alone",
              file=sys.stderr)
    return captioner


def run(args) -> int:
    from contextlib import nullcontext

    from gouache.images import load_image
    from gouache.vision.clip import load_clip
    from gouache.vision.interrogate import flavour_lists, interrogate, reranks

    image = load_image(args.image, "IMAGE")
    lists = flavour_lists()  # a bad list file fails before any model loads
    with load_clip(args.clip, args.device) as clip:
        captioner = _captioner(args)
        with captioner if captioner is not None else nullcontext():
            result = interrogate(image, clip, captioner, lists, rerank=reranks(args.captioner, args.clip))
    if result.caption:
        print(f"caption: {result.caption}")
    for name, matches in result.matches.items():
        print(f"{name}:")
        for text, score in matches:
            print(f"  {score:6.3f}  {text}")
    print(result.prompt)
    return 0
