"""The A1111 AnimateDiff extension's API: ``alwayson_scripts.AnimateDiff.args`` on ``/txt2img`` and ``/img2img``.

sd-webui-animatediff (``docs/how-to-use.md``, "API") takes one dict of arguments: ``enable``,
``model`` (the motion module's file name), ``format`` (a list of ``GIF``/``MP4``/``WEBP``/``PNG``
and ``Frame``), ``video_length``, ``fps``, ``loop_number``, ``closed_loop`` (``N``, ``R-P``, ``R+P``,
``A``), ``batch_size`` (the context window), ``stride``, ``overlap`` (-1: a quarter of the window),
``freeinit_enable`` with ``freeinit_iters``, ``freeinit_filter``, ``freeinit_ds``, ``freeinit_dt``
(FreeInit: :mod:`gouache.sampling.freeinit`; its passes count against ``--max-steps``), and more. The response's ``images`` carry the video, base64, first (with ``Frame``, each frame's PNG
after it), as the extension answers; ``info`` is the usual JSON with the video's infotext.

The motion module is a name from the server's catalogue (``$GOUACHE_HOME/motion``), never a path;
``video_source``/``video_path`` (files on the server) are refused; the clip's work is bounded by
the server's limits (frames × pixels within ``--max-job-pixels``). With ``/img2img`` the init image
starts every frame (gouache's ``init_frames="first"``: the first frame stays the picture).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, fields

from gouache.errors import InvalidArgument
from gouache.pipelines.request import GenerationRequest, Img2ImgRequest

FORMATS = {"GIF": "gif", "MP4": "mp4", "WEBP": "webp", "PNG": "png"}
CLOSED_LOOP = {"N": False, "R-P": True, "R+P": True, "A": True}
# arguments gouache reads; others the extension knows are accepted at their defaults only
KNOWN = {"enable", "model", "format", "video_length", "fps", "loop_number", "closed_loop", "batch_size", "stride",
         "overlap", "request_id", "is_i2i_batch", "freeinit_enable", "freeinit_iters", "freeinit_filter",
         "freeinit_ds", "freeinit_dt"}
DEFAULT_ONLY = {"interp": ("Off",), "interp_x": (10,), "latent_power": (1,), "latent_scale": (32,),
                "last_frame": (None,), "latent_power_last": (1,), "latent_scale_last": (32,),
                "video_source": (None, ""), "video_path": (None, "")}


@dataclass
class VideoJob:
    request: object  # gouache.pipelines.video.VideoRequest
    formats: list[str]  # the video formats to send, first first
    frames: bool  # also send every frame as a PNG ("Frame")


def animatediff_args(body) -> dict | None:
    """The AnimateDiff unit of the body when it is switched on, else None."""
    scripts = body.alwayson_scripts or {}
    unit = next((v for k, v in scripts.items() if k.lower() == "animatediff"), None)
    if unit is None:
        return None
    args = unit.get("args") if isinstance(unit, dict) else None
    if not isinstance(args, list) or not args or not isinstance(args[0], dict):
        raise InvalidArgument("`alwayson_scripts.AnimateDiff.args` must be a list holding one dict of arguments, "
                              "e.g. [{\"enable\": true, \"model\": \"mm_sd_v15_v2\", \"video_length\": 16}]")
    args = args[0]
    return args if args.get("enable", False) is True else None


def video_job(body, request: GenerationRequest, limits) -> VideoJob | None:
    """The clip ``body`` asks for on top of its txt2img/img2img ``request`` (already checked), or None."""
    from gouache.adapters.motion import find_motion
    from gouache.pipelines.video import VideoRequest

    args = animatediff_args(body)
    if args is None:
        return None
    where = "alwayson_scripts.AnimateDiff.args[0]"
    for key, allowed in DEFAULT_ONLY.items():
        if key in args and args[key] not in allowed:
            raise InvalidArgument(f"`{where}.{key}` is not supported by gouache ({args[key]!r}); leave it out"
                                  + (": the server opens no files a request names" if key.startswith("video_") else ""))
    if args.get("stride", 1) != 1:
        raise InvalidArgument(f"`{where}.stride` must be 1 (gouache's context windows are contiguous), got {args['stride']!r}")
    formats, frames = _formats(args.get("format", ["GIF"]), where)
    model = args.get("model")
    if model is not None:
        if not isinstance(model, str):
            raise InvalidArgument(f"`{where}.model` must be a motion module's name, got {model!r}")
        model = _motion_name(model)
        find_motion(model, paths=False)  # a catalogue name, never a path: 404-like one line if unknown
    length = args.get("batch_size", 16)
    overlap = args.get("overlap", -1)
    if isinstance(length, int) and not isinstance(length, bool) and overlap == -1:
        overlap = length // 4
    closed = args.get("closed_loop", "N")
    if closed not in CLOSED_LOOP:
        raise InvalidArgument(f"`{where}.closed_loop` must be one of {', '.join(CLOSED_LOOP)}, got {closed!r}")
    free = _free_init(args, where)
    base = {f.name: getattr(request, f.name) for f in fields(GenerationRequest)}
    if isinstance(request, Img2ImgRequest):
        base.update(init_image=request.init_image, denoising_strength=request.denoising_strength)
    video = VideoRequest(**base, frames=args.get("video_length", 16), fps=args.get("fps", 8),
                         motion=model, context_length=length, context_overlap=overlap,
                         closed_loop=CLOSED_LOOP[closed], video_format=formats[0] if formats else "gif",
                         loop_number=args.get("loop_number", 0), **free)
    if isinstance(video.fps, int) and not isinstance(video.fps, bool):
        video.fps = float(video.fps)
    video.validate()
    _check_work(video, limits)
    return VideoJob(video, formats, frames)


def _free_init(args: dict, where: str) -> dict:
    """The VideoRequest fields of the extension's FreeInit arguments (none when it is off)."""
    enable = args.get("freeinit_enable", False)
    if not isinstance(enable, bool):
        raise InvalidArgument(f"`{where}.freeinit_enable` must be true or false, got {enable!r}")
    if not enable:
        return {}
    return {"free_init": args.get("freeinit_iters", 3), "free_init_filter": args.get("freeinit_filter", "butterworth"),
            "free_init_ds": args.get("freeinit_ds", 0.25), "free_init_dt": args.get("freeinit_dt", 0.25)}


