"""Make a batch's images on a Ray cluster with Ray Data: an actor pool of :class:`BatchWorker` s.

``map_batches`` over one row per image, with ``BatchWorker`` as the function class: one actor per
worker slot (``workers``), each loading the model once in its ``__init__``, with ``threads`` torch
threads (its CPUs) and ``gpus`` GPUs. Actors are restarted when their process dies and the tasks
they held are retried (``max_restarts``, ``max_task_retries``), so a worker lost mid-run costs
only the images it was making. Workers return each PNG's bytes and the driver writes them
(:func:`gouache.batch.run.run_batch`): no shared folder is needed.

Ray is optional (``pip install 'gouache[ray]'``); nothing here imports it until a run asks for it.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import socket
import warnings
from typing import Iterator

from gouache.batch.tasks import ImageResult, ImageTask
from gouache.errors import GouacheError, InvalidArgument

INSTALL = "pip install 'gouache[ray]'"
MAX_TASK_RETRIES = 3  # an image whose worker died this many times in a row fails the run
CONNECT_TIMEOUT_S = 5.0
_RE_ADDRESS = re.compile(r"(?:ray://)?([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})")


def import_ray():
    """The ``ray`` module, or one line that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (ray without its [data] extra lacks it)
    except ImportError:
        raise GouacheError(f"--ray needs Ray with Ray Data: {INSTALL}") from None
    return ray


def check_address(address: str) -> None:
    """``local`` (start Ray here), ``auto`` (the cluster this machine is in), ``ray://HOST:PORT``
    (Ray Client) or ``HOST:PORT`` (a head node's GCS); anything else names the choices."""
    if address in ("local", "auto") or _RE_ADDRESS.fullmatch(address):
        return
    raise InvalidArgument(f"--ray {address!r}: expected nothing (a Ray started here), auto (the running cluster), "
                          "ray://HOST:PORT or HOST:PORT")


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` (:func:`check_address`), unless this process is in one
    already (a notebook's or a test's ``ray.init``). An address nothing answers at is one line."""
    ray = import_ray()
    check_address(address)
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    options = dict(logging_level=logging.ERROR, log_to_driver=False)
    match = _RE_ADDRESS.fullmatch(address)
    if match:
        host, port = match[1].strip("[]"), int(match[2])
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as e:
            raise GouacheError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from None
    try:
        if address == "local":
            ray.init(include_dashboard=False, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GouacheError(f"cannot join the Ray cluster at {address}: {first}") from None


def default_workers(threads: int, gpus: float) -> int:
    """As many workers as the cluster's CPUs (or GPUs, when each worker takes some) hold."""
    import ray

    resources = ray.cluster_resources()
    if gpus:
        return max(1, int(resources.get("GPU", 0) // gpus))
    return max(1, int(resources.get("CPU", 1) // threads))


def ray_results(tasks: list[ImageTask], address: str = "local", workers: int | None = None, threads: int = 1,
                gpus: float = 0, **worker) -> Iterator[ImageResult]:
    """The tasks' images as Ray's workers finish them (in no fixed order); ``worker`` are the
    :class:`BatchWorker` 's other arguments (``speed``, ``model``)."""
    if not tasks:
        return
    ray = import_ray()
    connect(address)
    from gouache.batch.worker import BatchWorker

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # gouache draws its own bar over the images
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its notes (progress bars off, ...) are not the user's
    pool = workers or default_workers(threads, gpus)
    rows = [{"index": k, "task": pickle.dumps(task)} for k, task in enumerate(tasks)]
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))  # one image per block: fine-grained retries
    with warnings.catch_warnings():  # Ray 2.60 deprecates passing actor options here; no other way has them yet
        warnings.simplefilter("ignore", DeprecationWarning)
        made = dataset.map_batches(
            BatchWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=pool), num_cpus=threads,
            num_gpus=gpus or None, fn_constructor_kwargs={**worker, "threads": threads, "device": "cuda" if gpus else "cpu"},
            max_restarts=-1, max_task_retries=MAX_TASK_RETRIES)
    try:
        for row in made.iter_rows():
            task = tasks[int(row["index"])]
            png = bytes(row["png"]) if row["png"] else None
            yield ImageResult(task.line, task.image, task.seed, task.file, png, row["error"] or None, row["worker"])
    except ray.exceptions.RayError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GouacheError(f"the Ray run stopped: {first}; the images made so far are saved, "
                           "run the same command again to make the rest") from None
