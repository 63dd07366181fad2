"""``gouache.server.rayserve.app:build``: gouache's A1111 API and web UI as one Ray Serve
application, for a KubeRay ``RayService`` (``deploy/rayservice.yaml``) or ``serve run``.

``gouache serve --ray`` runs the front (gouache's FastAPI app) under uvicorn where it is typed and
puts only the generation worker on Ray. Here both are deployments of one Serve application, behind
Serve's own HTTP proxy:

* ``front``: one replica holding the same app, built by :func:`~gouache.server.app.create_app`
  inside the replica when it starts, with a :class:`~gouache.server.rayserve.front.RayGenerator`
  as its generator: it checks, queues and answers requests, and keeps ``/progress``'s state (hence
  one replica: ``/progress`` and ``/interrupt`` must reach the replica that queued the job);
* ``generation``: :class:`~gouache.server.rayserve.worker.GenerationWorker`, N replicas or an
  autoscaling range (:func:`~gouache.server.rayserve.cluster.worker_deployment`, as the CLI's).

The builder's ``args`` (``serveConfigV2: applications: [{import_path: …, args: {…}}]``) are
``gouache serve``'s settings by their :class:`~gouache.server.config.ServerConfig` names, and
``--ray``'s by their :class:`~gouache.server.rayserve.cluster.RayOptions` names; see :data:`ARGS`.

>>> from ray import serve                                                      # doctest: +SKIP
>>> serve.run(build({"replicas": "1-4", "model": "gouache-tiny"}), name="gouache", route_prefix="/")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging

from gouache.errors import GouacheError, InvalidArgument
from gouache.server.config import ServerConfig
from gouache.server.rayserve.cluster import WORKER_NAME, RayOptions, RayUnavailable, _import_ray, worker_deployment

logger = logging.getLogger(__name__)

FRONT_NAME = "front"
# requests the front's one replica takes at once: every one, as `gouache serve` does (it answers 503
# itself past --queue-size), so that /progress is never queued by Serve behind running jobs
FRONT_MAX_ONGOING = 1000
MIN_RAY = (2, 47)  # serve.ingress(builder function): ray-project/ray#52892

# args: ServerConfig's fields but `port` (Serve's http_options decide it), RayOptions' but `address`
# (the cluster is the one Serve runs on), and the front replica's CPUs
SERVER_ARGS = tuple(f.name for f in dataclasses.fields(ServerConfig) if f.name != "port")
RAY_ARGS = tuple(f.name for f in dataclasses.fields(RayOptions) if f.name != "address")
ARGS = (*SERVER_ARGS, *RAY_ARGS, "front_cpus")


@dataclasses.dataclass
class ServiceArgs:
    """The builder's ``args``, checked: ``ServiceArgs.parse({"replicas": 2, "max_steps": 50})``.

    ``host`` is the address Serve's HTTP proxy listens on (its ``http_options.host``), default
    ``0.0.0.0`` as in a RayService: ``127.0.0.1`` or ``localhost`` turns on the loopback-only
    checks of ``gouache serve`` (a request must name loopback in its ``Host``).

    >>> ServiceArgs.parse({"replicas": "1-4"}).ray.replica_range
    (1, 4)
    """

    server: ServerConfig
    ray: RayOptions
    front_cpus: float = 1.0

    @classmethod
    def parse(cls, args: dict | None) -> ServiceArgs:
        """The settings in ``args``; a bad one is one :class:`~gouache.errors.GouacheError` that names it."""
        try:
            return cls._parse({} if args is None else args)
        except GouacheError as err:  # Serve shows it as the application's status: say whose it is
            raise type(err)(f"gouache's Serve application args: {err}") from None

    @classmethod
    def _parse(cls, args: dict) -> ServiceArgs:
        if not isinstance(args, dict):
            raise InvalidArgument(f"the application's `args` must be a mapping of settings, got {args!r}")
        unknown = sorted(str(name) for name in args if name not in ARGS)
        if unknown:
            raise InvalidArgument(f"unknown `args` of gouache's Serve application: {', '.join(unknown)}; "
                                  f"the known ones are: {', '.join(ARGS)}")
        server = {"host": "0.0.0.0", **{k: v for k, v in args.items() if k in SERVER_ARGS}}
        ray = {k: v for k, v in args.items() if k in RAY_ARGS}
        for name, value in server.items():
            _check_type(name, value, ServerConfig.__dataclass_fields__[name].default)
        if "replicas" in ray and isinstance(ray["replicas"], int) and not isinstance(ray["replicas"], bool):
            ray["replicas"] = str(ray["replicas"])  # YAML's `replicas: 2`
        for name, value in ray.items():
            _check_type(name, value, RayOptions.__dataclass_fields__[name].default)
        front_cpus = args.get("front_cpus", 1.0)
        _check_type("front_cpus", front_cpus, 1.0)
        if not 0 <= front_cpus <= 64:
            raise InvalidArgument(f"`front_cpus` must be from 0 to 64, got {front_cpus!r}")
        config = ServerConfig(**server)
        config.validate()
        from gouache.server.catalog import find_checkpoint

        find_checkpoint(config.model, "model")  # an unknown model is one line now, not a failed replica
        return cls(config, RayOptions(**ray).validate(), float(front_cpus))


def _check_type(name: str, value, default) -> None:
    """``value`` has the kind of the field's ``default`` (a string where the default is None)."""
    kind = type(default) if default is not None else str
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok:
        words = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}
        raise InvalidArgument(f"`{name}` must be {words[kind]}, got {value!r}")