def _motion_name(name: str) -> str:
    """The extension names modules by file (``mm_sd_v15_v2.ckpt``); gouache lists them by stem too."""
    from gouache.adapters.motion import SUFFIXES

    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _formats(value, where: str) -> tuple[list[str], bool]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise InvalidArgument(f"`{where}.format` must be a list such as [\"GIF\"], got {value!r}")
    out, frames = [], False
    for v in items:
        key = v.upper()
        if key == "FRAME":
            frames = True
        elif key == "TXT":
            continue  # the infotext is always in the response
        elif key in FORMATS:
            out.append(FORMATS[key])
        else:
            raise InvalidArgument(f"`{where}.format` has {v!r}; gouache writes {', '.join(FORMATS)} and Frame")
    if not out and not frames:
        out = ["gif"]
    return out, frames


def _check_work(video, limits, model=None) -> None:
    """The server's bounds on the clip: those of an image job, and frames × pixels within the job's
    pixels (the size is the model's when the request leaves it: checked again once it is loaded)."""
    from gouache.server.schemas import check_limits

    check_limits(video, limits)
    passes = max(video.free_init, 1)
    if passes > 1 and video.steps * passes > limits.max_steps:
        raise InvalidArgument(f"FreeInit's {passes} passes of {video.steps} steps are {video.steps * passes} steps, over "
                              f"this server's limit of {limits.max_steps} (gouache serve --max-steps)")
    size = model.native_size if model is not None else None
    w, h = video.width or size, video.height or size
    if w and h and w * h * video.frames > limits.max_job_pixels:
        raise InvalidArgument(f"{video.frames} frames of {w}x{h} are {w * h * video.frames} pixels, over this server's "
                              f"limit of {limits.max_job_pixels} per job (gouache serve --max-job-pixels)")


def run_video(generator, job: VideoJob, parameters: dict, save: bool, send: bool, tracker) -> dict:
    """The clip on the loaded model (the queue's worker): A1111's response with the video first."""
    from gouache.metadata.png import next_image_path
    from gouache.metadata.video import encode_video
    from gouache.pipelines.video import txt2vid
    from gouache.server.generator import _png_base64

    tracker.check()
    model = generator.model_for(job.request.model)
    generator._check_sized(job.request, model)
    _check_work(job.request, generator.config, model)
    video = txt2vid(model, job.request, tracker.progress, tracker.show, paths=False)[0]
    images = []
    for fmt in job.formats:
        if fmt == "png":
            continue  # frames are saved (save_images) or sent with "Frame"
        data, _ = encode_video(video.frames, fmt, video.request.fps, video.infotext, video.request.loop_number)
        images.append(base64.b64encode(data).decode("ascii"))
    if job.frames or "png" in job.formats:
        images += [_png_base64(frame, video.infotext) for frame in video.frames] if job.frames else []
    info = {"prompt": video.request.prompt, "seed": video.seed, "infotexts": [video.infotext],
            "all_seeds": [video.seed + k for k in range(video.request.frames)], "width": video.request.width,
            "height": video.request.height, "steps": video.request.steps, "sd_model_name": model.name,
            "extra_generation_params": {k: v for k, v in video.params.items()}, "interrupted": tracker.interrupted}
    if save:
        suffix = {"gif": ".gif", "webp": ".webp", "mp4": ".mp4", "png": ""}[job.formats[0] if job.formats else "gif"]
        folder = generator.config.out_dir / "txt2vid"
        path = next_image_path(folder, video.seed, "txt").with_suffix(suffix)
        video.save(path)
        info["saved"] = path.name
    return {"images": images if send else [], "parameters": parameters, "info": json.dumps(info)}
