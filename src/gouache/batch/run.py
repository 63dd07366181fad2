"""Run a batch: find the images that are missing, have a runner make them, write each one.

The process that runs :func:`run_batch` writes every file (the PNGs, atomically, and the manifest);
workers only return bytes. So a Ray cluster needs no shared folder, and one writer keeps the
manifest whole whatever happens to a worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from gouache.batch.manifest import NAME, Manifest, entry, read_manifest
from gouache.batch.tasks import ImageResult, ImageTask, Job
from gouache.errors import OutputError

Runner = Callable[[list[ImageTask]], Iterable[ImageResult]]


@dataclass
class Summary:
    """What a run did: images made now, images found made before, images (or lines) that failed."""

    made: int = 0
    present: int = 0
    failed: int = 0
    manifest: Path | None = None


def local_results(tasks: list[ImageTask], **worker) -> Iterator[ImageResult]:
    """The images made one after another in this process, by one :class:`BatchWorker` (built with
    ``worker`` only when there is something to make)."""
    if not tasks:
        return
    from gouache.batch.worker import BatchWorker

    w = BatchWorker(**worker)
    for task in tasks:
        yield w.run(task)


def pending_tasks(jobs: list[Job], folder: Path, old: dict, overwrite: bool = False
                  ) -> tuple[list[ImageTask], list[ImageTask]]:
    """The tasks whose PNG is not in ``folder`` (every task with ``overwrite``), and those whose
    file is there. A file of a job whose options changed since it was made
    (another ``spec`` in the manifest ``old``) stops the run, unless ``overwrite``."""
    if not overwrite:
        _check_same_jobs(jobs, folder, old)
    todo, present = [], []
    for job in jobs:
        if job.request is None:
            continue
        for task in job.tasks():
            if not overwrite and (folder / task.file).exists():
                present.append(task)
            else:
                todo.append(task)
    return todo, present


def _check_same_jobs(jobs: list[Job], folder: Path, old: dict) -> None:
    specs = {job.line: job.spec for job in jobs}
    for item in old.values():
        line, file = item.get("job"), item.get("file")
        if line in specs and item.get("spec") != specs[line] and isinstance(file, str) and (folder / file).exists():
            raise OutputError(f"{folder} holds {file}, made by other options on line {line} of the jobs file; "
                              "write to a new --out, or pass --overwrite to make the batch again")


def run_batch(jobs: list[Job], folder: Path, runner: Runner, progress: Callable[[int, int], None] | None = None,
              on_error: Callable[[int, str], None] | None = None, overwrite: bool = False) -> Summary:
    """Make the images of ``jobs`` that ``folder`` lacks with ``runner`` (e.g. :func:`local_results`),
    writing each PNG atomically as it comes and its line of the manifest; ``on_error(line, message)``
    hears of each job that is no request and each image that failed. A result that comes twice (a
    retried task) is written once.

    >>> summary = run_batch(jobs, Path("out"), local_results)     # doctest: +SKIP
    >>> summary.made, summary.failed                              # doctest: +SKIP
    (16, 0)
    """
    from gouache.files import writable_folder
    from gouache.metadata.png import atomic_write_bytes

    folder = writable_folder(folder)
    old = read_manifest(folder)
    todo, present = pending_tasks(jobs, folder, old, overwrite)
    by_line = {job.line: job for job in jobs}
    keys = [key for job in jobs for key in ([(job.line, None)] if job.request is None else
                                            [(job.line, i) for i in range(job.count())])]
    manifest, summary = Manifest(folder, old), Summary(present=len(present), manifest=folder / NAME)
    try:
        for task in present:  # made before: an "ok" line, whatever the manifest said
            job, known = by_line[task.line], manifest.entries.get((task.line, task.image))
            if known is None or known.get("status") != "ok" or known.get("spec") != job.spec:
                manifest.add(entry(job, ImageResult(task.line, task.image, task.seed, task.file)))
        for job in jobs:
            if job.request is None:
                manifest.add(entry(job))
                summary.failed += 1
                if on_error is not None:
                    on_error(job.line, job.error)
        done: set = set()
        for result in runner(todo):
            if (result.line, result.image) in done:
                continue
            done.add((result.line, result.image))
            if result.png:
                path = folder / result.file
                if overwrite or not path.exists():
                    atomic_write_bytes(path, result.png, overwrite=overwrite)
                summary.made += 1
            else:
                summary.failed += 1
                if on_error is not None:
                    on_error(result.line, result.error)
            manifest.add(entry(by_line[result.line], result))
            if progress is not None:
                progress(len(done), len(todo))
    finally:
        manifest.close(keys)
    return summary
