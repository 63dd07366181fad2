"""``gouache generate``: text-to-image from the command line."""

from __future__ import annotations

import dataclasses
import sys

from gouache.cli.common import add_dataclass_options, progress_bar, writable_folder
from gouache.pipelines.request import GenerationRequest, request_from_infotext

FLAGS = {
    "negative_prompt": "--negative", "model": "--model", "steps": "--steps", "cfg_scale": "--cfg",
    "sampler": "--sampler", "scheduler": "--scheduler", "seed": "--seed", "width": "--width",
    "height": "--height", "batch_size": "--batch-size", "n_iter": "--n-iter", "clip_skip": "--clip-skip",
    "emphasis": "--emphasis", "old_prompt_editing": "--old-prompt-editing",
}
HELP = {
    "negative_prompt": "what the image should not show",
    "model": "model name in $GOUACHE_HOME/checkpoints, or a path; the built-in gouache-tiny if omitted",
    "steps": "denoising steps",
    "cfg_scale": "classifier-free guidance scale",
    "sampler": "sampler name, see `gouache samplers`",
    "scheduler": "schedule type: Automatic, Uniform, Karras, Exponential, SGM Uniform",
    "seed": "seed of the first image; image i uses seed+i; -1 picks one",
    "width": "image width, a multiple of 8",
    "height": "image height, a multiple of 8",
    "batch_size": "images generated together",
    "n_iter": "batches generated one after another",
    "clip_skip": "stop the text encoder this many layers from the end (A1111's Clip skip)",
    "emphasis": "how (word:1.2) weights apply: Original, No norm, Ignore, None",
    "old_prompt_editing": "read [a:b:N] as A1111 before 1.6 did: N < 1 a fraction of the steps, else a step",
}


def register(sub) -> None:
    p = sub.add_parser("generate", help="text-to-image", description="Generate images from a text prompt.")
    p.add_argument("prompt", nargs="?", help="what to draw (A1111 prompt syntax)")
    add_dataclass_options(p, GenerationRequest, FLAGS, HELP)
    p.add_argument("--from", dest="from_image", metavar="IMAGE",
                   help="take every parameter from a PNG's metadata (flags given here override it)")
    p.add_argument("--out", default="outputs/txt2img", help="output folder (default: outputs/txt2img)")
    p.add_argument("--grid", action="store_true", help="also save all images of the run as one grid")
    p.set_defaults(handler=run)
    sub.add_parser("samplers", help="list sampler names and schedule types").set_defaults(handler=list_samplers)


def build_request(args) -> GenerationRequest:
    from gouache.errors import InvalidArgument

    given = {name: getattr(args, name) for name in FLAGS if getattr(args, name) is not None}
    if args.from_image:
        from gouache.metadata.png import read_infotext

        text = read_infotext(args.from_image)
        if not text:
            raise InvalidArgument(f"{args.from_image} carries no generation parameters")
        base = request_from_infotext(text)
        if args.prompt is not None:
            given["prompt"] = args.prompt
        return dataclasses.replace(base, **given)
    if args.prompt is None:
        raise InvalidArgument("give a prompt, e.g. gouache generate \"a red circle on a blue background\", or --from IMAGE")
    return GenerationRequest(prompt=args.prompt, **given)


def run(args) -> int:
    from gouache.metadata.png import next_image_path, save_png
    from gouache.pipelines.model import load_model
    from gouache.pipelines.txt2img import txt2img

    request = build_request(args)
    request.validate()  # before loading anything
    out = writable_folder(args.out)
    model = load_model(request.model)
    if args.from_image:
        _warn_if_other_model(args.from_image, model)
    results = txt2img(model, request, progress_bar("generate"))
    paths = [save_png(r.image, next_image_path(out, r.seed), r.infotext) for r in results]
    for path in paths:
        print(path)
    if args.grid and len(results) > 1:
        from gouache.images import image_grid

        grid = image_grid([r.image for r in results])
        # named after its first image, whose number is unique in the folder
        print(save_png(grid, out / f"grid-{paths[0].name}", results[0].infotext))
    return 0


def _warn_if_other_model(image: str, model) -> None:
    from gouache.metadata.infotext import parse_infotext
    from gouache.metadata.png import read_infotext

    recorded = parse_infotext(read_infotext(image) or "").params.get("Model hash")
    if recorded and recorded != model.hash:
        print(f"gouache: warning: {image} was made with model hash {recorded}, "
              f"this is {model.name} [{model.hash}]: the image will differ", file=sys.stderr)


def list_samplers(args) -> int:
    from gouache.sampling.samplers import describe

    width = max(len(name) for name, _, _ in describe())
    for name, scheduler, schedules in describe():
        print(f"{name:<{width}}  {scheduler:<34} {', '.join(schedules)}")
    return 0
