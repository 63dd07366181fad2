"""Helpers shared by the command modules: dataclass-derived options, progress bars, output folders.

The generation commands (generate, img2img, inpaint, outpaint, ...) take the request options of
the field table (:data:`gouache.pipelines.fields.FIELDS`), typed by the request dataclasses' defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from gouache.errors import InvalidArgument
from gouache.files import writable_folder
from gouache.pipelines.fields import cli_flags


class UsageError(InvalidArgument):
    """A malformed command line that argparse cannot see by itself (``gouache generate`` with neither
    a prompt nor ``--from``): exit code 2, as for argparse's own errors."""


# request field -> flag, per group of options of the field table (gouache.pipelines.fields)
REQUEST_FLAGS = cli_flags("request")
HIRES_FLAGS = cli_flags("hires")  # --hires-scale turns the hires fix on
IMG2IMG_FLAGS = cli_flags("img2img")
UPSCALE_FLAGS = cli_flags("upscale")
MASK_FLAGS = cli_flags("mask")  # --fill takes a name (the last word of A1111's masked content)
# gouache.speed.SpeedSettings: how the model runs (exact); flag -> help
SPEED_FLAGS = {
    "dtype": ("--dtype", "auto, fp32, bf16 or fp16; auto: bf16 on CPUs with AVX512-BF16/AMX, fp16 on CUDA, else fp32"),
    "attention": ("--attention", "auto (gouache's processor), sdpa (diffusers'), sliced (least memory)"),
    "compile": ("--compile", "torch.compile the UNet (minutes of compiling at the first image; cached after)"),
    "vae_tiling": ("--vae-tiling", "decode large images in tiles (less memory)"),
    "offload": ("--offload", "CUDA only: model or sequential CPU offload (less GPU memory)"),
    "cuda_graphs": ("--cuda-graphs", "CUDA only: replay the UNet's steps from CUDA graphs (one launch per step)"),
    "compile_mode": ("--compile-mode", "with --compile: default, reduce-overhead (CUDA graphs), max-autotune, "
                                       "max-autotune-no-cudagraphs"),
}
# the image arguments of the image-to-image commands, by request field (for messages)
IMAGE_ARGS = {"init_image": "INIT", "mask": "MASK", "depth_map": "--depth"}


def add_dataclass_options(parser: argparse.ArgumentParser, cls, flags: dict[str, str], help: dict[str, str],
                          shown: dict[str, str] | None = None) -> None:
    """Add ``--flag`` options for the fields of dataclass ``cls`` named in ``flags``.

    Types come from the fields' defaults; every default is ``None`` on the command line so that a
    handler can tell "given" from "not given" (``--from IMAGE`` keeps what the image says unless a
    flag overrides it). ``shown`` says in words what a field whose default is None ends up as.
    """
    shown = shown or {}
    for f in dataclasses.fields(cls):
        if f.name not in flags:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        if isinstance(default, bool):
            parser.add_argument(flags[f.name], dest=f.name, action="store_const", const=True, default=None,
                                help=help.get(f.name, ""))
            continue
        kind = type(default) if default is not None else _type_of(f)
        said = shown.get(f.name) if default is None else default
        parser.add_argument(flags[f.name], dest=f.name, type=kind, default=None,
                            help=help.get(f.name, "") + ("" if said is None else f" (default: {said})"))


def _type_of(f: dataclasses.Field):
    """int, float or str from a field's annotation (a string under ``from __future__ import annotations``)."""
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return int if text.startswith("int") else float if text.startswith("float") else str


def progress_bar(desc: str):
    """A tqdm bar on stderr (hidden when stderr is not a terminal) as a ``progress(i, n)`` callable."""
    from gouache.progress import terminal_bar

    return terminal_bar(desc)


