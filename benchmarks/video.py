"""16 frames on gouache-tiny: `gouache video` (gouache.pipelines.video.txt2vid) against diffusers'
AnimateDiffPipeline with the same motion adapter, side by side in one run.

    python benchmarks/video.py                    # 16 frames, 8 DDIM steps, CFG 5 on every step, 3 runs each
    python benchmarks/video.py --frames 16 --steps 8 --runs 3 --out benchmarks/results/video-$(date +%F).json

Each side runs in its own process (so each one's peak resident memory, ``ru_maxrss``, is its own):
one warm-up clip, then ``--runs`` clips; the sides take turns ``--rounds`` times and the medians are
reported (wall-clock and CPU time: the machine may be busy with other work; its load is printed). Both use the same random-weight motion
adapter (sized for gouache-tiny; the trained gouache-tiny-motion runs at the same speed), the same
sampler (DDIM), steps, CFG scale (guidance on every step: gouache-tiny's default CFG truncation is
turned off so both do the same work) and threads. Ratio = diffusers' seconds / gouache's. A third
side, ``gouache-default``, runs at gouache-tiny's own defaults (guidance on the first half of the
steps: less work, the same judged images on gouache-tiny, see docs/gouache-tiny.md). A fourth,
``gouache-text``, is the ``gouache`` side with gouache's text readout beside the adapter (random weights,
as gouache-tiny-motion ships one: docs/video.md): work diffusers' pipeline does not do, so its cost
is shown apart from the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
sys.path.insert(0, str(SRC))
PROMPT = "a red circle on a blue background"


def adapter_folder(home: Path) -> Path:
    import torch
    from diffusers import MotionAdapter

    folder = home / "motion" / "bench-mm"
    if not folder.is_dir():
        torch.manual_seed(0)
        adapter = MotionAdapter(block_out_channels=(64, 128, 128), motion_layers_per_block=1, motion_max_seq_length=32)
        for p in adapter.parameters():
            p.data.normal_(0, 0.02)
        adapter.save_pretrained(folder)
    text = home / "motion" / "bench-mm-text"  # the same adapter with a text readout beside it
    if not text.is_dir():
        from gouache.adapters.motion import MOTION_TEXT, motion_modules
        from gouache.adapters.motion_text import TextReadout

        adapter = MotionAdapter.from_pretrained(folder)
        torch.manual_seed(1)
        readout = TextReadout(64, [m.proj_in.in_features for m in motion_modules(adapter)])
        for p in readout.out.parameters():
            p.data.normal_(0, 0.02)
        adapter.save_pretrained(text)
        (text / MOTION_TEXT).write_bytes(readout.save_bytes())
    return folder


def side_gouache(args, truncation: float | None = 1.0, adapter: str = "bench-mm") -> callable:
    from gouache.pipelines.model import load_model
    from gouache.pipelines.video import VideoRequest, load_motion_for, txt2vid

    model = load_model()
    request = VideoRequest(PROMPT, motion=adapter, frames=args.frames, steps=args.steps, cfg_scale=args.cfg,
                           cfg_truncation=truncation, sampler="DDIM", seed=1)
    motion = load_motion_for(model, request)  # loaded once, as the diffusers side loads its adapter once
    return lambda: txt2vid(model, request, motion=motion)[0].frames


def side_diffusers(args) -> callable:
    import torch
    from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter

    from gouache.models.home import models_dir
    from gouache.pipelines.model import load_model
    from gouache.speed import SpeedSettings

    stock = load_model(speed=SpeedSettings.reference()).pipeline  # gouache-tiny's components, diffusers' attention
    adapter = MotionAdapter.from_pretrained(models_dir("motion") / "bench-mm")
    pipe = AnimateDiffPipeline(vae=stock.vae, text_encoder=stock.text_encoder, tokenizer=stock.tokenizer,
                               unet=stock.unet, motion_adapter=adapter,
                               scheduler=DDIMScheduler.from_config(stock.scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    return lambda: pipe(PROMPT, num_frames=args.frames, num_inference_steps=args.steps, guidance_scale=args.cfg,
                        height=64, width=64, generator=torch.Generator().manual_seed(1)).frames[0]


def run_side(args) -> None:
    import resource

    import torch

    torch.set_num_threads(args.threads)
    make = {"gouache": side_gouache, "diffusers": side_diffusers,
            "gouache-default": lambda a: side_gouache(a, truncation=None),
            "gouache-text": lambda a: side_gouache(a, adapter="bench-mm-text")}[args.side](args)
    frames = make()  # warm-up
    times, cpu = [], []
    for _ in range(args.runs):
        t, c = time.perf_counter(), time.process_time()
        frames = make()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"side": args.side, "seconds": statistics.median(times), "times": times,
                      "cpu_seconds": statistics.median(cpu), "peak_rss_mib": round(peak, 1), "frames": len(frames)}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--cfg", type=float, default=5.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3, help="times each side's process runs, taking turns")
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    p.add_argument("--side", choices=("gouache", "diffusers", "gouache-default", "gouache-text"), help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    args = p.parse_args()
    if args.side:
        run_side(args)
        return 0
    home = Path(os.environ.get("GOUACHE_HOME") or tempfile.mkdtemp(prefix="gouache-bench-"))
    env = {**os.environ, "GOUACHE_HOME": str(home), "GOUACHE_DTYPE": os.environ.get("GOUACHE_DTYPE", "fp32"),
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(SRC)}
    os.environ.update(env)
    adapter_folder(home)
    rounds: dict[str, list] = {"diffusers": [], "gouache": [], "gouache-default": [], "gouache-text": []}
    for _ in range(args.rounds):  # the sides take turns, so a change in the machine's load hits both
        for side in rounds:
            cmd = [sys.executable, __file__, "--side", side, *sys.argv[1:]]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            rounds[side].append(json.loads(out.strip().splitlines()[-1]))
    load = os.getloadavg()
    results = {side: {"seconds": statistics.median(t for r in rs for t in r["times"]),
                      "cpu_seconds": statistics.median(r["cpu_seconds"] for r in rs),
                      "peak_rss_mib": max(r["peak_rss_mib"] for r in rs), "rounds": rs} for side, rs in rounds.items()}
    d, g = results["diffusers"], results["gouache"]
    summary = {"frames": args.frames, "steps": args.steps, "threads": args.threads, "load_average": load,
               "ratio": d["seconds"] / g["seconds"], "cpu_ratio": d["cpu_seconds"] / g["cpu_seconds"], "sides": results}
    print(f"{args.frames} frames, {args.steps} DDIM steps, CFG {args.cfg:g}, {args.threads} threads, "
          f"{args.rounds} rounds x {args.runs} clips (load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})")
    for name, r in results.items():
        print(f"  {name:<15} {r['seconds']:7.2f} s wall, {r['cpu_seconds']:7.2f} s CPU (medians)   "
              f"peak RSS {r['peak_rss_mib']:7.1f} MiB")
    print(f"  ratio (diffusers / gouache): {summary['ratio']:.2f} wall, {summary['cpu_ratio']:.2f} CPU; gouache's "
          f"peak memory is {'not above' if g['peak_rss_mib'] <= d['peak_rss_mib'] else 'ABOVE'} diffusers'")
    t = results["gouache-default"]
    print(f"  gouache-tiny's defaults (CFG truncation 0.5, not the same work): {d['seconds'] / t['seconds']:.2f} wall, "
          f"{d['cpu_seconds'] / t['cpu_seconds']:.2f} CPU")
    x = results["gouache-text"]
    print(f"  with gouache's text readout beside the adapter (work diffusers does not do): {d['seconds'] / x['seconds']:.2f} "
          f"wall, {d['cpu_seconds'] / x['cpu_seconds']:.2f} CPU; {x['seconds'] / g['seconds'] - 1:+.1%} on gouache's time")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
