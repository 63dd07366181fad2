"""What runs in each Ray Serve replica of ``gouache serve --ray``: the server's model, loaded once
per replica, and its jobs, one at a time, each streamed back to the front as events.

A job's events, in order: ``{"pid"}`` (the replica's process), ``{"model"}`` (a
:class:`ReplicaModel` once the checkpoint is loaded), then ``{"step", "steps"}`` after each step and
``{"preview", "step", "total"}`` for the live previews, with ``{"alive"}`` whenever nothing else
came for ``heartbeat`` seconds (waiting for the replica, loading a model), and last
``{"results": [GeneratedImage, ...]}`` or ``{"error": GouacheError}``. When the front cancels the
stream (``/interrupt``, or its client gone), the job's tracker is interrupted: it stops at its next
step, as a local job does.
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass
from typing import Any

from gouache.errors import GouacheError
from gouache.server.config import ServerConfig
from gouache.server.generator import Generator
from gouache.server.jobs import Interrupted, Tracker

_DONE = "done"  # the job's thread has ended: its answer is the work's result


@dataclass(frozen=True)
class ReplicaModel:
    """What the front needs to know of a model that a replica loaded: the facts its infotext, its
    size checks and A1111's ``info`` read (the front holds no weights)."""

    name: str
    hash: str
    path: str
    dtype: Any  # torch.dtype
    device: str
    speed: dict | None
    native_size: int
    is_inpainting: bool
    default_cfg_scale: float
    default_cfg_truncation: float

    @classmethod
    def of(cls, model) -> ReplicaModel:
        return cls(model.name, model.hash, model.path, model.dtype, model.device, model.speed, model.native_size,
                   model.is_inpainting, model.default_cfg_scale, model.default_cfg_truncation)


class _StreamingTracker(Tracker):
    """A replica's tracker: each step and preview is also an event for the front."""

    def __init__(self, emit):
        super().__init__()
        self._emit = emit

    def progress(self, i: int, n: int) -> None:
        self._emit({"step": i, "steps": n})
        super().progress(i, n)

    def show(self, step: int, total: int, image) -> None:
        super().show(step, total, image)
        self._emit({"preview": image, "step": step, "total": total})


class GenerationWorker:
    """One replica: a :class:`~gouache.server.generator.Generator` on this process's device.

    ``run`` streams a job (see the module's doc); ``describe`` loads a checkpoint and tells what it
    is; ``pid`` names the process (to watch it, or, in the tests, to kill it).
    """

    def __init__(self, config: ServerConfig, heartbeat: float = 0.5):
        self.generator = Generator(config)
        self.generator.model_for(None)  # the server's model, once per replica, before it takes a job
        self.heartbeat = heartbeat
        self._busy = threading.Lock()  # one job at a time; the next one waits here

    async def pid(self) -> int:
        return os.getpid()

    async def describe(self, checkpoint: str) -> ReplicaModel:
        def load():
            with self._busy:
                return ReplicaModel.of(self.generator.model_for(checkpoint))

        return await asyncio.to_thread(load)

    async def run(self, request, checkpoint: str, options: dict):
        """Run ``request`` on ``checkpoint`` (when the request names none) with the front's /options."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def emit(event) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        tracker = _StreamingTracker(emit)
        yield {"pid": os.getpid()}
        work = asyncio.ensure_future(asyncio.to_thread(self._work, request, checkpoint, options, tracker, emit))
        try:
            while True:
                try:
                    event = await asyncio.wait_for(events.get(), self.heartbeat)
                except asyncio.TimeoutError:
                    event = {"alive": True}
                if event == _DONE:
                    break
                yield event
            yield await work
        except (asyncio.CancelledError, GeneratorExit):
            tracker.interrupted = True  # the thread stops at the job's next step, freeing the replica
            raise

    def _work(self, request, checkpoint: str, options: dict, tracker: Tracker, emit) -> dict:
        try:
            with self._busy:
                tracker.check()  # interrupted while it waited: never starts
                self.generator.options = {**self.generator.options, **options}
                model = self.generator.model_for(request.model or checkpoint)
                emit({"model": ReplicaModel.of(model)})
                tracker.check()
                return {"results": self.generator._run(model, request, tracker)}
        except Interrupted:
            return {"results": []}
        except GouacheError as err:  # the request's fault: the front answers it as a local job's
            return {"error": err}
        finally:
            emit(_DONE)
