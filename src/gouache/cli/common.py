"""Helpers shared by the command modules: dataclass-derived options, progress bars, output folders.

The generation commands (generate, img2img, inpaint, outpaint) take the same request options,
defined once here from :class:`~gouache.pipelines.request.GenerationRequest` and its subclasses.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from gouache.errors import InvalidArgument, OutputError


class UsageError(InvalidArgument):
    """A malformed command line that argparse cannot see by itself (``gouache generate`` with neither
    a prompt nor ``--from``): exit code 2, as for argparse's own errors."""


# GenerationRequest field -> flag, and its help (type and default come from the dataclass)
REQUEST_FLAGS = {
    "negative_prompt": "--negative", "model": "--model", "steps": "--steps", "cfg_scale": "--cfg",
    "sampler": "--sampler", "scheduler": "--scheduler", "seed": "--seed", "width": "--width",
    "height": "--height", "batch_size": "--batch-size", "n_iter": "--n-iter", "clip_skip": "--clip-skip",
    "emphasis": "--emphasis", "old_prompt_editing": "--old-prompt-editing",
    "subseed": "--variation-seed", "subseed_strength": "--variation-strength",
    "tome_ratio": "--tome", "deepcache_interval": "--deepcache", "cfg_truncation": "--cfg-truncation",
}
REQUEST_HELP = {
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
    "subseed": "variation seed: the seed whose noise --variation-strength mixes in; -1 picks one",
    "subseed_strength": "how far towards the variation seed's image: 0 none, 1 all the way",
    "tome_ratio": "approximation: merge this fraction of the tokens in full-resolution self-attention (ToMe), e.g. 0.5",
    "deepcache_interval": "approximation: run the whole UNet every N-th step and reuse its deep features in between (DeepCache), e.g. 3",
    "cfg_truncation": "guide only the first this fraction of the steps, e.g. 0.5 (faster); 1 is every step "
                      "(default: the model's, 1; 0.5 for gouache-tiny)",
}
# gouache.speed.SpeedSettings: how the model runs (exact); flag -> help
SPEED_FLAGS = {
    "dtype": ("--dtype", "auto, fp32, bf16 or fp16; auto: bf16 on CPUs with AVX512-BF16/AMX, fp16 on CUDA, else fp32"),
    "attention": ("--attention", "auto (gouache's processor), sdpa (diffusers'), sliced (least memory)"),
    "compile": ("--compile", "torch.compile the UNet (minutes of compiling at the first image; cached after)"),
    "vae_tiling": ("--vae-tiling", "decode large images in tiles (less memory)"),
    "offload": ("--offload", "CUDA only: model or sequential CPU offload (less GPU memory)"),
}
# the hires fix's fields of GenerationRequest (--hires-scale turns it on)
HIRES_FLAGS = {"hr_scale": "--hires-scale", "hr_upscaler": "--hires-upscaler", "hr_second_pass_steps": "--hires-steps",
               "denoising_strength": "--hires-strength"}
HIRES_HELP = {
    "hr_scale": "hires fix: generate at --width x --height, then upscale this many times and repaint (A1111's Hires. fix)",
    "hr_upscaler": "hires fix upscaler: Latent, Latent (nearest-exact) or Lanczos",
    "hr_second_pass_steps": "hires fix: steps of the second pass's schedule; 0 = --steps",
    "denoising_strength": "hires fix: how much the second pass changes, 0 to 1",
}
# Img2ImgRequest's own fields
IMG2IMG_FLAGS = {"denoising_strength": "--strength", "resize_mode": "--resize-mode"}
IMG2IMG_HELP = {
    "denoising_strength": "how much to change: 0 keeps the image, 1 replaces it; the last strength x steps steps run",
    "resize_mode": "when the size differs: 0 just resize, 1 crop and resize, 2 resize and fill",
}
# UpscaleRequest's own fields, and its strength (a lower default than img2img's)
UPSCALE_FLAGS = {"scale": "--scale", "tile": "--tile", "overlap": "--overlap", "denoising_strength": "--strength"}
UPSCALE_HELP = {
    "scale": "how many times bigger the result is",
    "tile": "tile size in pixels, a multiple of 8",
    "overlap": "least overlap of neighbouring tiles in pixels; they are blended across it",
    "denoising_strength": "how much each tile is repainted: 0 keeps the Lanczos upscale, 1 replaces it",
}
# InpaintRequest's own fields (--fill takes a name, see MASKED_CONTENT)
MASK_FLAGS = {"mask_blur": "--mask-blur", "inpainting_fill": "--fill", "inpaint_full_res": "--only-masked",
              "inpaint_full_res_padding": "--padding"}
