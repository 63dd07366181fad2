"""X/Y/Z plot and prompt matrix (AUTOMATIC1111's ``scripts/xyz_grid.py`` and ``prompt_matrix.py``).

A plot is a list of ordinary requests, one per cell, each the base request with one value of each
axis applied (:class:`gouache.pipelines.axes.Axis`), and the layout of the grid(s) they make.
:func:`run_plot` runs every cell with the caller's ``run_one(request, progress)`` (txt2img or
img2img, the one generation path) and draws a labelled grid per Z value, whose infotext is its
first image's with the plot's keys (``Script``, ``X Type``, ``X Values``, ...), as A1111 writes it.

>>> plot = plan_xyz(GenerationRequest("a red circle", seed=1, steps=8), "Sampler: Euler, DPM++ 2M",
...                 "CFG scale: 3-9 (+3)")
>>> len(plot.cells), plot.cells[4].sampler, plot.cells[4].cfg_scale
(6, 'DPM++ 2M', 6.0)
>>> result = run_plot(plot, lambda req, progress: txt2img(model, req, progress))   # doctest: +SKIP
>>> result.grids[0].save("grid.png")                                                # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from PIL import Image

from gouache.errors import InvalidArgument
from gouache.metadata.infotext import format_infotext, ordered
from gouache.pipelines.axes import Axis, axis_values, find_axis, fixed_seeds, parse_axis
from gouache.pipelines.plot_grid import Label, annotated_grid, side_by_side
from gouache.pipelines.request import GeneratedImage, GenerationRequest

MAX_IMAGES = 400  # images one plot makes (cells × batch size × batch count)
MAX_MATRIX_PARTS = 8  # optional parts of a prompt matrix: 2^8 = 256 images
XYZ_TITLE, MATRIX_TITLE = "X/Y/Z plot", "Prompt matrix"  # A1111's script titles
RunOne = Callable[[GenerationRequest, Callable | None], list[GeneratedImage]]


@dataclass(frozen=True)
class PlotAxis:
    """One axis of a plot: its kind, its values and the text they were given as."""

    axis: Axis
    values: list
    text: str = ""

    @classmethod
    def of(cls, spec) -> "PlotAxis":
        """From ``"LABEL: VALUES"``, ``(label, values_text)``, a PlotAxis, or None (Nothing)."""
        if spec is None:
            return cls(find_axis("Nothing"), [None])
        if isinstance(spec, PlotAxis):
            return spec
        if isinstance(spec, tuple) and len(spec) == 2:
            axis = find_axis(spec[0])
            return cls(axis, axis_values(axis, spec[1]), spec[1])
        axis, values = parse_axis(spec)
        return cls(axis, values, spec.partition(":")[2].strip())

    def labels(self) -> list[list[Label]]:
        return [[Label(self.axis.cell_label(v))] for v in self.values]


@dataclass
class Plot:
    """Cells' requests, ``cols × rows`` to a grid and ``len(titles)`` grids, cell ``i`` at column
    ``i % cols``, row ``i // cols % rows``; ``top``/``left`` are the legends, ``script`` the keys the
    grids' infotexts add."""

    cells: list
    cols: int
    rows: int
    top: list[list[Label]]
    left: list[list[Label]]
    titles: list[str]
    script: list[dict] = field(default_factory=list)  # per grid

    @property
    def per_grid(self) -> int:
        return self.cols * self.rows


@dataclass
class Grid:
    """A plot's grid image with its infotext (its first image's, and the plot's keys)."""

    image: Image.Image
    infotext: str

    def save(self, path, overwrite: bool = False) -> Path:
        from gouache.metadata.png import save_png

        return save_png(self.image, path, self.infotext, overwrite=overwrite)


@dataclass
class PlotResult:
    """``grids``: one per Z value (one for a prompt matrix); ``cells``: each cell's images (its
    request's batch); ``images``: all of them, cell by cell."""

    grids: list[Grid]
    cells: list[list[GeneratedImage]]
    combined: Grid | None = None  # several Z values: their grids side by side (A1111's first image)

    @property
    def images(self) -> list[GeneratedImage]:
        return [image for cell in self.cells for image in cell]


# -- planning -----------------------------------------------------------------------------------------


