"""The front's side of ``gouache serve --ray``: a :class:`~gouache.server.generator.Generator` whose
model work runs on Ray Serve replicas.

Everything a job does besides denoising stays the base class's, on the front: checking the
request, saving images under ``--out``, A1111's response, the scripts' grids. Only
:meth:`RayGenerator._run` (one request's images) and :meth:`RayGenerator.model_for` (what a
checkpoint is) ask a replica. A replica that dies under a job (its process killed, its node gone)
is replaced by Serve; its job runs once more on another replica, and a second loss, or a replica
silent for ``stall_timeout`` seconds, answers :class:`~gouache.server.jobs.WorkerLost` (HTTP 503).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from gouache.pipelines.request import GeneratedImage, GenerationRequest
from gouache.server.catalog import find_checkpoint
from gouache.server.config import ServerConfig
from gouache.server.generator import Generator
from gouache.server.jobs import Tracker, WorkerLost

logger = logging.getLogger(__name__)


class _Lost(Exception):
    """The replica running a job stopped answering (died, or silent too long)."""


class RayGenerator(Generator):
    """The server's model work, on the replicas behind ``handle`` (a Ray Serve ``DeploymentHandle``
    of :class:`~gouache.server.rayserve.worker.GenerationWorker`).

    >>> generator = RayGenerator(ServerConfig(), handle, stall_timeout=60)   # doctest: +SKIP
    >>> create_app(config, generator=generator, workers=2)                   # doctest: +SKIP
    """

    def __init__(self, config: ServerConfig, handle, stall_timeout: float = 60.0, start_timeout: float = 300.0):
        super().__init__(config, loader=_no_local_model)
        self.handle = handle
        self.stall_timeout = stall_timeout
        self.start_timeout = start_timeout
        self.jobs_by_replica: Counter[int] = Counter()  # replica pid -> jobs it answered
        self._models: dict = {}  # checkpoint name -> ReplicaModel

    def model_for(self, name: str | None):
        """What the checkpoint is, as a replica loaded it (asked once per checkpoint name)."""
        entry = find_checkpoint(name or self.checkpoint)
        if entry.name not in self._models:
            self._models[entry.name] = self._call("describe", entry.name)
        self.loaded, self._loaded_name = self._models[entry.name], entry.name
        return self.loaded

    def pid(self) -> int:
        """The process id of one replica (whichever Serve picks)."""
        return self._call("pid")

    def _run(self, model, request: GenerationRequest, tracker: Tracker, progress=None) -> list[GeneratedImage]:
        checkpoint = find_checkpoint(request.model or self.checkpoint).name
        try:
            return asyncio.run(self._stream(request, checkpoint, tracker, progress))
        except _Lost as err:
            logger.warning("gouache: %s; running the %s job again on another replica", err, tracker.job or "")
        tracker.step = 0
        try:
            return asyncio.run(self._stream(request, checkpoint, tracker, progress))
        except _Lost as err:
            raise WorkerLost(f"{err}, twice; the job was not finished: try again in a moment") from None

    async def _stream(self, request, checkpoint: str, tracker: Tracker, progress) -> list[GeneratedImage]:
        """One try: send the job, follow its events, cancel it when interrupted or lost."""
        lost = _lost_errors()
        response = self.handle.options(stream=True).run.remote(request, checkpoint, dict(self.options))
        step = progress or tracker.progress
        pid = None
        try:
            while True:
                try:
                    event = await asyncio.wait_for(response.__anext__(), self.stall_timeout)
                except asyncio.TimeoutError:
                    raise _Lost(f"no replica answered for {self.stall_timeout:g} s") from None
                except StopAsyncIteration:
                    raise _Lost("the replica ended the job without an answer") from None
                except lost as err:
                    raise _Lost(f"the replica running the job stopped ({type(err).__name__})") from None
                if "step" in event and "steps" in event:
                    step(event["step"], event["steps"])  # where /interrupt lands: Interrupted
                elif "preview" in event:
                    tracker.show(event["step"], event["total"], event["preview"])
                elif "results" in event:
                    self.jobs_by_replica[pid] += 1
                    return event["results"]
                elif "error" in event:
                    raise event["error"]
                else:  # "pid", "model", "alive": the replica is there
                    pid = event.get("pid", pid)
                    tracker.check()
        except BaseException:
            response.cancel()  # the replica stops the job at its next step
            raise

    def _call(self, method: str, *args):
        """A plain call on one replica, bounded by ``start_timeout`` (it may load a model)."""
        try:
            return getattr(self.handle, method).remote(*args).result(timeout_s=self.start_timeout)
        except TimeoutError:
            raise WorkerLost(f"no replica answered `{method}` in {self.start_timeout:g} s") from None
        except _lost_errors() as err:
            raise WorkerLost(f"the replica asked to `{method}` stopped ({type(err).__name__}); try again") from None


def _lost_errors() -> tuple[type[BaseException], ...]:
    """Ray's exceptions for a replica gone (imported when a job runs: Ray is optional)."""
    from ray import exceptions
    from ray.serve import exceptions as serve_exceptions

    return tuple(getattr(module, name) for module, name in (
        (exceptions, "RayActorError"),  # ActorDiedError, ActorUnavailableError
        (serve_exceptions, "ReplicaUnavailableError"), (serve_exceptions, "DeploymentUnavailableError"))
        if hasattr(module, name))


def _no_local_model(path):
    raise AssertionError("the Ray front loads no model: its replicas do")
