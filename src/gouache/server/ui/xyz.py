"""The txt2img tab's "X/Y/Z plot" section: up to three axes (a type and its values, A1111's syntax:
:mod:`gouache.pipelines.axes`) and a "Generate plot" button that runs every cell on the server's
worker, like the tab's Generate, and shows the grid(s), then the images, saved under
``<out>/txt2img-grids``."""

from __future__ import annotations

from concurrent.futures import wait

import gradio as gr

from gouache.errors import GouacheError

AXES = ("x", "y", "z")


def controls(tab: str) -> tuple[dict, gr.Button]:
    """The section's controls (``xyz_x_type``, ``xyz_x_values``, ...) and its button."""
    from gouache.pipelines.axes import axes

    labels = list(axes())
    c: dict = {}
    with gr.Accordion("X/Y/Z plot", open=False, elem_id=f"{tab}-xyz"):
        for name, default in zip(AXES, ("Seed", "Nothing", "Nothing")):
            with gr.Row():
                c[f"xyz_{name}_type"] = gr.Dropdown(labels, value=default, label=f"{name.upper()} type", scale=1,
                                                    elem_id=f"{tab}-xyz-{name}-type")
                c[f"xyz_{name}_values"] = gr.Textbox(label=f"{name.upper()} values", scale=3,
                                                     placeholder="e.g. 1-5, or Euler, DPM++ 2M",
                                                     elem_id=f"{tab}-xyz-{name}-values")
        c["xyz_legend"] = gr.Checkbox(True, label="Draw legend", elem_id=f"{tab}-xyz-legend")
        button = gr.Button("Generate plot", variant="primary", elem_id=f"{tab}-xyz-generate")
    return c, button


def plan(values: dict, base):
    """The plot the section's values ask for over the tab's request ``base``."""
    from dataclasses import replace

    from gouache.pipelines.xyz import PlotAxis, plan_xyz

    given = []
    for name in AXES:
        label, text = values[f"xyz_{name}_type"], values[f"xyz_{name}_values"] or ""
        given.append(None if not label or label == "Nothing" else PlotAxis.of((label, text)))
    if given[0] is None:
        raise gr.Error("Pick an X type and give its values, e.g. Sampler: Euler, DPM++ 2M.")
    plot = plan_xyz(base, *given)
    return plot if values["xyz_legend"] else replace(plot, top=[], left=[], titles=[""] * len(plot.titles))


def wire(server, controls: dict, model, button: gr.Button, make) -> None:
    """Generate plot → ``make(values)`` (the tab's request) → the plot, queued on the worker."""
    from gouache.server.ui.generate import _progress

    inputs = {name: c for name, c in controls.items()
              if name not in ("progress", "preview", "gallery", "info")}
    components = {**inputs, "model": model}

    def on_plot(data: dict):
        from gouache.server.schemas import check_limits
        from gouache.server.scripts import render_plot

        values = {name: data[c] for name, c in components.items()}
        trackers = []
        try:
            plot = plan(values, make(values))
            for cell in plot.cells:
                check_limits(cell, server.config)

            def work(tracker):
                trackers.append(tracker)
                return render_plot(server.generator, plot, tracker)

            future = server.queue.submit("txt2img", work)
        except GouacheError as err:
            raise gr.Error(str(err)) from None
        while not wait([future], timeout=0.4).done:
            yield *_progress(server, trackers[0] if trackers else None), gr.update(), gr.update()
        try:
            saved = future.result()
        except GouacheError as err:
            raise gr.Error(str(err)) from None
        info = saved[0][1] if saved else "Interrupted."
        yield "", gr.update(value=None, visible=False), gr.update(value=[str(p) for p, _ in saved]), info

    outputs = [controls["progress"], controls["preview"], controls["gallery"], controls["info"]]
    button.click(on_plot, set(components.values()), outputs, concurrency_limit=None)
