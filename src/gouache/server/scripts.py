"""AUTOMATIC1111's selectable scripts over the API: ``script_name: "x/y/z plot"`` and
``"prompt matrix"`` in a txt2img or img2img body, with ``script_args`` as A1111's UI sends them.

X/Y/Z plot's ``script_args`` are its ``run`` arguments (A1111 1.10, ``scripts/xyz_grid.py``):
``[x_type, x_values, x_values_dropdown, y_type, y_values, y_values_dropdown, z_type, z_values,
z_values_dropdown, draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds,
vary_seeds_x, vary_seeds_y, vary_seeds_z, margin_size, csv_mode]`` (before 1.7 there were no
``vary_seeds_*``: 15 arguments, read as such). An axis type is an index into A1111's axis list of
that tab (:data:`gouache.pipelines.axes.A1111_TXT2IMG`) or a label; values are the text, or the
dropdown's list when one is sent. Missing trailing arguments take A1111's UI defaults.
Prompt matrix's are ``[put_at_start, different_seeds, prompt_type, variations_delimiter, margin_size]``.

The response carries the grid(s) first (several Z values: one grid of all, then each Z value's
with ``include_sub_grids``), then every image with ``include_lone_images`` (a prompt matrix
always sends its images), as A1111 does; each image is an ordinary request's, on the one worker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from gouache.errors import InvalidArgument
from gouache.pipelines.request import GenerationRequest

XYZ, MATRIX = "x/y/z plot", "prompt matrix"  # A1111's titles, lower-cased as its /scripts lists them
SCRIPTS = (MATRIX, XYZ)
XYZ_DEFAULTS = [0, "", [], 0, "", [], 0, "", [], True, False, False, False, False, False, False, 0, False]
MATRIX_DEFAULTS = [False, False, "positive", "comma", 0]


def check_script_name(name: str) -> str:
    """The script a body's ``script_name`` names (any case); an unknown one lists gouache's (422)."""
    key = name.strip().lower() if isinstance(name, str) else ""
    if key not in SCRIPTS:
        raise InvalidArgument(f"`script_name` {str(name)[:60]!r} is not a script gouache has; one of: "
                              f"{', '.join(SCRIPTS)}")
    return key


@dataclass
class ScriptJob:
    """A checked script request: its plot and what the response sends."""

    plot: object  # gouache.pipelines.xyz.Plot
    lone_images: bool
    sub_grids: bool


def plan_script(body, request: GenerationRequest, limits, img2img: bool) -> ScriptJob:
    """The plot a body's script asks for, every cell checked against the server's limits."""
    from gouache.pipelines.xyz import plan_prompt_matrix
    from gouache.server.schemas import check_limits

    name = check_script_name(body.script_name)
    args = body.script_args
    if not isinstance(args, list):
        raise InvalidArgument("`script_args` must be a list, as A1111 sends it")
    if name == XYZ:
        job = _xyz(args, request, img2img)
    else:
        put_at_start, different_seeds, prompt_type, delimiter, _margin = _filled(args, MATRIX_DEFAULTS, name)
        plot = plan_prompt_matrix(request, _flag(put_at_start, 0), _flag(different_seeds, 1), prompt_type, delimiter)
        job = ScriptJob(plot, True, False)
    from gouache.server.catalog import find_checkpoint

    for k, cell in enumerate(job.plot.cells):
        if cell.model is not None:  # the Checkpoint name axis: a listed name, never a path
            job.plot.cells[k] = cell = replace(cell, model=find_checkpoint(cell.model).name)
        check_limits(cell, limits)
    _check_grid_pixels(job.plot, limits)
    return job


def _filled(args: list, defaults: list, name: str) -> list:
    if len(args) > len(defaults):
        raise InvalidArgument(f"`script_args` has {len(args)} values; {name} takes at most {len(defaults)}")
    return list(args) + defaults[len(args):]


def _flag(value, index: int) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"`script_args[{index}]` must be true or false, got {str(value)[:40]!r}")
    return value


def _xyz(args: list, request: GenerationRequest, img2img: bool) -> ScriptJob:
    from gouache.pipelines.axes import a1111_axis
    from gouache.pipelines.xyz import PlotAxis, plan_xyz

    if len(args) == 15:  # A1111 before 1.7: no vary_seeds_x/y/z
        args = args[:13] + [False, False, False] + args[13:]
    a = _filled(args, XYZ_DEFAULTS, XYZ)
    axes = []
    for k, name in enumerate("xyz"):
        kind, text, dropdown = a[3 * k:3 * k + 3]
        axis = a1111_axis(kind, img2img)
        if dropdown and not a[17]:  # A1111 reads the dropdown unless csv_mode
            if not isinstance(dropdown, list) or not all(isinstance(v, str) for v in dropdown):
                raise InvalidArgument(f"`script_args[{3 * k + 2}]` ({name}_values_dropdown) must be a list of text")
            text = _csv(dropdown)
        if not isinstance(text, str):
            raise InvalidArgument(f"`script_args[{3 * k + 1}]` ({name}_values) must be text, e.g. \"1, 2, 3\"")
        axes.append(None if axis.is_nothing else PlotAxis.of((axis.label, text)))
    draw_legend, lone, sub, no_fixed = (_flag(a[i], i) for i in (9, 10, 11, 12))
    vary = "".join(name for name, i in zip("xyz", (13, 14, 15)) if _flag(a[i], i))
    if axes[0] is None and axes[1] is None and axes[2] is None:
        raise InvalidArgument("the X/Y/Z plot has no axis: set x_type (script_args[0]) and x_values")
    plot = plan_xyz(request, *axes, vary_seeds=vary, keep_random_seeds=no_fixed)
    if not draw_legend:
        plot = replace(plot, top=[], left=[], titles=[""] * len(plot.titles))
    return ScriptJob(plot, lone, sub)


def _csv(values: list[str]) -> str:
    import csv
    import io

    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue().strip()


def _check_grid_pixels(plot, limits) -> None:
    """The grid is one image: its cells' pixels within the server's pixels per job."""
    sizes = [(c.width, c.height) for c in plot.cells]
    if all(w and h for w, h in sizes):
        pixels = sum(w * h for w, h in sizes)
        if pixels > limits.max_job_pixels:
            raise InvalidArgument(f"the plot's {len(sizes)} images are {pixels} pixels, over this server's limit of "
                                  f"{limits.max_job_pixels} per job (gouache serve --max-job-pixels)")


def run_script(generator, job: ScriptJob, request: GenerationRequest, parameters: dict, save: bool, send: bool,
               tracker) -> dict:
    """Run a script's plot on the worker and answer as A1111 does: grids first, then the images."""
    from gouache.pipelines.xyz import run_plot
    from gouache.server.generator import _info, _png_base64
    from gouache.server.jobs import Interrupted

    def run_one(req, progress):
        model = generator.model_for(req.model)
        generator._check_sized(req, model)
        return generator._run(model, req, tracker, progress)

    try:
        tracker.check()
        result = run_plot(job.plot, run_one, tracker.progress)
    except Interrupted:
        result = None
    if result is None:
        info = _info(generator.loaded, request, [], tracker, grid=False)
        return {"images": [], "parameters": parameters, "info": json.dumps({**info, "interrupted": True})}
    grids = ([result.combined] + (result.grids if job.sub_grids else [])) if result.combined else result.grids
    lone = result.images if job.lone_images else []
    if save:
        _save(generator, result, type(request) is GenerationRequest)
    images = [(g.image, g.infotext) for g in grids] + [(r.image, r.infotext) for r in lone]
    info = _info(generator.loaded, request, result.images, tracker, grid=False)
    info.update(index_of_first_image=len(grids), infotexts=[text for _, text in images], interrupted=False)
    return {"images": [_png_base64(image, text) for image, text in images] if send else [],
            "parameters": parameters, "info": json.dumps(info)}


def _save(generator, result, txt2img: bool) -> None:
    """``save_images``: the grid(s) and the images under ``<out>/txt2img-grids`` (or ``img2img-grids``)."""
    from gouache.pipelines.xyz import save_plot

    mode = "txt2img" if txt2img else "img2img"
    save_plot(result, generator.config.out_dir / f"{mode}-grids")


def render_plot(generator, plot, tracker, mode: str = "txt2img") -> list:
    """The web UI's X/Y/Z plot job: every cell on the worker, the grid(s) and images saved under
    ``<out>/<mode>-grids``; ``(path, infotext)`` of each, grids first (nothing when interrupted)."""
    from gouache.pipelines.xyz import run_plot, save_plot
    from gouache.server.jobs import Interrupted

    def run_one(req, progress):
        model = generator.model_for(req.model)
        generator._check_sized(req, model)
        return generator._run(model, req, tracker, progress)

    try:
        tracker.check()
        result = run_plot(plot, run_one, tracker.progress)
    except Interrupted:
        return []
    grids = ([result.combined] if result.combined else []) + result.grids
    texts = [g.infotext for g in grids] + [r.infotext for r in result.images]
    return list(zip(save_plot(result, generator.config.out_dir / f"{mode}-grids"), texts))
