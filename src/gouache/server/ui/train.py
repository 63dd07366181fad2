"""The Train tab: a LoRA on a prepared dataset (``gouache prepare``), one run at a time, watched
while it trains: step and loss, the loss curve, the latest validation grid, the log.

The dataset is picked by name from the folders directly under the server's datasets folder
(``gouache serve --datasets``, by default ``$GOUACHE_HOME/datasets``): a request names no path.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from gouache.errors import GouacheError

REFRESH_SECONDS = 2.0


def lora_config(server, v: dict):
    """The :class:`~gouache.train.lora.LoraTrainConfig` the tab's values ask for; the run folder is
    ``<out>/train/<name>`` (starting again with the same name resumes it). The dataset and the
    base model are names from the server's lists, never paths."""
    from gouache.server.catalog import find_checkpoint
    from gouache.train.lora import LoraTrainConfig

    name = (v["name"] or "").strip()
    if not name or any(ch in name for ch in "/\\") or name.startswith("."):
        raise gr.Error(f"Name {name!r}: give a file name without slashes, e.g. my-style")
    dataset = dataset_folder(server.config.datasets_dir, v["dataset"])
    base = find_checkpoint(v["base"], "Base model").name if v["base"] else None
    prompts = [p.strip() for p in (v["validation_prompts"] or "").splitlines() if p.strip()]
    return LoraTrainConfig(
        dataset=dataset, out_dir=server.config.out_dir / "train" / name, base=base, name=name, rank=int(v["rank"]),
        steps=int(v["steps"]), batch_size=int(v["batch_size"]), lr=float(v["lr"]),
        warmup_steps=min(50, int(v["steps"]) // 10), resolution=int(v["resolution"]) or None,
        validation_prompts=prompts, validation_every=int(v["validation_every"]) if prompts else 0,
        validation_steps=int(v["validation_steps"]), checkpoint_minutes=5.0)


def list_datasets(folder: Path) -> list[str]:
    """The datasets the tab offers: names of the folders directly in ``folder``, not hidden ones,
    nor links to folders elsewhere.

    >>> list_datasets(Path("/nowhere"))
    []
    """
    folder = folder.resolve()
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and _folder_in(p, folder))


def _folder_in(path: Path, folder: Path) -> bool:
    try:
        return path.is_dir() and path.resolve().parent == folder
    except (OSError, RuntimeError):  # a loop of links
        return False


def dataset_folder(folder: Path, name) -> Path:
    """The dataset folder of a name :func:`list_datasets` gives; any other name (``../x``, a path)
    is a :class:`gr.Error` that lists the names."""
    names = list_datasets(folder)
    if not isinstance(name, str) or name not in names:
        listed = ", ".join(names) if names else "none yet: `gouache prepare` one into the datasets folder"
        raise gr.Error(f"Dataset {str(name)[:100]!r}: pick a prepared dataset ({listed}).")
    return folder.resolve() / name


def lora_tab(server) -> None:
    from gouache.models.registry import list_models

    runner = server.training
    datasets, out = server.config.datasets_dir, server.config.out_dir
    c: dict = {}
    with gr.Row():
        with gr.Column():
            with gr.Row():
                c["dataset"] = gr.Dropdown(list_datasets(datasets), value=None, label="Dataset", scale=4,
                                           info="prepared with `gouache prepare` into the server's datasets folder "
                                                "(gouache serve --datasets)")
                relist = gr.Button("↻", elem_classes="gouache-tool-button", scale=0)
            with gr.Row():
                c["name"] = gr.Textbox(label="LoRA name (<lora:NAME:1>)", value="my-lora")
                c["base"] = gr.Dropdown([e.name for e in list_models()], value=server.generator.checkpoint,
                                        label="Base model")
            with gr.Row():
                c["steps"] = gr.Number(1000, precision=0, label="Steps")
                c["batch_size"] = gr.Number(4, precision=0, label="Batch size")
                c["rank"] = gr.Number(8, precision=0, label="Rank")
                c["lr"] = gr.Number(1e-4, label="Learning rate")
                c["resolution"] = gr.Number(0, precision=0, label="Resolution (0: the model's)")
            c["validation_prompts"] = gr.Textbox(label="Validation prompts (one a line)", lines=3)
            with gr.Row():
                c["validation_every"] = gr.Number(100, precision=0, label="Validate every (steps)")
                c["validation_steps"] = gr.Number(20, precision=0, label="Sampling steps of validation")
            with gr.Row():
                start = gr.Button("Train", variant="primary")
                stop = gr.Button("Stop", variant="stop")
        with gr.Column():
            summary = gr.Markdown(runner.status().summary(), elem_id="gouache-train-status")
            curve = gr.LinePlot(x="step", y="loss", label="Loss", height=240)
            validation = gr.Image(label="Latest validation images", type="filepath", interactive=False)
            plot = gr.Image(label="loss.png", type="filepath", interactive=False)
            log = gr.Textbox(label="Log", lines=6, max_lines=12, interactive=False, autoscroll=True)
    timer = gr.Timer(REFRESH_SECONDS, active=False)
    watched = [summary, curve, validation, plot, log, timer]

    def datasets_listed():
        return gr.Dropdown(choices=list_datasets(datasets))

    def on_start(data: dict):
        try:
            runner.start(lora_config(server, {k: data[v] for k, v in c.items()}))
        except GouacheError as err:
            raise gr.Error(str(err)) from None
        return show(runner, out)

    def watch():
        return show(runner, out)

    relist.click(datasets_listed, None, c["dataset"], queue=False)
    start.click(on_start, set(c.values()), watched)
    stop.click(runner.stop, None, None, queue=False)
    timer.tick(watch, None, watched, queue=False)


def show(runner, out_dir: Path | None = None) -> tuple:
    """The watched outputs for the runner's status; the timer stays on while the run goes. With
    ``out_dir``, images shown must be files under it (links resolved)."""
    from gouache.server.ui.files import inside

    s = runner.status()
    losses = pd.DataFrame(s.losses or [], columns=["step", "loss", "lr"])[["step", "loss"]]
    images = [p if p is None or out_dir is None else inside(p, out_dir.resolve()) for p in (s.validation, s.loss_plot)]
    return (s.summary(), losses, *(str(p) if p else None for p in images), "\n".join(s.log),
            gr.Timer(active=s.running))