def add_field_options(parser: argparse.ArgumentParser, group: str, names=None, shown: dict | None = None) -> None:
    """The options of the field table's ``group`` (only those of the request fields in ``names``, if
    given): request fields typed and defaulted by the group's request class, then those that take a
    name (``--fill``), then those the command reads itself (``--guide-colour``)."""
    from gouache.pipelines.fields import flags_of, group_class

    pairs = [(f, flag) for f, flag in flags_of(group) if names is None or f.attr in names]
    plain = [(f, flag) for f, flag in pairs if flag.choices is None and flag.dest is None]
    said = {f.attr: flag.shown for f, flag in plain if flag.shown is not None}
    add_dataclass_options(parser, group_class(group), {f.attr: flag.name for f, flag in plain},
                          {f.attr: flag.help for f, flag in plain}, {**said, **(shown or {})})
    for f, flag in pairs:
        if flag.choices is not None:
            parser.add_argument(flag.name, dest=f.attr, choices=flag.choices, default=None, help=flag.help)
    for f, flag in pairs:
        if flag.dest is not None and flag.action == "store_true":
            parser.add_argument(flag.name, dest=flag.dest, action="store_true", default=None, help=flag.help)
        elif flag.dest is not None:
            parser.add_argument(flag.name, dest=flag.dest, metavar=flag.metavar, type=flag.kind, default=None,
                                help=flag.help, **({"action": flag.action} if flag.action else {}))


def add_request_options(parser: argparse.ArgumentParser, size: str | None = "the model's size") -> None:
    """The options every generation command takes: ``--negative``, ``--steps``, ``--seed``, ...;
    ``size`` says what ``--width``/``--height`` default to (None: no size options)."""
    names = [name for name in REQUEST_FLAGS if size or name not in ("width", "height")]
    add_field_options(parser, "request", names + ["styles"], {"width": size, "height": size})
    parser.add_argument("--lora", metavar="NAME|PATH:WEIGHT", action="append", type=lora_option, default=None,
                        help="use a LoRA from $GOUACHE_HOME/lora, or a LoRA file or PEFT adapter folder by path, at this "
                             "weight (NAME:TE:UNET for separate text-encoder and UNet weights); repeat for several; the "
                             "same as <lora:NAME:WEIGHT> in the prompt (a file is named by its stem)")
    parser.add_argument("--control", metavar="PREPROCESSOR:IMAGE[:WEIGHT[:START:END]]", action="append",
                        type=control_option, default=None,
                        help="ControlNet: the IMAGE's PREPROCESSOR map (canny, softedge, scribble, threshold, tile, "
                             "grayscale, none, depth) guides the image at WEIGHT (default 1) from fraction START to "
                             "END of the steps (default 0:1); repeat for several; img2img, inpaint and upscale may "
                             "leave IMAGE out to use the input image")
    parser.add_argument("--control-model", metavar="NAME", action="append", default=None,
                        help="the ControlNet of the n-th --control (name in $GOUACHE_HOME/controlnet or a path); "
                             "default: gouache-tiny-edges for canny with gouache-tiny")
    add_field_options(parser.add_argument_group("image prompts (IP-Adapter)"), "ip-adapter")
    add_speed_options(parser)
    from gouache.cli.llm import add_llm_options

    add_llm_options(parser, expand=True)  # --expand: PROMPT is an idea an LLM writes the prompt from


def add_speed_options(parser: argparse.ArgumentParser) -> None:
    """How the model runs (:class:`gouache.speed.SpeedSettings`): exact choices, defaults automatic."""
    from gouache.speed import ATTENTION, OFFLOAD

    group = parser.add_argument_group("speed (exact)")
    group.add_argument("--dtype", default=None, help=SPEED_FLAGS["dtype"][1] + " (default: auto)")
    group.add_argument("--attention", choices=ATTENTION, default=None, help=SPEED_FLAGS["attention"][1])
    group.add_argument("--compile", action="store_true", default=None, help=SPEED_FLAGS["compile"][1])
    group.add_argument("--vae-tiling", action="store_true", default=None, help=SPEED_FLAGS["vae_tiling"][1])
    group.add_argument("--offload", choices=OFFLOAD, default=None, help=SPEED_FLAGS["offload"][1])
    add_cuda_options(group)


def add_cuda_options(group) -> None:
    """The CUDA path's options (:mod:`gouache.speed.cuda`, docs/gpu.md)."""
    from gouache.speed.cuda import COMPILE_MODES

    group.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: cpu)")
    group.add_argument("--compile-mode", choices=COMPILE_MODES, default=None, help=SPEED_FLAGS["compile_mode"][1])
    group.add_argument("--cuda-graphs", action="store_true", default=None, help=SPEED_FLAGS["cuda_graphs"][1])
    group.add_argument("--per-image", action="store_true", default=None,
                       help="run each image of a batch alone (the CPU's rule: every image the same as made "
                            "alone) instead of the whole batch in one UNet call (the default on CUDA)")