def plan_xyz(base: GenerationRequest, x, y=None, z=None, vary_seeds: str = "", keep_random_seeds: bool = False
             ) -> Plot:
    """Every cell of an X/Y/Z plot of ``base``: axes as ``"LABEL: VALUES"`` (or :class:`PlotAxis`),
    checked before anything runs (each cell validated). A seed of -1 is picked once for the whole
    plot unless ``keep_random_seeds`` (A1111's "Keep -1 for seeds"); ``vary_seeds`` (``"x"``,
    ``"xy"``, ...) adds the cell's index along those axes to its seed (A1111's "Vary seeds")."""
    axes = [PlotAxis.of(a) for a in (x, y, z)]
    if axes[0].axis.is_nothing and x is not None:
        axes[0] = PlotAxis(axes[0].axis, [None])
    if any(c not in "xyz" for c in vary_seeds or ""):
        raise InvalidArgument(f"`vary_seeds` names the axes whose index moves the seed, e.g. \"xy\"; got {vary_seeds!r}")
    base.validate()
    if not keep_random_seeds:
        base = base.with_seed()
        axes = [replace(a, values=fixed_seeds(a.axis, a.values)) for a in axes]
    nx, ny, nz = (len(a.values) for a in axes)
    _check_count(nx * ny * nz, base)
    cells = []
    for iz, vz in enumerate(axes[2].values):
        for iy, vy in enumerate(axes[1].values):
            for ix, vx in enumerate(axes[0].values):
                req = base
                for plot_axis, value in zip(axes, (vx, vy, vz)):
                    req = plot_axis.axis.apply(req, value, plot_axis.values)
                shift = ("x" in vary_seeds) * ix + ("y" in vary_seeds) * iy * nx + ("z" in vary_seeds) * iz * nx * ny
                if shift and req.seed != -1:
                    req = replace(req, seed=req.seed + shift)
                req.validate()
                cells.append(req)
    titles = [axes[2].axis.cell_label(v) for v in axes[2].values]
    return Plot(cells, nx, ny, axes[0].labels(), axes[1].labels(), titles,
                [_xyz_keys(axes, iz) for iz in range(nz)])


def _check_count(cells: int, base: GenerationRequest) -> None:
    images = cells * base.batch_size * base.n_iter
    if images > MAX_IMAGES:
        raise InvalidArgument(f"the plot makes {images} images ({cells} cells × {base.batch_size * base.n_iter} "
                              f"each), over the limit of {MAX_IMAGES}; give fewer values")


def _xyz_keys(axes: list[PlotAxis], iz: int) -> dict:
    """A1111's keys of an X/Y/Z grid's infotext: Script, X Type, X Values, Fixed X Values, ..."""
    keys = {"Script": XYZ_TITLE}
    for name, a in zip("XYZ", axes):
        if a.axis.is_nothing:
            continue
        keys[f"{name} Type"] = a.axis.label
        keys[f"{name} Values"] = a.text or ", ".join(a.axis.cell_label(v) if a.axis.permutations else str(v)
                                                     for v in a.values)
        if a.axis.random_seeds:
            keys[f"Fixed {name} Values"] = ", ".join(str(v) for v in a.values)
    return keys


PROMPT_TYPES = ("positive", "negative")
DELIMITERS = {"comma": ", ", "space": " "}


