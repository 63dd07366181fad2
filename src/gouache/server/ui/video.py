"""The Video tab: a prompt (keyframes travel: ``0: ..., 8: ...``), a motion adapter from the server's
``$GOUACHE_HOME/motion``, the clip's length and speed, and a player. The clip runs on the server's
worker like every generation (FreeInit's passes, when asked, count against the server's steps), is saved under ``<out>/txt2vid`` with its sidecar ``.txt``, and plays
in the page: a GIF or WebP in an ``<img>``, an MP4 in a ``<video>``."""

from __future__ import annotations

from concurrent.futures import wait

import gradio as gr

from gouache.errors import GouacheError


def video_tab(server, model) -> dict:
    from gouache.adapters.motion import list_motions
    from gouache.pipelines.video import MAX_FRAMES
    from gouache.sampling.freeinit import MAX_ITERATIONS

    c: dict = {}
    with gr.Row():
        with gr.Column(scale=3):
            c["prompt"] = gr.Textbox(label="Prompt", lines=3, elem_id="video-prompt",
                                     placeholder="a red circle on a blue background, or keyframes: 0: ..., 8: ...")
            c["negative_prompt"] = gr.Textbox(label="Negative prompt", lines=1, elem_id="video-negative")
            with gr.Row():
                motions = list_motions()
                c["motion"] = gr.Dropdown(motions, value=motions[0] if motions else None, label="Motion module",
                                          allow_custom_value=False, elem_id="video-motion")
                c["motion_scale"] = gr.Slider(0, 2, value=1, step=0.05, label="Motion scale", elem_id="video-motion-scale")
            with gr.Row():
                c["frames"] = gr.Number(16, precision=0, label=f"Frames (1-{MAX_FRAMES})",
                                        elem_id="video-frames")
                c["fps"] = gr.Number(8, minimum=1, maximum=60, label="FPS", elem_id="video-fps")
                c["video_format"] = gr.Radio(["gif", "webp", "mp4"], value="gif", label="Format", elem_id="video-format")
            with gr.Row():
                c["steps"] = gr.Number(20, precision=0, minimum=1, maximum=150, label="Sampling steps",
                                       elem_id="video-steps")
                c["seed"] = gr.Number(-1, precision=0, label="Seed", elem_id="video-seed")
                c["closed_loop"] = gr.Checkbox(False, label="Closed loop", elem_id="video-loop")
            with gr.Row():
                c["context_length"] = gr.Number(16, precision=0, minimum=2, maximum=64, label="Context length",
                                                elem_id="video-context-length")
                c["context_overlap"] = gr.Number(4, precision=0, minimum=0, maximum=63, label="Context overlap",
                                                 elem_id="video-context-overlap")
                c["context_schedule"] = gr.Radio(["uniform", "static"], value="uniform", label="Context schedule",
                                                 elem_id="video-context-schedule")
                c["free_init"] = gr.Number(0, precision=0, minimum=0, maximum=MAX_ITERATIONS, elem_id="video-free-init",
                                           label=f"FreeInit passes (0: off; 2-{MAX_ITERATIONS}, each a whole sampling)")
            button = gr.Button("Generate", variant="primary", elem_id="video-generate")
        with gr.Column(scale=2):
            out = {"progress": gr.Markdown(elem_id="video-progress"),
                   "player": gr.Image(label="Video", type="filepath", interactive=False, elem_id="video-player"),
                   "movie": gr.Video(label="Video", visible=False, interactive=False, elem_id="video-movie"),
                   "info": gr.Textbox(label="Generation parameters", lines=3, interactive=False, elem_id="video-info")}
    _wire(server, c, model, button, out)
    return c


def _wire(server, c: dict, model, button, out: dict) -> None:
    from gouache.server.ui.generate import _progress

    components = {**c, "model": model}

    def on_generate(data: dict):
        from gouache.pipelines.video import VideoRequest
        from gouache.server.video import _check_work

        values = {name: data[comp] for name, comp in components.items()}
        trackers = []
        try:
            request = VideoRequest(
                values["prompt"] or "", negative_prompt=values["negative_prompt"] or "", model=values["model"] or None,
                motion=values["motion"] or None, motion_scale=float(values["motion_scale"]),
                frames=int(values["frames"] or 0), fps=float(values["fps"] or 0), steps=int(values["steps"] or 0),
                seed=int(values["seed"] if values["seed"] is not None else -1), video_format=values["video_format"],
                closed_loop=bool(values["closed_loop"]), context_length=int(values["context_length"] or 0),
                context_overlap=int(values["context_overlap"] or 0),
                context_schedule=values["context_schedule"] or "uniform", free_init=int(values["free_init"] or 0))
            request.validate()
            _check_work(request, server.config)

            def work(tracker):
                trackers.append(tracker)
                return _render(server, request, tracker)

            future = server.queue.submit("txt2img", work)
        except GouacheError as err:
            raise gr.Error(str(err)) from None
        while not wait([future], timeout=0.4).done:
            text, _ = _progress(server, trackers[0] if trackers else None)
            yield text, gr.update(), gr.update(), gr.update()
        try:
            path, infotext = future.result()
        except GouacheError as err:
            raise gr.Error(str(err)) from None
        if path is None:
            yield "", gr.update(), gr.update(), "Interrupted."
            return
        movie = path.suffix == ".mp4"
        yield ("", gr.update(value=None if movie else str(path), visible=not movie),
               gr.update(value=str(path) if movie else None, visible=movie), infotext)

    outputs = [out["progress"], out["player"], out["movie"], out["info"]]
    button.click(on_generate, set(components.values()), outputs, concurrency_limit=None)


def _render(server, request, tracker):
    """The clip on the worker, saved under ``<out>/txt2vid``: ``(path, infotext)``, or ``(None, "")``
    when interrupted."""
    from gouache.metadata.png import next_image_path
    from gouache.pipelines.video import txt2vid
    from gouache.server.jobs import Interrupted
    from gouache.server.video import _check_work

    try:
        tracker.check()
        model = server.generator.model_for(request.model)
        _check_work(request, server.config, model)
        video = txt2vid(model, request, tracker.progress, tracker.show, paths=False)[0]
    except Interrupted:
        return None, ""
    suffix = "." + request.video_format
    path = next_image_path(server.config.out_dir / "txt2vid", video.seed, "txt").with_suffix(suffix)
    return video.save(path), video.infotext
