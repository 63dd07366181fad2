"""``gouache xyz`` (AUTOMATIC1111's X/Y/Z plot) and ``gouache prompt-matrix``: every option of
``gouache generate``, plus the axes or the matrix's options; the grid(s) and every image are saved."""

from __future__ import annotations

import argparse

from gouache.cli.common import (HIRES_FLAGS, REQUEST_FLAGS, add_field_options, add_hires_options, add_request_options,
                                model_device, progress_bar, speed_settings, use_lora_files, with_control_options,
                                with_ip_adapter_options, with_lora_options)
from gouache.cli.generate import REFINER_FLAGS, build_request
from gouache.files import writable_folder

AXIS_HELP = ('"LABEL: VALUES", e.g. "Sampler: Euler, DPM++ 2M" or "CFG scale: 3-9 (+2)"; values are comma-separated '
             '(CSV-quoted when they hold a comma), numbers may be ranges 1-5, 1-10 (+2), 1-10 [4] (4 values); '
             'labels: the infotext keys (Steps, Seed, Hires steps, ...), Prompt S/R, Prompt order, Size, '
             'Checkpoint name, LoRA weight, ControlNet weight; see docs/xyz.md')


def _generate_options(p: argparse.ArgumentParser) -> None:
    """What ``gouache generate`` takes, with an output folder (the grids are always saved)."""
    p.add_argument("prompt", nargs="?", help="what to draw (A1111 prompt syntax)")
    add_request_options(p)
    add_hires_options(p)
    add_field_options(p, "refiner")
    add_field_options(p, "guidance")
    p.add_argument("--from", dest="from_image", metavar="IMAGE",
                   help="take every parameter from a PNG's metadata (flags given here override it)")


def register(sub) -> None:
    flags = {**REQUEST_FLAGS, **HIRES_FLAGS, **REFINER_FLAGS}
    p = sub.add_parser("xyz", help="X/Y/Z plot: a grid over up to three settings",
                       description="Generate one image per combination of the axes' values (AUTOMATIC1111's X/Y/Z "
                                   "plot) and a labelled grid per Z value; at most 400 images.")
    _generate_options(p)
    group = p.add_argument_group("axes")
    group.add_argument("--x", required=True, metavar="AXIS", help="the columns: " + AXIS_HELP)
    group.add_argument("--y", metavar="AXIS", help="the rows (default: one row)")
    group.add_argument("--z", metavar="AXIS", help="one grid per value (default: one grid)")
    group.add_argument("--vary-seeds", default="", metavar="AXES",
                       help="add the cell's index along these axes to its seed, e.g. x or xy (default: one seed)")
    group.add_argument("--keep-random-seeds", action="store_true",
                       help="--seed -1 picks a new seed for every cell (default: one for the whole plot)")
    p.add_argument("--out", default="outputs/xyz", help="output folder (default: outputs/xyz)")
    p.set_defaults(handler=run_xyz, field_flags=flags)

    m = sub.add_parser("prompt-matrix", help="a grid of every combination of a prompt's |-separated parts",
                       description="Split the prompt at | into a fixed first part and optional ones, generate one "
                                   "image per combination of the optional parts (AUTOMATIC1111's prompt matrix) and "
                                   "a grid that shows which parts each image has; at most 8 optional parts.")
    _generate_options(m)
    group = m.add_argument_group("matrix")
    group.add_argument("--put-at-start", action="store_true", help="put the optional parts before the fixed one")
    group.add_argument("--different-seeds", action="store_true", help="image c uses seed + c (default: one seed)")
    group.add_argument("--negative-matrix", action="store_true", help="split the negative prompt instead")
    group.add_argument("--delimiter", choices=("comma", "space"), default="comma",
                       help="what joins the parts (default: comma)")
    m.add_argument("--out", default="outputs/prompt-matrix", help="output folder (default: outputs/prompt-matrix)")
    m.set_defaults(handler=run_matrix, field_flags=flags)


def _request(args):
    """The base request, as ``gouache generate`` builds it, with --lora, --control and --ip-adapter."""
    return with_ip_adapter_options(with_control_options(with_lora_options(build_request(args), args), args), args)


def run_xyz(args) -> int:
    from gouache.pipelines.xyz import plan_xyz

    plot = plan_xyz(_request(args), args.x, args.y, args.z, args.vary_seeds, args.keep_random_seeds)
    return _run(args, plot, "xyz_grid")


def run_matrix(args) -> int:
    from gouache.pipelines.xyz import plan_prompt_matrix

    plot = plan_prompt_matrix(_request(args), args.put_at_start, args.different_seeds,
                              "negative" if args.negative_matrix else "positive", args.delimiter)
    return _run(args, plot, "prompt_matrix")


def _run(args, plot, prefix: str) -> int:
    """Every cell checked (by the plan), then the folder, then the model; the grids and images saved."""
    from gouache.pipelines.model import load_model
    from gouache.pipelines.xyz import run_plot, save_plot, txt2img_cells

    speed = speed_settings(args)
    device = model_device(args, speed)
    out = writable_folder(args.out)
    model = load_model(plot.cells[0].model if plot.cells[0].model else None, device=device, speed=speed)
    use_lora_files(model, args)
    result = run_plot(plot, txt2img_cells(model, lambda name: load_model(name, device=device, speed=speed)),
                      progress_bar(prefix))
    for path in save_plot(result, out, prefix):
        print(path)
    return 0
