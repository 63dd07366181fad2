"""The Train tab: a LoRA on a prepared dataset (``gouache prepare``), one run at a time, watched
while it trains: step and loss, the loss curve, the latest validation grid, the log."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from gouache.errors import GouacheError

REFRESH_SECONDS = 2.0


def lora_config(server, v: dict):
    """The :class:`~gouache.train.lora.LoraTrainConfig` the tab's values ask for; the run folder is
    ``<out>/train/<name>`` (starting again with the same name resumes it)."""
    from gouache.train.lora import LoraTrainConfig

    name = (v["name"] or "").strip()
    if not name or any(ch in name for ch in "/\\") or name.startswith("."):
        raise gr.Error(f"Name {name!r}: give a file name without slashes, e.g. my-style")
    prompts = [p.strip() for p in (v["validation_prompts"] or "").splitlines() if p.strip()]
    return LoraTrainConfig(
        dataset=Path((v["dataset"] or "").strip()).expanduser(), out_dir=server.config.out_dir / "train" / name,
        base=v["base"] or None, name=name, rank=int(v["rank"]), steps=int(v["steps"]), batch_size=int(v["batch_size"]),
        lr=float(v["lr"]), warmup_steps=min(50, int(v["steps"]) // 10), resolution=int(v["resolution"]) or None,
        validation_prompts=prompts, validation_every=int(v["validation_every"]) if prompts else 0,
        validation_steps=int(v["validation_steps"]), checkpoint_minutes=5.0)


def lora_tab(server) -> None:
    from gouache.models.registry import list_models

    runner = server.training
    c: dict = {}
    with gr.Row():
        with gr.Column():
            c["dataset"] = gr.Textbox(label="Dataset folder (prepared with `gouache prepare`, on the server)")
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

    def on_start(data: dict):
        try:
            runner.start(lora_config(server, {k: data[v] for k, v in c.items()}))
        except GouacheError as err:
            raise gr.Error(str(err)) from None
        return show(runner)

    start.click(on_start, set(c.values()), watched)
    stop.click(runner.stop, None, None, queue=False)
    timer.tick(lambda: show(runner), None, watched, queue=False)


def show(runner) -> tuple:
    """The watched outputs for the runner's status; the timer stays on while the run goes."""
    s = runner.status()
    losses = pd.DataFrame(s.losses or [], columns=["step", "loss", "lr"])[["step", "loss"]]
    return (s.summary(), losses, str(s.validation) if s.validation else None,
            str(s.loss_plot) if s.loss_plot else None, "\n".join(s.log), gr.Timer(active=s.running))
