"""Seams of context windows: 64-frame clips on gouache-tiny, 16-frame windows overlapping by 4.

For each clip, the largest change between neighbouring frames where a window starts or ends is set
against the largest change between neighbouring frames elsewhere (:func:`gouache.sampling.frames.window_jumps`,
mean absolute pixel difference); the bar is no seam larger than the largest change inside a window.

    python scripts/quality/video_windows.py --motion gouache-tiny-motion --clips 8
    python scripts/quality/video_windows.py            # a random-weight adapter: a plumbing check only

Without ``--motion`` a tiny random-weight adapter is written to a temporary $GOUACHE_HOME; its frames
do not move coherently, so the figures say only that the windows join without a step of their own.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

# the direction at the end: the form gouache-tiny reads (docs/motion-training.md)
PROMPTS = ["a {c} circle on a blue background, moving right", "a {c} square on a yellow background, moving down",
           "a {c} triangle on a white background, moving left", "a {c} circle on a black background, moving up"]
COLOURS = ["red", "green", "blue", "yellow"]


def random_adapter(home: Path) -> str:
    import torch
    from diffusers import MotionAdapter

    torch.manual_seed(0)
    adapter = MotionAdapter(block_out_channels=(64, 128, 128), motion_layers_per_block=1, motion_max_seq_length=32)
    for p in adapter.parameters():
        p.data.normal_(0, 0.02)
    adapter.save_pretrained(home / "motion" / "random-mm")
    return "random-mm"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--motion", default=None, help="motion adapter name (default: a random-weight one)")
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--context-length", type=int, default=16)
    p.add_argument("--context-overlap", type=int, default=4)
    p.add_argument("--context-schedule", default="uniform", help="uniform (the windows move each step) or static")
    args = p.parse_args()
    if args.motion is None:
        home = Path(tempfile.mkdtemp(prefix="gouache-windows-"))
        os.environ["GOUACHE_HOME"] = str(home)
        args.motion = random_adapter(home)

    import numpy as np
    import torch

    from gouache.pipelines.model import load_model
    from gouache.pipelines.video import VideoRequest, load_motion_for, txt2vid
    from gouache.sampling.frames import window_jumps

    model = load_model()
    rows, motion = [], None
    for k in range(args.clips):
        prompt = PROMPTS[k % len(PROMPTS)].format(c=COLOURS[k // len(PROMPTS) % len(COLOURS)])
        req = VideoRequest(prompt, motion=args.motion, frames=args.frames, steps=args.steps, seed=100 + k,
                           context_length=args.context_length, context_overlap=args.context_overlap,
                           context_schedule=args.context_schedule)
        motion = motion or load_motion_for(model, req)
        video = txt2vid(model, req, motion=motion)[0]
        pixels = torch.tensor(np.stack([np.asarray(f, dtype=np.float32) for f in video.frames]))
        at, within = window_jumps(pixels, video.windows)
        rows.append((prompt, at, within))
        print(f"{prompt:<52} seam {at:6.2f}  inside {within:6.2f}  {'ok' if at <= within else 'SEAM'}", flush=True)
    ok = sum(at <= within for _, at, within in rows)
    print(f"\n{args.motion}: {args.frames} frames, windows of {args.context_length} overlapping by "
          f"{args.context_overlap}, {args.context_schedule} schedule; {ok}/{len(rows)} clips without a seam larger than the largest change inside "
          f"a window (mean seam {np.mean([r[1] for r in rows]):.2f}, mean largest inside {np.mean([r[2] for r in rows]):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