def speed_settings(args: argparse.Namespace):
    """The :class:`gouache.speed.SpeedSettings` the ``--dtype``/``--attention``/... flags ask for."""
    from gouache.speed import SpeedSettings

    given = {name: getattr(args, name, None) for name in SPEED_FLAGS}
    if getattr(args, "per_image", None):
        given["batching"] = "per-image"
    settings = SpeedSettings(**{k: v for k, v in given.items() if v is not None})
    settings.validate()
    return settings


def model_device(args: argparse.Namespace, speed) -> str:
    """``--device`` (default cpu), checked with the speed options it is asked with: a CUDA-only
    option on a machine without CUDA is one line, before anything loads."""
    from gouache.speed.cuda import check_cuda_options, check_device

    device = check_device(getattr(args, "device", None) or "cpu")
    check_cuda_options(speed, device)
    return device


def report_vram() -> None:
    """The GPU memory high-water mark of the run, on stderr (nothing without CUDA)."""
    import sys

    from gouache.speed.cuda import peak_vram

    peak = peak_vram()
    if peak is not None and peak["peak_allocated_gib"] > 0:
        print(f"peak VRAM: {peak['peak_allocated_gib']:.2f} GiB allocated, {peak['peak_reserved_gib']:.2f} GiB "
              f"reserved", file=sys.stderr)


@dataclasses.dataclass(frozen=True)
class LoraOption:
    """One ``--lora``: the prompt tag it stands for, and the file when it was given by path."""

    tag: str
    name: str
    weighted: bool  # False: ``--lora NAME`` or ``--lora PATH`` without a weight
    path: Path | None = None


def lora_option(text: str) -> LoraOption:
    """``--lora NAME[:WEIGHT[:UNET_WEIGHT]]`` (or ``PATH[:WEIGHT...]`` to a LoRA file or PEFT adapter
    folder) as the prompt tag ``<lora:NAME:WEIGHT...>`` it stands for; a path is named by its stem.
    The weights are the trailing numbers, so a path may hold ':' (``C:\\loras\\cats.safetensors:0.8``)."""
    from gouache.adapters.lora import SUFFIXES, lora_name, lora_path
    from gouache.errors import GouacheError

    rest, numbers = text, []
    while len(numbers) < 2 and ":" in rest:
        head, _, last = rest.rpartition(":")
        try:
            numbers.insert(0, float(last))
        except ValueError:
            break
        rest = head
    name, path = rest.strip(), None
    # a path: it says so (a folder, ~ or .), or it is a LoRA file here; else a name in the lora folder
    # (where a relative path like sub/name also names one)
    if (any(sep in name for sep in "/\\") or name.startswith(("~", ".")) or (name.lower().endswith(SUFFIXES) and Path(name).is_file())) \
            and (Path(name).expanduser().exists() or not _in_lora_folder(name)):
        try:
            path = lora_path(name)
        except GouacheError as e:
            raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None
        name = lora_name(path)
    elif ":" in name:
        head, _, last = name.rpartition(":")
        hint = (f"the weight must be a number, e.g. --lora {head}:0.8" if head.strip() and not _is_number(last)
                else "expected NAME[:WEIGHT[:UNET_WEIGHT]], e.g. --lora pixel-art:0.8")
        raise argparse.ArgumentTypeError(f"{text!r}: {hint}")
    if not name or any(c in name for c in "<>:"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:WEIGHT or PATH:WEIGHT, e.g. --lora pixel-art:0.8 "
                                         "or --lora runs/cats/cats.safetensors:0.8")
    return LoraOption("<lora:" + ":".join([name, *(f"{w:g}" for w in numbers)]) + ">", name, bool(numbers), path)


