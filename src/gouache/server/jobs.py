"""The job queue: one worker thread per device runs jobs in the order they came, while the web
side stays free to answer ``/progress``. A queue whose jobs run elsewhere (``gouache serve --ray``:
one Ray Serve replica each) has one worker thread per replica, each waiting on its job's answer.

A job is a function of a :class:`Tracker`; the pipelines' ``progress(i, n)`` and
``preview(step, total, image)`` callbacks go to the tracker, which records the fraction done,
the ETA and the latest preview, and raises :class:`Interrupted` at the next step after
``POST /interrupt`` (A1111's ``shared.state``).

>>> queue = JobQueue(size=4); queue.start()                        # doctest: +SKIP
>>> future = queue.submit("txt2img", lambda tracker: run(tracker))  # doctest: +SKIP
"""

from __future__ import annotations

import queue as queue_module
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from PIL import Image

from gouache.errors import GouacheError


class QueueFull(GouacheError):
    """Every place in the queue is taken (HTTP 503); the client may try again later."""


class WorkerLost(GouacheError):
    """The process running a job went away and the job could not be run again (HTTP 503)."""


class Interrupted(Exception):
    """Raised inside a job by its tracker after ``POST /interrupt``; not an error."""


@dataclass
class Tracker:
    """The running job's progress, read by ``/progress`` from the web thread."""

    job: str = ""
    started: float = 0.0
    step: int = 0
    steps: int = 0
    preview: Image.Image | None = None
    interrupted: bool = False
    timestamp: str = field(default_factory=lambda: datetime.now().strftime("%Y%m%d%H%M%S"))

    def progress(self, i: int, n: int) -> None:
        """The pipelines' ``progress(i, n)``: called after each step; where an interrupt lands."""
        self.step, self.steps = i, n
        self.check()

    def check(self) -> None:
        """Raise :class:`Interrupted` if ``/interrupt`` came: between the stages of a job that is
        still preparing (loading a model, reading the request), not only between steps."""
        if self.interrupted:
            raise Interrupted

    def show(self, step: int, total: int, image: Image.Image) -> None:
        """The pipelines' ``preview(step, total, image)``."""
        self.preview = image

    def fraction(self) -> float:
        return min(1.0, self.step / self.steps) if self.steps else 0.0


@dataclass
class _Job:
    name: str
    work: Callable[[Tracker], Any]
    future: Future


class JobQueue:
    """A bounded queue with ``workers`` threads (one unless the jobs run elsewhere). ``size`` jobs
    may wait behind the running ones."""

    def __init__(self, size: int = 16, workers: int = 1):
        self._queue: queue_module.Queue[_Job | None] = queue_module.Queue(maxsize=size)
        self._workers = workers
        self._threads: list[threading.Thread] = []
        self.running: list[Tracker] = []  # the jobs that run now, oldest first
        self.last = Tracker()
        self.done = 0

    @property
    def current(self) -> Tracker | None:
        """The job that runs now; with several workers, the oldest of those running."""
        return next(iter(self.running.copy()), None)  # a copy: a worker may end its job meanwhile

    def start(self) -> None:
        if not self._threads:
            self._threads = [threading.Thread(target=self._work, name=f"gouache-worker-{i}", daemon=True)
                             for i in range(self._workers)]
            for thread in self._threads:
                thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Interrupt the running job, drop the waiting ones, and end the worker."""
        self.interrupt()
        while True:
            try:
                job = self._queue.get_nowait()
            except queue_module.Empty:
                break
            if job is not None:
                job.future.cancel()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def submit(self, name: str, work: Callable[[Tracker], Any]) -> Future:
        """Queue ``work(tracker)``; its result (or exception) arrives in the returned future."""
        job = _Job(name, work, Future())
        try:
            self._queue.put_nowait(job)
        except queue_module.Full:
            raise QueueFull(f"the queue is full ({self.waiting} waiting, {max(1, len(self.running))} running); "
                            "try again in a moment") from None
        return job.future

    def drop(self, future: Future) -> bool:
        """Take a job that has not started out of the queue (its client left); False once it runs."""
        with self._queue.mutex:
            for job in self._queue.queue:
                if job is not None and job.future is future and future.cancel():
                    self._queue.queue.remove(job)
                    self._queue.not_full.notify()
                    return True
        return False

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def interrupt(self) -> None:
        """Stop the running job (each of them, with several workers) at its next step."""
        for tracker in list(self.running):
            tracker.interrupted = True

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if not job.future.set_running_or_notify_cancel():
                continue
            tracker = Tracker(job=job.name, started=time.monotonic())
            self.running.append(tracker)
            try:
                result = job.work(tracker)
            except BaseException as e:  # noqa: BLE001 - any failure belongs to its request, not to the worker
                job.future.set_exception(e)
            else:
                job.future.set_result(result)
            finally:
                self.running.remove(tracker)
                self.last = tracker
                self.done += 1
                del job, tracker  # the results belong to their request now

    def state(self) -> dict:
        """A1111's ``ProgressResponse`` fields, without the image: ``progress``, ``eta_relative``, ``state``."""
        tracker = self.current
        waiting = self.waiting + max(0, len(self.running) - 1)  # with several workers, the others count as waiting
        if tracker is None:
            return {"progress": 0.0, "eta_relative": 0.0, "state": _state(self.last, waiting, False)}
        fraction = tracker.fraction()
        elapsed = time.monotonic() - tracker.started
        progress = min(1.0, 0.01 + fraction)  # A1111's: never 0 once a job runs
        return {"progress": progress, "eta_relative": elapsed / progress - elapsed,
                "state": _state(tracker, waiting, True)}


def _state(tracker: Tracker, waiting: int, running: bool) -> dict:
    return {"skipped": False, "interrupted": tracker.interrupted, "stopping_generation": False,
            "job": tracker.job if running else "", "job_count": waiting + running, "job_timestamp": tracker.timestamp,
            "job_no": 0, "sampling_step": tracker.step if running else 0, "sampling_steps": tracker.steps if running else 0}