MASK_HELP = {
    "mask_blur": "blur the mask edge by this many pixels, so the new area blends in",
    "inpaint_full_res": "work on the area around the mask only, at --width x --height, and paste it back",
    "inpaint_full_res_padding": "pixels around the mask that --only-masked also works on",
}
MASKED_CONTENT = {"fill": 0, "original": 1, "noise": 2, "nothing": 3}  # --fill NAME -> A1111's inpainting_fill
# the image arguments of the image-to-image commands, by request field (for messages)
IMAGE_ARGS = {"init_image": "INIT", "mask": "MASK", "depth_map": "--depth"}


def add_dataclass_options(parser: argparse.ArgumentParser, cls, flags: dict[str, str], help: dict[str, str],
                          shown: dict[str, str] | None = None) -> None:
    """Add ``--flag`` options for the fields of dataclass ``cls`` named in ``flags``.

    Types come from the fields' defaults; every default is ``None`` on the command line so that a
    handler can tell "given" from "not given" (``--from IMAGE`` keeps what the image says unless a
    flag overrides it). ``shown`` says in words what a field whose default is None ends up as.
    """
    shown = {"width": "the model's size", "height": "the model's size",
             "cfg_scale": "7; 5 for gouache-tiny", **(shown or {})}
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


def writable_folder(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check it can be written, before any work is done."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {folder}: {e.strerror}") from None
    if not folder.is_dir():
        raise OutputError(f"output path {folder} exists and is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {folder} is not writable")
    return folder


def add_request_options(parser: argparse.ArgumentParser, size: str | None = "the model's size") -> None:
    """The options every generation command takes: ``--negative``, ``--steps``, ``--seed``, ...;
    ``size`` says what ``--width``/``--height`` default to (None: no size options)."""
    from gouache.pipelines.request import GenerationRequest

    flags = REQUEST_FLAGS if size else {k: v for k, v in REQUEST_FLAGS.items() if k not in ("width", "height")}
    add_dataclass_options(parser, GenerationRequest, flags, REQUEST_HELP, {"width": size, "height": size})
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
    add_speed_options(parser)


def add_speed_options(parser: argparse.ArgumentParser) -> None:
    """How the model runs (:class:`gouache.speed.SpeedSettings`): exact choices, defaults automatic."""
    from gouache.speed import ATTENTION, OFFLOAD

    group = parser.add_argument_group("speed (exact)")
    group.add_argument("--dtype", default=None, help=SPEED_FLAGS["dtype"][1] + " (default: auto)")
    group.add_argument("--attention", choices=ATTENTION, default=None, help=SPEED_FLAGS["attention"][1])
    group.add_argument("--compile", action="store_true", default=None, help=SPEED_FLAGS["compile"][1])
    group.add_argument("--vae-tiling", action="store_true", default=None, help=SPEED_FLAGS["vae_tiling"][1])
    group.add_argument("--offload", choices=OFFLOAD, default=None, help=SPEED_FLAGS["offload"][1])