def _in_lora_folder(name: str) -> bool:
    from gouache.adapters.lora import find_lora
    from gouache.errors import UnknownName

    try:
        find_lora(name)
    except UnknownName:
        return False
    return True


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def control_option(text: str):
    """``--control PREPROCESSOR[:IMAGE[:WEIGHT[:START:END]]]`` as a ControlSpec (checked when the request is)."""
    from gouache.control.spec import ControlSpec

    pre, *rest = text.split(":")
    numbers: list[float] = []
    while rest and len(numbers) < 3:
        try:
            numbers.insert(0, float(rest[-1]))
        except ValueError:
            break
        rest.pop()
    image = ":".join(rest) or None  # what is left, colons and all (C:\\path on Windows)
    if not pre.strip() or len(numbers) == 2:
        raise argparse.ArgumentTypeError(f"{text!r}: expected PREPROCESSOR:IMAGE[:WEIGHT[:START:END]], "
                                         "e.g. --control canny:edges.png:1.0 or --control canny:edges.png:1:0:0.5")
    weight = numbers[0] if numbers else 1.0
    start, end = numbers[1:] if len(numbers) == 3 else (0.0, 1.0)
    return ControlSpec(pre.strip(), image, None, weight, start, end)


def with_control_options(request, args: argparse.Namespace):
    """The request with ``--control`` units (replacing any an image's metadata gave), each with its
    ``--control-model`` in order."""
    from gouache.errors import InvalidArgument

    controls, models = getattr(args, "control", None), getattr(args, "control_model", None) or []
    if not controls:
        if models:
            raise InvalidArgument("--control-model needs a --control, e.g. --control canny:edges.png --control-model NAME")
        return request
    if len(models) > len(controls):
        raise InvalidArgument(f"{len(models)} --control-model for {len(controls)} --control; give one per --control, in order")
    units = [dataclasses.replace(c, model=models[k] if k < len(models) else None) for k, c in enumerate(controls)]
    return dataclasses.replace(request, controls=units)


def with_ip_adapter_options(request, args: argparse.Namespace):
    """The request with ``--ip-adapter`` units (replacing any an image's metadata gave) and their
    ``--ip-image`` images; ``--ip-image`` alone gives the units ``--from`` read their images, and
    ``--ip-style`` alone puts them on the style blocks."""
    from gouache.adapters.ip_spec import pair_images, parse_adapter

    names, images = getattr(args, "ip_adapter", None) or [], getattr(args, "ip_image", None) or []
    style = getattr(args, "ip_style", None)
    if names:
        return dataclasses.replace(request, ip_adapters=pair_images([parse_adapter(n) for n in names], images,
                                                                      bool(style)))
    recorded = list(getattr(request, "ip_adapters", None) or [])
    if not recorded:
        if images or style:
            raise InvalidArgument("--ip-image and --ip-style need --ip-adapter, e.g. --ip-adapter "
                                  "gouache-tiny-ip-adapter --ip-image shape.png")
        return request
    units = [(spec.model, spec.scale) for spec in recorded]
    specs = pair_images(units, images, False) if images else recorded
    styled = [dataclasses.replace(s, style=bool(style) or r.style) for s, r in zip(specs, recorded)]
    return dataclasses.replace(request, ip_adapters=styled)


def with_lora_options(request, args: argparse.Namespace):
    """The request with each ``--lora`` appended to its prompt as a tag, as A1111's extra-networks UI
    does, so the infotext records them and the image can be made again from it. A ``--lora`` without a
    weight whose LoRA the prompt names already (an image's, with ``--from``) adds no second tag."""
    from gouache.adapters.lora import lora_requests

    options = getattr(args, "lora", None) or []
    named = {r.name for r in lora_requests(request.prompt or "")}
    tags = [o.tag for o in options if o.weighted or o.name not in named]
    if not tags:
        return request
    prompt = " ".join([request.prompt, *tags]) if request.prompt else " ".join(tags)
    return dataclasses.replace(request, prompt=prompt)


def with_style_options(request, args: argparse.Namespace):
    """The request with each ``--style`` after the styles it has (those an image's metadata gave)."""
    given = getattr(args, "style", None) or []
    return dataclasses.replace(request, styles=tuple(request.styles) + tuple(given)) if given else request


def use_lora_files(model, args: argparse.Namespace) -> None:
    """Load each ``--lora`` given by path under its name, so the prompt's tag for it uses that file."""
    from gouache.adapters.lora import use_lora_file

    for option in getattr(args, "lora", None) or []:
        if option.path is not None:
            use_lora_file(model, option.path, option.name)


