"""``gouache batch`` in this process and on Ray (1 and 2 actors, 1 thread each), side by side.

The same jobs (``--images`` gouache-tiny images at ``--steps`` steps, seeds fixed) made three ways
into fresh folders, each timed end to end (workers started, model loaded, every PNG written); Ray is
started once before, on this machine's CPUs. Prints seconds, images per second and the ratios the
batch docs quote: Ray's overhead over in-process with 1 actor (goal ≤ 10 %) and 2 actors' speed-up
over 1 (goal ≥ 1.6× on 2 cores); checks that the three folders hold the same bytes::

    python benchmarks/batch.py [--images 48] [--steps 20] [--out benchmarks/results/batch-DATE.json]
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from gouache.bench import write_results  # noqa: E402


def jobs_of(folder: Path, images: int, steps: int) -> list:
    from gouache.cli import build_parser
    from gouache.cli.batch import shared_flags
    from gouache.cli.batch_jobs import read_jobs

    shapes = ["circle", "square", "triangle"]
    path = folder / "jobs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"a red {shapes[k % 3]} on a blue background", "seed": k,
                                        "steps": steps}) + "\n" for k in range(images)))
    return read_jobs(str(path), build_parser().parse_args(["batch", str(path), "--out", "x"]), shared_flags())


def timed(jobs, out: Path, runner) -> float:
    from gouache.batch.run import run_batch

    t0 = time.perf_counter()
    summary = run_batch(jobs, out, runner)
    assert summary.made == len(jobs) and summary.failed == 0, summary
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=48)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from gouache.batch.ray_runner import ray_results
    from gouache.batch.run import local_results
    from gouache.cli.batch_jobs import batch_speed

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    work = Path(tempfile.mkdtemp(prefix="gouache-batch-bench-"))
    jobs = jobs_of(work, args.images, args.steps)
    worker = {"speed": batch_speed(argparse.Namespace(dtype=None, attention=None, compile=None, vae_tiling=None,
                                                      offload=None)), "model": None}
    sides = {
        "in-process": lambda tasks: local_results(tasks, **worker),
        "ray, 1 actor": lambda tasks: ray_results(tasks, workers=1, threads=1, **worker),
        "ray, 2 actors": lambda tasks: ray_results(tasks, workers=2, threads=1, **worker),
    }
    seconds = {}
    for name, runner in sides.items():
        seconds[name] = timed(jobs, work / name.replace(", ", "-").replace(" ", "-"), runner)
        print(f"{name:14} {seconds[name]:7.1f} s   {args.images / seconds[name]:5.2f} images/s", flush=True)
    ray.shutdown()
    folders = [work / n.replace(", ", "-").replace(" ", "-") for n in sides]
    same = all((folders[0] / f.name).read_bytes() == f.read_bytes() for d in folders[1:] for f in d.glob("*.png"))
    overhead = seconds["ray, 1 actor"] / seconds["in-process"] - 1
    speedup = seconds["ray, 1 actor"] / seconds["ray, 2 actors"]
    print(f"Ray's overhead, 1 actor over in-process: {overhead:+.1%} (goal ≤ +10 %)")
    print(f"2 actors over 1: {speedup:.2f}× (goal ≥ 1.6×)")
    print(f"same bytes in the three folders: {same}")
    print(f"load: {os.getloadavg()}")
    if args.out:
        md = "| run | seconds | images/s |\n| --- | --- | --- |\n" + "".join(
            f"| {n} | {s:.1f} | {args.images / s:.2f} |\n" for n, s in seconds.items())
        md += f"\nRay overhead (1 actor / in-process − 1): {overhead:+.1%}; 2 actors over 1: {speedup:.2f}×; same bytes: {same}\n"
        write_results(args.out, {"images": args.images, "steps": args.steps, "seconds": seconds,
                                 "overhead": overhead, "speedup": speedup, "same_bytes": same,
                                 "loadavg": os.getloadavg()}, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