def speed_settings(args: argparse.Namespace):
    """The :class:`gouache.speed.SpeedSettings` the ``--dtype``/``--attention``/... flags ask for."""
    from gouache.speed import SpeedSettings

    given = {name: getattr(args, name, None) for name in SPEED_FLAGS}
    settings = SpeedSettings(**{k: v for k, v in given.items() if v is not None})
    settings.validate()
    return settings


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


def use_lora_files(model, args: argparse.Namespace) -> None:
    """Load each ``--lora`` given by path under its name, so the prompt's tag for it uses that file."""
    from gouache.adapters.lora import use_lora_file

    for option in getattr(args, "lora", None) or []:
        if option.path is not None:
            use_lora_file(model, option.path, option.name)


def add_hires_options(parser: argparse.ArgumentParser) -> None:
    """``--hires-scale`` (which turns the hires fix on), ``--hires-upscaler``, ``--hires-steps``, ``--hires-strength``."""
    from gouache.pipelines.request import GenerationRequest

    add_dataclass_options(parser, GenerationRequest, HIRES_FLAGS, HIRES_HELP)


def add_upscale_options(parser: argparse.ArgumentParser) -> None:
    """``--scale``, ``--tile``, ``--overlap``, ``--strength`` (defaults from UpscaleRequest)."""
    from gouache.pipelines.request import UpscaleRequest

    add_dataclass_options(parser, UpscaleRequest, UPSCALE_FLAGS, UPSCALE_HELP,
                          {"tile": "the model's size", "overlap": "a quarter of the tile"})


def add_img2img_options(parser: argparse.ArgumentParser) -> None:
    """``--strength`` and ``--resize-mode``."""
    from gouache.pipelines.request import Img2ImgRequest

    add_dataclass_options(parser, Img2ImgRequest, IMG2IMG_FLAGS, IMG2IMG_HELP)


def add_mask_options(parser: argparse.ArgumentParser, only_masked: bool = True) -> None:
    """``--mask-blur`` and ``--fill``; with ``only_masked``, also ``--only-masked`` and ``--padding``."""
    from gouache.pipelines.request import InpaintRequest

    names = ("mask_blur", "inpaint_full_res", "inpaint_full_res_padding") if only_masked else ("mask_blur",)
    add_dataclass_options(parser, InpaintRequest, {k: MASK_FLAGS[k] for k in names}, MASK_HELP)
    parser.add_argument("--fill", dest="inpainting_fill", choices=MASKED_CONTENT, default=None,
                        help="what the masked area starts from: original (default), fill (the colours around it), "
                             "noise (latent noise), nothing (latent zeros)")


def given_options(args: argparse.Namespace, *tables: dict[str, str]) -> dict:
    """The request fields whose flags were given on the command line (``--fill`` by its name)."""
    given = {name: getattr(args, name) for table in tables for name in table if getattr(args, name, None) is not None}
    if "inpainting_fill" in given:
        given["inpainting_fill"] = MASKED_CONTENT[given["inpainting_fill"]]
    if "hr_scale" in given:
        given["enable_hr"] = True
    return given


def add_output_options(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--out", default=default, help=f"output folder (default: {default})")
    parser.add_argument("--grid", action="store_true", help="also save all images of the run as one grid")


def run_request(args: argparse.Namespace, request, pipeline, desc: str, check_model=None) -> int:
    """Add ``--lora`` tags to the prompt, validate, check the output folder, load the model, run
    ``pipeline(model, request, progress)`` and save every image (never over an existing file); prints the paths. Nothing heavy happens
    before the request and the folder are known to be good."""
    from gouache.pipelines.model import load_model

    request = with_control_options(with_lora_options(request, args), args)
    request.validate()  # before loading anything
    speed = speed_settings(args)
    out = writable_folder(args.out)
    model = load_model(request.model, speed=speed)
    use_lora_files(model, args)
    if check_model is not None:
        check_model(model)
    results = pipeline(model, request, progress_bar(desc))
    save_results(results, out, args.grid)
    return 0


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
