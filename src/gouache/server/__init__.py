"""``gouache serve``: a REST API compatible with AUTOMATIC1111's ``/sdapi/v1``.

:func:`gouache.server.app.create_app` builds the FastAPI app and mounts the web UI
(:mod:`~gouache.server.ui`) on it; :mod:`~gouache.server.state` holds the :class:`Server` both
share; :mod:`~gouache.server.schemas` holds A1111's request and response shapes, :mod:`~gouache.server.jobs`
the queue with its one worker, :mod:`~gouache.server.generator` what that worker runs, and
:mod:`~gouache.server.catalog` the model, sampler, LoRA and embedding lists. Nothing here runs on import.
"""