def add_hires_options(parser: argparse.ArgumentParser) -> None:
    """``--hires-scale`` (which turns the hires fix on), ``--hires-upscaler``, ``--hires-steps``, ``--hires-strength``."""
    add_field_options(parser, "hires")


def add_upscale_options(parser: argparse.ArgumentParser) -> None:
    """``--scale``, ``--tile``, ``--overlap``, ``--strength`` (defaults from UpscaleRequest)."""
    add_field_options(parser, "upscale")


def add_img2img_options(parser: argparse.ArgumentParser) -> None:
    """``--strength`` and ``--resize-mode``."""
    add_field_options(parser, "img2img")


MASK_WORDS = ("mask_prompt", "mask_threshold", "mask_dilate", "mask_refine", "mask_invert", "segmenter")


def add_mask_options(parser: argparse.ArgumentParser, only_masked: bool = True, words: bool = True,
                     shown: dict | None = None) -> None:
    """``--mask-blur`` and ``--fill``; with ``only_masked``, also ``--only-masked`` and ``--padding``;
    with ``words``, the mask from words (``--mask-prompt``, ``--mask-threshold``, ...)."""
    names = ("mask_blur", "inpainting_fill") + (("inpaint_full_res", "inpaint_full_res_padding") if only_masked else ())
    add_field_options(parser, "mask", names + (MASK_WORDS if words else ()), shown)


def given_options(args: argparse.Namespace, *tables: dict[str, str]) -> dict:
    """The request fields whose flags were given on the command line: a name taken for its value
    (``--fill noise``), with the fields an option turns on (``--hires-scale``: the hires fix)."""
    from gouache.pipelines.fields import FIELDS

    given = {name: getattr(args, name) for table in tables for name in table if getattr(args, name, None) is not None}
    used = {name: flag for table in tables for name, flag in table.items() if name in given}
    for f in FIELDS:
        for flag in f.flags:
            if used.get(f.attr) == flag.name and flag.dest is None:
                given[f.attr] = flag.choices[given[f.attr]] if flag.choices else given[f.attr]
                given.update(flag.sets or {})
    return given


def add_output_options(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--out", default=default, help=f"output folder (default: {default})")
    parser.add_argument("--grid", action="store_true", help="also save all images of the run as one grid")


def run_request(args: argparse.Namespace, request, pipeline, desc: str, check_model=None) -> int:
    """Add ``--lora`` tags to the prompt, validate, check the output folder, load the model, run
    ``pipeline(model, request, progress)`` and save every image (never over an existing file); prints the paths. Nothing heavy happens
    before the request and the folder are known to be good."""
    from gouache.pipelines.model import load_model

    request = prepared_request(request, args)
    speed = speed_settings(args)
    device = model_device(args, speed)
    out = writable_folder(args.out)
    model = load_model(request.model, device=device, speed=speed)
    use_lora_files(model, args)
    if check_model is not None:
        check_model(model)
    results = pipeline(model, request, progress_bar(desc))
    save_results(results, out, args.grid)
    report_vram()
    return 0


def prepared_request(request, args: argparse.Namespace):
    """The request with what the options add (``--expand``'s prompt, ``--lora`` tags, ``--control``,
    ``--ip-adapter``, ``--style``), validated: what :func:`run_request` runs (``gouache batch`` too)."""
    from gouache.cli.llm import with_expanded_prompt

    request = with_expanded_prompt(request, args)  # first: --lora tags join the LLM's prompt, not the idea
    request = with_ip_adapter_options(with_control_options(with_lora_options(request, args), args), args)
    request = with_style_options(request, args)
    request.validate()  # before loading anything
    return request


def save_results(results, out: Path, grid: bool = False) -> list[Path]:
    """Save each image as the next ``NNNNN-seed.png`` in ``out`` with its infotext; with ``grid`` and
    more than one image, also ``grid-<first image's name>``. Prints every path."""
    from gouache.metadata.png import next_image_path, save_png

    paths = [save_png(r.image, next_image_path(out, r.seed), r.infotext) for r in results]
    for path in paths:
        print(path)
    if grid and len(results) > 1:
        from gouache.images import image_grid

        # named after its first image, whose number is unique in the folder
        print(save_png(image_grid([r.image for r in results]), out / f"grid-{paths[0].name}", results[0].infotext))
    return paths