def plan_prompt_matrix(base: GenerationRequest, put_at_start: bool = False, different_seeds: bool = False,
                       prompt_type: str = "positive", delimiter: str = "comma") -> Plot:
    """A1111's prompt matrix: the prompt (or negative prompt) split at ``|`` into a fixed first part
    and optional ones; one cell per combination of the optional parts (cell ``c`` has part ``i``
    when bit ``i`` of ``c`` is set), joined by ``delimiter`` (``"comma"`` or ``"space"``), the
    optional parts first with ``put_at_start``; every cell has the same seed unless
    ``different_seeds`` (cell ``c``: seed + c). The first half of the parts label the columns."""
    if prompt_type not in PROMPT_TYPES:
        raise InvalidArgument(f"`prompt_type` must be one of {', '.join(PROMPT_TYPES)}, got {prompt_type!r}")
    if delimiter not in DELIMITERS:
        raise InvalidArgument(f"`delimiter` must be one of {', '.join(DELIMITERS)}, got {delimiter!r}")
    attr = "prompt" if prompt_type == "positive" else "negative_prompt"
    parts = getattr(base, attr).split("|")
    optional = parts[1:]
    if not optional:
        raise InvalidArgument(f"the {'prompt' if attr == 'prompt' else 'negative prompt'} has no optional parts: "
                              "separate them with |, e.g. \"a circle|red|outline style\"")
    if len(optional) > MAX_MATRIX_PARTS:
        raise InvalidArgument(f"{len(optional)} optional parts make {2 ** len(optional)} images; give at most "
                              f"{MAX_MATRIX_PARTS}")
    base.validate()
    base = base.with_seed()
    _check_count(2 ** len(optional), base)
    cells = []
    for c in range(2 ** len(optional)):
        chosen = [text.strip().strip(",") for i, text in enumerate(optional) if c & (1 << i)]
        joined = DELIMITERS[delimiter].join(chosen + [parts[0]] if put_at_start else [parts[0]] + chosen)
        req = replace(base, **{attr: joined}, seed=base.seed + (c if different_seeds else 0))
        req.validate()
        cells.append(req)
    boundary = -(-len(optional) // 2)
    across, down = optional[:boundary], optional[boundary:]
    top = [[Label(text.strip(), bool(c & (1 << i))) for i, text in enumerate(across)] for c in range(2 ** len(across))]
    left = [[Label(text.strip(), bool(r & (1 << i))) for i, text in enumerate(down)] for r in range(2 ** len(down))]
    return Plot(cells, len(top), len(left), top, left, [""], [{}])


# -- running ------------------------------------------------------------------------------------------


def run_plot(plot: Plot, run_one: RunOne, progress: Callable[[int, int], None] | None = None) -> PlotResult:
    """Run every cell with ``run_one(request, progress)`` (the cells that name the same model one
    after another, so a checkpoint axis loads each model once), then draw the grids."""
    order = sorted(range(len(plot.cells)), key=lambda i: str(plot.cells[i].model or ""))
    done: dict[int, list[GeneratedImage]] = {}
    for k, i in enumerate(order):
        def tick(step: int, steps: int, k: int = k) -> None:
            if progress is not None:
                progress(k * steps + step, len(order) * steps)

        done[i] = run_one(plot.cells[i], tick)
        if not done[i]:
            raise InvalidArgument(f"cell {i + 1} of the plot made no image")
    cells = [done[i] for i in range(len(plot.cells))]
    grids = []
    for g, title in enumerate(plot.titles):
        page = cells[g * plot.per_grid:(g + 1) * plot.per_grid]
        image = annotated_grid([cell[0].image for cell in page], plot.cols, plot.top, plot.left, title or None)
        grids.append(Grid(image, _grid_infotext(page[0][0], plot.script[g] if g < len(plot.script) else {})))
    combined = None
    if len(grids) > 1:
        combined = Grid(side_by_side([g.image for g in grids]), grids[0].infotext)
    return PlotResult(grids, cells, combined)


def _grid_infotext(first: GeneratedImage, keys: dict) -> str:
    """A1111's grid infotext: its first image's, with the plot's keys among the extra parameters."""
    return format_infotext(first.request.prompt, first.request.negative_prompt, ordered({**first.params, **keys}))


def save_plot(result: PlotResult, folder, prefix: str = "xyz_grid") -> list[Path]:
    """Save the grid(s) and every image in ``folder``, never over a file; the paths, grids first.
    The images are ``NNNNN-<seed>.png``; a grid is named after its plot's first image,
    ``<prefix>-NNNNN-<seed>.png`` (A1111's ``xyz_grid``, ``prompt_matrix``), and with several Z
    values each Z value's grid adds ``-z1``, ``-z2``, ... (the one without is all of them)."""
    from gouache.metadata.png import next_image_path

    stem = next_image_path(folder, result.cells[0][0].seed).stem  # the first image's name, once saved
    grids = [(result.combined, "")] if result.combined else []
    grids += [(grid, f"-z{k + 1}" if result.combined else "") for k, grid in enumerate(result.grids)]
    paths = [grid.save(Path(folder) / f"{prefix}-{stem}{suffix}.png") for grid, suffix in grids]
    return paths + [image.save(next_image_path(folder, image.seed)) for image in result.images]


def txt2img_cells(model, load: Callable | None = None) -> RunOne:
    """``run_one`` for text-to-image cells on ``model`` (a LoadedModel): a cell that names another
    checkpoint (the Checkpoint name axis) runs on that one, loaded by ``load(name)``
    (:func:`gouache.pipelines.model.load_model`) and kept until a cell names another; a cell with a
    refiner loads it the same way."""
    from gouache.pipelines.txt2img import txt2img

    if load is None:
        from gouache.pipelines.model import load_model as load
    loaded: dict = {}

    def model_of(name):
        if name in (None, model.path, model.name):
            return model
        if name not in loaded:
            loaded.clear()  # one other model at a time: the cells come grouped by model
            loaded[name] = load(name)
        return loaded[name]

    refiners: dict = {}

    def refiner_of(name):
        if name is not None and name not in refiners:
            refiners.clear()
            refiners[name] = load(name)
        return refiners.get(name)

    def run_one(req: GenerationRequest, progress=None) -> list[GeneratedImage]:
        return txt2img(model_of(req.model), req, progress, refiner=refiner_of(req.refiner_checkpoint))

    return run_one
