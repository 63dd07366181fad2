"""``gouache video``: text-to-video and image-to-video with AnimateDiff motion adapters."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from gouache.cli.common import REQUEST_FLAGS, add_request_options, given_options

# request field -> flag, for this command's messages (``frames`` reads ``--frames``)
VIDEO_FLAGS = {"frames": "--frames", "fps": "--fps", "context_length": "--context-length",
               "context_overlap": "--context-overlap",
               "context_schedule": "--context-schedule", "video_format": "--format", "loop_number": "--loop-number",
               "closed_loop": "--loop", "denoising_strength": "--denoising-strength", "init_frames": "--init-frames",
               "motion": "--motion", "motion_scale": "--motion", "init_image": "--init-image",
               "free_init": "--free-init", "free_init_filter": "--free-init-filter", "free_init_ds": "--free-init-ds",
               "free_init_dt": "--free-init-dt"}
FORMAT_SUFFIX = {"gif": ".gif", "webp": ".webp", "mp4": ".mp4", "png": ""}


def register(sub) -> None:
    from gouache.metadata.video import FORMATS
    from gouache.pipelines.video import INIT_FRAMES, MAX_FRAMES
    from gouache.sampling.freeinit import FILTERS, MAX_ITERATIONS

    p = sub.add_parser("video", help="text-to-video with an AnimateDiff motion adapter",
                       description="Make a short video from a text prompt (or a picture) with an AnimateDiff motion "
                                   "adapter from $GOUACHE_HOME/motion. A prompt may travel: lines 'FRAME: prompt', "
                                   "or '0: a red circle, 8: a blue circle'.")
    p.add_argument("prompt", nargs="?", help="what to draw (A1111 prompt syntax; keyframes 'N: prompt' travel)")
    add_request_options(p)
    v = p.add_argument_group("video")
    v.add_argument("--frames", type=int, default=None, help=f"frames in the clip, 1 to {MAX_FRAMES} (default: 16)")
    v.add_argument("--fps", type=float, default=None, help="frames a second (default: 8)")
    v.add_argument("--motion", metavar="NAME[:SCALE]", default=None,
                   help="the motion adapter (a name in $GOUACHE_HOME/motion or a path) at SCALE (default 1; 0: no "
                        "motion, each frame made alone)")
    v.add_argument("--motion-lora", metavar="NAME[:WEIGHT]", action="append", default=None,
                   help="a motion LoRA from $GOUACHE_HOME/motion/lora (camera pan, zoom) at WEIGHT (default 1); repeat for several")
    v.add_argument("--format", dest="video_format", choices=FORMATS, default=None,
                   help="gif, webp, mp4 (H.264 via PyAV) or png (a folder of frames) (default: gif)")
    v.add_argument("--loop", dest="closed_loop", action="store_const", const=True, default=None,
                   help="a closed loop: the context windows wrap round so the last frame leads into the first")
    v.add_argument("--loop-number", type=int, default=None, help="times a GIF/WebP plays; 0 for ever (default: 0)")
    v.add_argument("--context-length", type=int, default=None,
                   help="frames the motion modules see at once; longer clips run in overlapping windows (default: 16)")
    v.add_argument("--context-overlap", type=int, default=None, help="frames neighbouring windows share (default: 4)")
    v.add_argument("--context-schedule", choices=("uniform", "static"), default=None,
                   help="uniform (default): the windows move from one step to the next, so their edges leave no "
                        "seam; static: they stay in place")
    v.add_argument("--free-init", type=int, metavar="PASSES", default=None,
                   help=f"FreeInit: sample the clip PASSES times, each pass from the last one's low frequencies, for "
                        f"frames that hold together (2 to {MAX_ITERATIONS}; costs PASSES times as long; default: off)")
    v.add_argument("--free-init-filter", choices=FILTERS, default=None,
                   help="FreeInit's low-pass filter (default: butterworth)")
    v.add_argument("--free-init-ds", type=float, default=None,
                   help="FreeInit's spatial stop frequency, a fraction of the highest (default: 0.25)")
    v.add_argument("--free-init-dt", type=float, default=None,
                   help="FreeInit's temporal stop frequency, a fraction of the highest (default: 0.25)")
    v.add_argument("--init-image", metavar="IMAGE", default=None, help="start from this picture (image-to-video)")
    v.add_argument("--denoising-strength", type=float, default=None,
                   help="with --init-image: how far the frames may move from it, 0 to 1 (default: 0.7)")
    v.add_argument("--init-frames", choices=INIT_FRAMES, default=None,
                   help="with --init-image: first (default: the first frame stays the picture) or all (every frame "
                        "starts from it and may change)")
    p.add_argument("--from", dest="from_video", metavar="FILE",
                   help="take every parameter from a video gouache made (or its .txt); flags given here override it")
    p.add_argument("--out", default="outputs/txt2vid", help="output folder (default: outputs/txt2vid)")
    p.add_argument("--output", metavar="FILE", default=None,
                   help="write exactly this file (its suffix picks the format; none: a folder of PNG frames)")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.set_defaults(handler=run, field_flags={**REQUEST_FLAGS, **VIDEO_FLAGS})


def build_request(args: argparse.Namespace):
    from gouache.adapters.motion import parse_motion
    from gouache.cli.common import UsageError
    from gouache.errors import InvalidArgument
    from gouache.pipelines.video import VideoRequest

    given = given_options(args, REQUEST_FLAGS)
    for name in ("frames", "fps", "video_format", "closed_loop", "loop_number", "context_length", "context_overlap",
                 "context_schedule", "denoising_strength", "init_frames", "free_init", "free_init_filter",
                 "free_init_ds", "free_init_dt"):
        if getattr(args, name) is not None:
            given[name] = getattr(args, name)
    if args.motion is not None:
        given["motion"], given["motion_scale"] = parse_motion(args.motion)
    if args.motion_lora:
        given["motion_loras"] = tuple(_weighted(text) for text in args.motion_lora)
    if args.init_image is not None:
        from gouache.images import load_image

        given["init_image"] = load_image(args.init_image, "init image")
    elif args.denoising_strength is not None or args.init_frames is not None:
        raise InvalidArgument("--denoising-strength and --init-frames need --init-image, e.g. --init-image start.png")
    if args.from_video:
        from gouache.metadata.video import read_video_infotext
        from gouache.pipelines.video import video_request_from_infotext

        text = read_video_infotext(args.from_video)
        if not text:
            raise InvalidArgument(f"{args.from_video} carries no generation parameters")
        base = video_request_from_infotext(text)
        if args.prompt is not None:
            given["prompt"] = args.prompt
        return dataclasses.replace(base, **given)
    if args.prompt is None:
        raise UsageError("give a prompt, e.g. gouache video \"a red circle on a blue background\" --motion NAME, "
                         "or --from FILE")
    return VideoRequest(prompt=args.prompt, **given)


def _weighted(text: str) -> tuple[str, float]:
    from gouache.adapters.motion import MAX_SCALE, parse_motion
    from gouache.errors import InvalidArgument

    try:
        return parse_motion(text)
    except InvalidArgument:
        raise InvalidArgument(f"--motion-lora {text!r}: expected NAME[:WEIGHT] with WEIGHT from 0 to {MAX_SCALE:g}, "
                              "e.g. --motion-lora v2_lora_ZoomIn:0.8") from None


def output_path(args: argparse.Namespace, fmt: str) -> Path | None:
    """``--output`` checked before any work: its suffix agrees with ``--format``, its folder is
    writable, and it is new unless ``--overwrite``. None: the next name in ``--out``."""
    from gouache.errors import InvalidArgument
    from gouache.files import writable_folder
    from gouache.metadata.video import check_output

    if args.output is None:
        writable_folder(args.out)
        return None
    path = Path(args.output)
    if path.suffix.lower() != FORMAT_SUFFIX[fmt]:
        wanted = FORMAT_SUFFIX[fmt] or "no suffix (a folder of PNG frames)"
        raise InvalidArgument(f"--output {path} does not fit --format {fmt}: give a name with {wanted}")
    return check_output(path, args.overwrite)


def run(args: argparse.Namespace) -> int:
    from gouache.cli.common import (speed_settings, use_lora_files, with_control_options, with_ip_adapter_options,
                                    with_lora_options, with_style_options)
    from gouache.cli.llm import with_expanded_prompt
    from gouache.metadata.png import next_image_path
    from gouache.pipelines.model import load_model
    from gouache.pipelines.video import txt2vid
    from gouache.progress import terminal_bar

    # 1. The request and the output, checked before anything loads
    request = with_expanded_prompt(build_request(args), args)
    request = with_ip_adapter_options(with_control_options(with_lora_options(request, args), args), args)
    request = with_style_options(request, args)
    if args.output is not None and args.video_format is None:
        request = dataclasses.replace(request, video_format=_format_of(Path(args.output)))
    request.validate()
    speed = speed_settings(args)
    target = output_path(args, request.video_format)
    # 2. The model, then the clip
    model = load_model(request.model, speed=speed)
    use_lora_files(model, args)
    video = txt2vid(model, request, terminal_bar("video"))[0]
    # 3. The file and its sidecar
    if target is None:
        target = next_image_path(args.out, video.seed, "txt").with_suffix(FORMAT_SUFFIX[request.video_format])
    video.save(target, overwrite=args.overwrite)
    if video.codec == "mpeg4":
        print("gouache: note: PyAV's FFmpeg has no H.264 encoder (libx264); the MP4 is MPEG-4 Part 2", file=sys.stderr)
    print(video.path)
    return 0


def _format_of(path: Path) -> str:
    """The format ``--output``'s suffix names (none: PNG frames); an unknown one fails validation."""
    return path.suffix.lower().lstrip(".") or "png"
