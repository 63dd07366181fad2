"""Stock diffusers against gouache on Stable Diffusion 1.5's architecture, side by side in one run.

The issue's benchmark: SD 1.5's exact UNet, VAE and text encoder built from the configs gouache
ships, with random weights (speed does not depend on their values), 512×512, 20 steps of DPM++ 2M,
CFG 7.5, batch 1. It is ``gouache bench --arch sd15 --flops`` (:mod:`gouache.bench`) with the
model cached in ``benchmarks/.cache/sd15-random`` (about 4 GB, git-ignored):

    python benchmarks/sd15.py --quick                        # smoke run: 256x256, 4 steps, three sides
    python benchmarks/sd15.py --out benchmarks/results/sd15-$(date +%F).json

Any other ``gouache bench`` option passes through (``--sides``, ``--threads``, ``--images``, ...).
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from gouache.bench import main  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--quick" in argv:
        argv.remove("--quick")
        argv = ["--size", "256", "--steps", "4", "--sides", "stock,gouache,approx", *argv]
    raise SystemExit(main(["--arch", "sd15", "--flops", "--cache", str(HERE / ".cache"), *argv]))
