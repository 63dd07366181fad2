"""Threads for gouache-tiny's generations, on an idle machine and on a busy one, side by side.

For each image size and machine state, one txt2img of 20 steps (DPM++ 2M, batch 1) on 1 thread and
on every core (``GOUACHE_THREADS``), best of ``--repeats``, the two sides alternating; "busy" runs
``--busy`` (default: one per core) spinning processes beside it, as another job on the machine
would. Prints seconds per image, the ratio (all cores / 1 thread) and what gouache picks by
default (:mod:`gouache.speed.threads`)::

    python benchmarks/threads.py [--sizes 64,128,256] [--repeats 3] [--out benchmarks/results/threads-DATE.json]
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import torch  # noqa: E402

from gouache.bench import write_results  # noqa: E402
from gouache.speed.hardware import describe  # noqa: E402
from gouache.speed.threads import ENV, SMALL_LATENT_TOKENS  # noqa: E402

SPIN = "import os, time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"


def one_image(model, size: int, threads: int) -> float:
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.txt2img import txt2img

    os.environ[ENV] = str(threads)
    t0 = time.perf_counter()
    txt2img(model, GenerationRequest("a red circle on a blue background", steps=20, seed=1, width=size, height=size))
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="64,128,256")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--busy", type=int, default=os.cpu_count(), help="spinning processes in the busy state")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    from gouache.pipelines.model import load_model

    cores = os.cpu_count()
    model = load_model(None)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for state in ("idle", "busy"):
        spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.busy if state == "busy" else 0)]
        try:
            time.sleep(0.5 if spinners else 0)
            for size in sizes:
                one_image(model, size, 1)  # first-call costs out of the timing
                times = {1: [], cores: []}
                for _ in range(args.repeats):
                    for n in times:
                        times[n].append(one_image(model, size, n))
                one, many = min(times[1]), min(times[cores])
                default = 1 if (size // 8) ** 2 <= SMALL_LATENT_TOKENS else cores
                rows.append({"state": state, "size": size, "one_thread_s": one, "all_cores_s": many,
                             "ratio_all_over_one": many / one, "gouache_default": default})
                print(f"{state:5} {size:4}²  1 thread {one:6.2f} s   {cores} threads {many:6.2f} s   "
                      f"ratio {many / one:5.2f}   gouache uses {default}", flush=True)
        finally:
            for s in spinners:
                s.kill()
    os.environ.pop(ENV, None)
    if args.out:
        md = "| machine | size | 1 thread (s) | all cores (s) | all / 1 | gouache's default |\n| --- | --- | --- | --- | --- | --- |\n"
        md += "".join(f"| {r['state']} | {r['size']}² | {r['one_thread_s']:.2f} | {r['all_cores_s']:.2f} | "
                      f"{r['ratio_all_over_one']:.2f} | {r['gouache_default']} |\n" for r in rows)
        write_results(args.out, {"hardware": describe(), "cores": cores, "torch_default_threads": torch.get_num_threads(),
                                 "rows": rows}, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
