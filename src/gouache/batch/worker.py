"""The worker that makes a batch's images: one per process, its model loaded once.

The same class runs in the ``gouache batch`` process and as a Ray Data actor (``map_batches`` calls
it with a batch of pickled tasks), so that both make the same bytes. A model that cannot be loaded,
or a request that fails, costs only the jobs that need it: their results carry the message.
"""

from __future__ import annotations

import os
import pickle
import socket

from gouache.batch.tasks import ImageResult, ImageTask
from gouache.errors import GouacheError


class BatchWorker:
    """Makes :class:`ImageTask` s; loads ``model`` (None: gouache-tiny) with ``speed`` at once, and any
    other model a task names the first time one does (kept for the next).

    ``threads``: the torch threads of every generation here (``$GOUACHE_THREADS``; None: gouache's
    choice, :mod:`gouache.speed.threads`); ``device``: "cpu" or "cuda".

    >>> worker = BatchWorker(speed=SpeedSettings(), model=None)     # doctest: +SKIP
    >>> worker.run(task).png[:4]                                    # doctest: +SKIP
    b'\\x89PNG'
    """

    def __init__(self, speed=None, model: str | None = None, threads: int | None = None, device: str = "cpu"):
        from gouache.speed.threads import ENV

        if threads is not None:
            import torch

            os.environ[ENV] = str(threads)
            torch.set_num_threads(threads)
        self.device = device
        self.models: dict = {}  # (model, speed) -> LoadedModel, or the GouacheError loading it gave
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._model(model, speed)  # once, before the first task

    def _model(self, name: str | None, speed):
        key = (name, repr(speed))
        if key not in self.models:
            from gouache.pipelines.model import load_model

            try:
                self.models[key] = load_model(name, speed=speed, device=self.device)
            except GouacheError as e:
                self.models[key] = e
        found = self.models[key]
        if isinstance(found, GouacheError):
            shown = name or "gouache-tiny"
            raise GouacheError(f"worker {self.name} cannot load model {shown!r}: {found}")
        return found

    def run(self, task: ImageTask) -> ImageResult:
        """The task's image as PNG bytes with its infotext, or the message of what went wrong."""
        from gouache.metadata.png import png_bytes

        result = ImageResult(task.line, task.image, task.seed, task.file, worker=self.name)
        try:
            images = self._generate(task)
        except GouacheError as e:
            result.error = str(e)
            return result
        result.png = png_bytes(images[0].image, images[0].infotext)
        return result

    def _generate(self, task: ImageTask):
        from gouache.adapters.lora import use_lora_file

        req = task.request
        model = self._model(req.model, task.speed)
        for path, name in task.loras:
            use_lora_file(model, path, name)
        if task.mode == "img2img":
            from gouache.pipelines.img2img import img2img

            return img2img(model, req)
        if task.mode == "inpaint":
            from gouache.pipelines.inpaint import inpaint

            return inpaint(model, req)
        from gouache.pipelines.txt2img import txt2img

        refiner = self._model(req.refiner_checkpoint, task.speed) if req.refiner_checkpoint else None
        return txt2img(model, req, refiner=refiner)

    def __call__(self, batch: dict) -> dict:
        """Ray Data's ``map_batches``: columns ``index`` and ``task`` (a pickled :class:`ImageTask`)
        in; ``index``, ``png`` (b"" on error), ``error`` ("" if none) and ``worker`` out."""
        results = [self.run(pickle.loads(blob)) for blob in batch["task"]]
        return {"index": list(batch["index"]), "png": [r.png or b"" for r in results],
                "error": [r.error or "" for r in results], "worker": [r.worker for r in results]}