def build(args: dict | None = None):
    """Serve's application builder: ``args`` (see :class:`ServiceArgs`) → the application, the
    ``front`` deployment bound to the ``generation`` deployment.

    >>> app = build({"replicas": 2, "api_auth_file": "/etc/gouache/users"})   # doctest: +SKIP
    """
    service = ServiceArgs.parse(args)  # before Ray: a bad setting is one line, wherever Ray is
    ray = _import_ray()
    from ray import serve

    _check_ray_version(ray.__version__)
    config, options = service.server, service.ray
    if not config.loopback and not config.credentials():
        logger.warning("gouache: serving on %s without `api_auth_file`: anyone who can reach it can use it",
                       config.host)

    def front_app():  # Serve calls it in the front's replica as it starts
        return _front_app(config, options)

    front = serve.deployment(
        serve.ingress(front_app)(), name=FRONT_NAME, num_replicas=1, max_ongoing_requests=FRONT_MAX_ONGOING,
        ray_actor_options={"num_cpus": service.front_cpus}, logging_config={"log_level": "WARNING"})
    # the worker is bound into the application (deployed, scaled, replaced with it); the front finds
    # its handle by name in its own application (the builder function has no constructor arguments)
    return front.bind(worker_deployment(config, options).bind(config))


def _front_app(config: ServerConfig, options: RayOptions):
    """The front's FastAPI app, in its replica: ``gouache serve --ray``'s, on this application's worker."""
    from ray import serve

    from gouache.server.app import create_app
    from gouache.server.rayserve.front import RayGenerator

    application = serve.get_replica_context().app_name
    handle = serve.get_deployment_handle(WORKER_NAME, app_name=application)
    generator = RayGenerator(config, handle, options.stall_timeout, options.start_timeout)
    # preload: the first job asks a replica what the server's model is (off the event loop)
    return create_app(config, generator=generator, workers=options.replica_range[1], preload=True)


def _check_ray_version(version: str) -> None:
    numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if numbers < MIN_RAY:
        raise RayUnavailable(f"gouache's Serve application needs Ray >= {'.'.join(map(str, MIN_RAY))} (an ingress "
                             f"built in its replica); this is Ray {version}: pip install -U 'ray[serve]'")
