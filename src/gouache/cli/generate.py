"""``gouache generate``: text-to-image from the command line."""

from __future__ import annotations

import dataclasses
import sys

from gouache.cli.common import (HIRES_FLAGS, REQUEST_FLAGS, add_field_options, add_hires_options, add_output_options,
                                add_request_options, given_options, run_request)
from gouache.pipelines.fields import cli_flags
from gouache.pipelines.request import GenerationRequest, request_from_infotext

REFINER_FLAGS = cli_flags("refiner")


def register(sub) -> None:
    p = sub.add_parser("generate", help="text-to-image", description="Generate images from a text prompt.")
    p.add_argument("prompt", nargs="?", help="what to draw (A1111 prompt syntax)")
    add_request_options(p)
    add_hires_options(p)
    add_field_options(p, "refiner")
    add_field_options(p, "guidance")  # --guide-colour, --guide-scale, --guide-every
    p.add_argument("--from", dest="from_image", metavar="IMAGE",
                   help="take every parameter from a PNG's metadata (flags given here override it)")
    add_output_options(p, "outputs/txt2img")
    p.set_defaults(handler=run, field_flags={**REQUEST_FLAGS, **HIRES_FLAGS, **REFINER_FLAGS})
    sub.add_parser("samplers", help="list sampler names and schedule types").set_defaults(handler=list_samplers)


def build_request(args) -> GenerationRequest:
    request = _with_guidance(_request(args), args)
    if args.from_image:
        _check_image_loras(args.from_image, request, args)
    if not request.enable_hr and given_options(args, HIRES_FLAGS):
        from gouache.errors import InvalidArgument

        raise InvalidArgument("--hires-upscaler, --hires-steps and --hires-strength need --hires-scale, e.g. --hires-scale 2")
    return request


def _check_image_loras(image: str, request: GenerationRequest, args) -> None:
    """Each LoRA the image's prompt names must be in the lora folder or given by path with ``--lora``;
    if not, say which file to pass (its name and hash from the infotext), before loading anything."""
    from gouache.adapters.lora import find_lora, lora_requests
    from gouache.errors import UnknownName
    from gouache.metadata.infotext import parse_infotext
    from gouache.metadata.png import read_infotext

    given = {o.name for o in args.lora or [] if o.path is not None}
    for r in lora_requests(request.prompt):
        if r.name in given:
            continue
        try:
            find_lora(r.name)
        except UnknownName:
            hashes = dict(part.split(": ", 1) for part in
                          parse_infotext(read_infotext(image) or "").params.get("Lora hashes", "").split(", ") if ": " in part)
            made_with = f" (hash {hashes[r.name]})" if r.name in hashes else ""
            raise UnknownName(f"{image} uses LoRA {r.name!r}{made_with}, which is not in the lora folder "
                              f"($GOUACHE_HOME/lora): pass its file, e.g. --lora path/to/{r.name}.safetensors, "
                              "or copy the file there") from None


def _with_guidance(request: GenerationRequest, args) -> GenerationRequest:
    """``--guide-colour`` (with ``--guide-scale``/``--guide-every``) as the request's loss guidance."""
    from gouache.errors import InvalidArgument
    from gouache.sampling.loss import LossGuidance, parse_colour

    if args.guide_colour is None:
        if args.guide_scale is not None or args.guide_every is not None:
            raise InvalidArgument("--guide-scale and --guide-every need --guide-colour, e.g. --guide-colour 0,0,255")
        return request
    guidance = LossGuidance(parse_colour(args.guide_colour))
    guidance.scale = guidance.scale if args.guide_scale is None else args.guide_scale
    guidance.every = guidance.every if args.guide_every is None else args.guide_every
    return dataclasses.replace(request, loss_guidance=guidance)


def _request(args) -> GenerationRequest:
    from gouache.cli.common import UsageError
    from gouache.errors import InvalidArgument

    given = given_options(args, REQUEST_FLAGS, HIRES_FLAGS, REFINER_FLAGS)
    if args.from_image:
        from gouache.metadata.png import read_infotext

        text = read_infotext(args.from_image)
        if not text:
            raise InvalidArgument(f"{args.from_image} carries no generation parameters")
        base = request_from_infotext(text)
        if base.batch_pos is not None and given.keys() & {"batch_size", "n_iter", "seed"}:
            base = base.seeds_of(base.seed + base.batch_pos)  # a batched image's own seed, as a batch of one
        if args.prompt is not None:  # a new prompt: dynamic unless --no-wildcards (the image's is as written)
            given["prompt"] = args.prompt
            given.setdefault("literal_prompts", False)
        return dataclasses.replace(base, **given)
    if args.prompt is None:
        raise UsageError("give a prompt, e.g. gouache generate \"a red circle on a blue background\", or --from IMAGE")
    return GenerationRequest(prompt=args.prompt, **given)


def run(args) -> int:
    from gouache.pipelines.txt2img import txt2img

    request = build_request(args)
    check = (lambda model: _warn_if_other_run(args.from_image, model)) if args.from_image else None
    def pipeline(model, req, progress):
        if req.refiner_checkpoint is None:
            return txt2img(model, req, progress)
        from gouache.pipelines.model import load_model

        # the refiner loads after the base, once the request is known to be good
        return txt2img(model, req, progress, refiner=load_model(req.refiner_checkpoint))

    return run_request(args, request, pipeline, "generate", check)


def _warn_if_other_run(image: str, model) -> None:
    """One line on stderr when this run cannot make ``image`` again exactly: another model (the
    image will differ), another dtype or attention backend (it may differ in its last bits)."""
    from gouache.metadata.infotext import parse_infotext
    from gouache.metadata.png import read_infotext
    from gouache.models.registry import model_title
    from gouache.pipelines.fields import run_difference

    parsed = parse_infotext(read_infotext(image) or "")
    recorded = parsed.params.get("Model hash")
    if recorded and recorded != model.hash:
        print(f"gouache: warning: {image} was made with model hash {recorded}, "
              f"this is {model_title(model.name, model.hash)}: the image will differ", file=sys.stderr)
    difference = run_difference(parsed, model)
    if difference:
        print(f"gouache: warning: {image} was made with {difference}: the image may differ in its last bits",
              file=sys.stderr)


def list_samplers(args) -> int:
    from gouache.sampling.samplers import describe

    width = max(len(name) for name, _, _ in describe())
    for name, scheduler, schedules in describe():
        print(f"{name:<{width}}  {scheduler:<34} {', '.join(schedules)}")
    return 0
