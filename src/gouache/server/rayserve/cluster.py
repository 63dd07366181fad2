"""Joining or starting the Ray cluster of ``gouache serve --ray``, and deploying the generation
worker on it as a Ray Serve application of N replicas (or an autoscaling range).

>>> with serve_on_ray(ServerConfig(), RayOptions("local", "2")) as generator:   # doctest: +SKIP
...     app = create_app(config, generator=generator, workers=2)
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from gouache.errors import GouacheError, InvalidArgument
from gouache.server.config import ServerConfig

INSTALL = "pip install 'gouache[ray]' (or: pip install 'ray[serve]')"
APP_NAME = "gouache"  # the Serve application's name on the cluster
WORKER_NAME = "generation"  # the generation worker's deployment in it
MAX_REPLICAS = 256
LOOPBACK_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class RayUnavailable(GouacheError):
    """Ray is not installed, or the cluster named cannot be reached."""


@dataclass
class RayOptions:
    """``gouache serve --ray [ADDRESS] --replicas N|MIN-MAX``.

    ``address``: ``local`` starts a cluster on this machine, on loopback only, stopped with the
    server; ``auto`` joins the one this machine belongs to (``ray start``, ``RAY_ADDRESS``);
    ``ray://HOST:PORT`` joins a remote one through Ray Client. ``replicas``: a number, or
    ``MIN-MAX`` for Serve's autoscaling between them.

    >>> RayOptions("local", "1-4").replica_range
    (1, 4)
    """

    address: str = "local"
    replicas: str = "1"
    cpus_per_replica: float = 1.0  # Ray's num_cpus of each replica; a local cluster gets MAX × this
    stall_timeout: float = 60.0  # seconds a job may go without a word from its replica before it is lost
    start_timeout: float = 300.0  # seconds a replica may take to answer a plain call (it may load a model)

    def validate(self) -> RayOptions:
        if self.address not in ("local", "auto") and not self.address.startswith("ray://"):
            raise InvalidArgument(f"`--ray` must be `local`, `auto` or ray://HOST:PORT, got {self.address!r}")
        if self.address.startswith("ray://"):
            _host_port(self.address)
        self.replica_range  # noqa: B018 - checks the text
        for name in ("cpus_per_replica", "stall_timeout", "start_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidArgument(f"`{name}` must be a positive number, got {value!r}")
        return self

    @property
    def replica_range(self) -> tuple[int, int]:
        """``(min, max)`` replicas: ``"2"`` → (2, 2), ``"1-4"`` → (1, 4)."""
        low, dash, high = str(self.replicas).strip().partition("-")
        if not dash:
            high = low
        if not (low.isdigit() and high.isdigit() and 1 <= int(low) <= int(high) <= MAX_REPLICAS):
            raise InvalidArgument(f"`--replicas` must be a number N or a range MIN-MAX, 1 <= MIN <= MAX <= "
                                  f"{MAX_REPLICAS}, got {self.replicas!r}")
        return int(low), int(high)

    def scaling(self) -> dict:
        """Serve's deployment options for the replica count: fixed, or autoscaling between MIN and MAX
        (one job per replica is the target: a replica runs one at a time)."""
        low, high = self.replica_range
        if low == high:
            return {"num_replicas": low}
        return {"autoscaling_config": {"min_replicas": low, "max_replicas": high, "target_ongoing_requests": 1}}


@contextmanager
def serve_on_ray(config: ServerConfig, options: RayOptions):
    """Connect to (or start) the cluster, deploy the replicas, yield the front's
    :class:`~gouache.server.rayserve.front.RayGenerator`; on exit, delete the application and
    disconnect (a cluster started here is stopped)."""
    options.validate()
    started = options.address == "local"
    with _loopback_only() if started else nullcontext():
        ray = connect(options)
        from ray import serve

        try:
            try:
                handle = deploy(config, options)
            except RuntimeError as err:  # Serve gave up on the replicas (their model would not load, ...)
                first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                raise RayUnavailable(f"the replicas did not start on Ray Serve: {first}") from None
            from gouache.server.rayserve.front import RayGenerator

            generator = RayGenerator(config, handle, options.stall_timeout, options.start_timeout)
            generator.model_for(None)  # the replicas answer before the server opens
            yield generator
        finally:
            try:
                if started:
                    serve.shutdown()
                else:
                    serve.delete(APP_NAME)  # the cluster is someone else's: only gouache's app goes
            finally:
                ray.shutdown()


def connect(options: RayOptions):
    """``ray``, initialised on the cluster ``options.address`` names; one line when it cannot be.
    A local cluster is started within :func:`_loopback_only`."""
    ray = _import_ray()
    if options.address == "local":
        low, high = options.replica_range
        ray.init(address="local", num_cpus=max(1, round(high * options.cpus_per_replica)), include_dashboard=False,
                 log_to_driver=False)
        return ray
    if options.address.startswith("ray://"):
        host, port = _host_port(options.address)
        try:  # Ray Client retries for a long while: first, is anything listening there?
            socket.create_connection((host, port), timeout=5).close()
        except OSError as err:
            raise RayUnavailable(f"cannot reach the Ray cluster at {options.address}: {err.strerror or err} "
                                 "(is its head running, with the Ray Client server on that port?)") from None
    try:
        ray.init(address=options.address, log_to_driver=False)
    except (ConnectionError, RuntimeError, TimeoutError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise RayUnavailable(f"cannot join the Ray cluster at {options.address}: {first}") from None
    return ray


def _import_ray():
    try:
        import ray
        import ray.serve  # the serve extra
    except ImportError:
        raise RayUnavailable(f"`--ray` needs Ray Serve, which is not installed: {INSTALL}") from None
    return ray


@contextmanager
def _loopback_only():
    """While it lasts, a cluster started here binds 127.0.0.1 only, and reports no usage stats.

    The switch is Ray's own for a one-machine cluster (its default on macOS and Windows):
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read by each Ray process as it imports Ray; this
    process imported it already, so its copy of the flag is set too. Both are put back after.
    """
    ray = _import_ray()
    from ray._private import ray_constants

    saved = {name: os.environ.get(name) for name in (LOOPBACK_VARIABLE, "RAY_USAGE_STATS_ENABLED")}
    flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_VARIABLE] = "0"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield ray
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = flag
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def deploy(config: ServerConfig, options: RayOptions):
    """The generation worker as the Serve application ``gouache``: its ``DeploymentHandle``. Serve's
    own HTTP proxy stays off: gouache's app is the front."""
    from ray import serve

    serve.start(proxy_location="Disabled")
    return serve.run(worker_deployment(config, options).bind(config), name=APP_NAME, route_prefix=None)


def worker_deployment(config: ServerConfig, options: RayOptions):
    """The Serve deployment ``generation`` of :class:`~gouache.server.rayserve.worker.GenerationWorker`,
    with ``options``' replicas and resources; unbound (``.bind(config)`` makes it part of an application:
    :func:`deploy`'s, or the RayService's of :mod:`gouache.server.rayserve.app`)."""
    from ray import serve

    from gouache.server.rayserve.worker import GenerationWorker

    gpus = 1 if config.device.startswith("cuda") else 0
    return serve.deployment(
        GenerationWorker, name=WORKER_NAME,
        max_ongoing_requests=2,  # a job, and the next one waiting in the replica (or a plain call)
        ray_actor_options={"num_cpus": options.cpus_per_replica, "num_gpus": gpus},
        health_check_period_s=2, health_check_timeout_s=30,
        logging_config={"log_level": "WARNING"}, **options.scaling())


def _host_port(address: str) -> tuple[str, int]:
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"`--ray` must be ray://HOST:PORT (Ray Client's port, 10001 by default), got {address!r}")
    return host, int(port)
