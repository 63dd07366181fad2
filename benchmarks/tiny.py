"""gouache-tiny: images per second, stock diffusers against gouache and its approximations, with
each approximation's judged adherence (64 seen + 64 held-out images).

    python benchmarks/tiny.py --out benchmarks/results/tiny-$(date +%F).json

It is ``gouache bench --images 16 --quality 64`` on the built-in model (:mod:`gouache.bench`); any
other ``gouache bench`` option passes through.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from gouache.bench import main  # noqa: E402

SIDES = "stock,gouache,tome,deepcache,cfg-truncation,lcm,approx,approx-10"

if __name__ == "__main__":
    raise SystemExit(main(["--images", "16", "--quality", "64", "--sides", SIDES, *sys.argv[1:]]))
