"""``gouache batch JOBS --out DIR``: every job of a file, on this machine or on a Ray cluster (``--ray``).

JOBS is a ``.jsonl`` of requests or a ``.txt`` of prompts (:mod:`gouache.cli.batch_jobs`); the
options of ``gouache generate`` given here apply to every job. Each image is one PNG with its
infotext, named ``<line>-<image>-<seed>.png``, and one line of ``DIR/manifest.jsonl``; run the same
command again and only the missing images are made (:mod:`gouache.batch`).
"""

from __future__ import annotations

import sys


def register(sub) -> None:
    from gouache.cli.batch_jobs import add_shared_options

    p = sub.add_parser("batch", help="many generations from a file of jobs, here or on a Ray cluster",
                       description="Make every image a file of jobs asks for, one PNG each with its infotext and a "
                                   "line of DIR/manifest.jsonl; run it again to make only what is missing. "
                                   "See docs/scale-out.md.")
    p.add_argument("jobs", metavar="JOBS",
                   help="a .jsonl file of requests (one JSON object a line: prompt, and the options below without "
                        "--, e.g. {\"prompt\": \"a red circle\", \"seed\": 7}; init and mask make img2img and "
                        "inpainting lines, with --strength etc.; paths from the file's folder), or a .txt file of "
                        "prompts, one a line")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (the images and manifest.jsonl)")
    p.add_argument("--overwrite", action="store_true",
                   help="make every image again, replacing the files (also when the jobs changed since)")
    ray = p.add_argument_group("on a Ray cluster (pip install 'gouache[ray]')")
    ray.add_argument("--ray", nargs="?", const="local", default=None, metavar="auto|ray://HOST:PORT",
                     help="make the images on a Ray cluster: alone, a Ray started here; auto, the cluster this "
                          "machine is in; ray://HOST:PORT (Ray Client) or HOST:PORT, a cluster's head")
    ray.add_argument("--workers", type=int, default=None, metavar="N",
                     help="Ray workers, each with its own copy of the model (default: as many as the cluster's "
                          "CPUs, or GPUs, hold)")
    ray.add_argument("--gpus-per-worker", type=float, default=0, metavar="G",
                     help="GPUs each Ray worker takes (default 0: it runs on CPU); 0.5 puts two on a GPU")
    ray.add_argument("--threads-per-worker", type=int, default=1, metavar="T",
                     help="torch threads (and CPUs) of each Ray worker (default 1)")
    add_shared_options(p)  # gouache generate's: every job's
    p.set_defaults(handler=run)


def shared_flags() -> dict[str, str]:
    """dest -> option name of the options every job shares (those of ``gouache generate``)."""
    from gouache.cli.batch_jobs import LineParser, add_shared_options, option_names

    parser = LineParser(add_help=False)
    add_shared_options(parser)
    return option_names(parser)


def run(args) -> int:
    from gouache.batch.run import local_results, run_batch
    from gouache.cli.batch_jobs import batch_speed, read_jobs
    from gouache.cli.common import progress_bar
    from gouache.errors import InvalidArgument
    from gouache.files import writable_folder

    if args.ray is not None:
        from gouache.batch.ray_runner import check_address, import_ray

        import_ray()
        check_address(args.ray)
        if args.workers is not None and args.workers < 1:
            raise InvalidArgument(f"--workers must be 1 or more, got {args.workers}")
        if args.threads_per_worker < 1 or args.gpus_per_worker < 0:
            raise InvalidArgument("--threads-per-worker must be 1 or more and --gpus-per-worker 0 or more")
    flags = shared_flags()
    jobs = read_jobs(args.jobs, args, flags)
    out = writable_folder(args.out)
    worker = {"speed": batch_speed(args), "model": args.model}
    if args.ray is None:
        def runner(tasks):
            return local_results(tasks, **worker)
    else:
        from gouache.batch.ray_runner import ray_results

        def runner(tasks):
            return ray_results(tasks, args.ray, args.workers, args.threads_per_worker, args.gpus_per_worker, **worker)

    def on_error(line: int, message: str) -> None:
        print(f"gouache: error: {args.jobs} line {line}: {message}", file=sys.stderr)

    summary = run_batch(jobs, out, runner, progress_bar("batch"), on_error, args.overwrite)
    print(f"{summary.made} made, {summary.present} there before, {summary.failed} failed: {summary.manifest}")
    return 1 if summary.failed else 0
