"""``gouache serve --ray``: the generation worker as a Ray Serve deployment with replicas.

The FastAPI app of :mod:`gouache.server.app` stays the front: it parses, checks, queues and answers
as without Ray. Only the model work moves: :class:`~gouache.server.rayserve.front.RayGenerator`
sends each job to a replica of :class:`~gouache.server.rayserve.worker.GenerationWorker` (the model
loaded once per replica) and reads its progress as it streams back; ``/interrupt`` cancels that
stream, which stops the job in the replica that runs it. :mod:`gouache.server.rayserve.cluster`
joins or starts the cluster and deploys the replicas. Nothing here imports Ray until it is called.
"""
