"""Many generations from one file of jobs, on this machine or on a Ray cluster (``gouache batch``).

A batch is a list of :class:`~gouache.batch.tasks.Job` (one per line of the jobs file, each a
validated request with its seeds fixed), cut into one :class:`~gouache.batch.tasks.ImageTask` per
image. A runner makes the images: :func:`~gouache.batch.run.local_results` in this process, or
:func:`~gouache.batch.ray_runner.ray_results` on a Ray Data actor pool, both through the same
:class:`~gouache.batch.worker.BatchWorker`; :func:`~gouache.batch.run.run_batch` writes every PNG the
runner returns and keeps ``manifest.jsonl`` (:mod:`gouache.batch.manifest`), so that a run started
again makes only the images that are missing.
"""
