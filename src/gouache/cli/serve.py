"""``gouache serve``: the web UI at ``/`` and the AUTOMATIC1111-compatible REST API (``/sdapi/v1``,
docs at ``/docs``), in one process."""

from __future__ import annotations

import dataclasses
import sys

from gouache.server.config import ServerConfig

# ServerConfig field -> flag, and its help (types and defaults come from the dataclass)
FLAGS = {"host": "--host", "port": "--port", "model": "--model", "out": "--out", "api_auth": "--api-auth",
         "queue_size": "--queue-size", "max_pixels": "--max-pixels", "max_batch": "--max-batch",
         "max_body_mb": "--max-body-mb", "device": "--device"}
HELP = {
    "host": "address to bind; loopback only unless --listen",
    "port": "port to listen on",
    "model": "checkpoint to load at start: a name from `gouache models`; gouache-tiny if omitted",
    "out": "folder that images saved by a request (save_images) go under",
    "api_auth": "user:password[,user2:password2]: HTTP basic auth on every route",
    "queue_size": "jobs that may wait behind the running one; more answer 503",
    "max_pixels": "largest width x height of an image asked for or sent (413/422 above)",
    "max_batch": "most images per request, batch_size x n_iter (422 above)",
    "max_body_mb": "largest request body in MB (413 above)",
    "device": "device to run on: cpu, cuda, mps",
}


def register(sub) -> None:
    p = sub.add_parser("serve", help="web UI and REST API compatible with AUTOMATIC1111's /sdapi/v1",
                       description="Serve gouache over HTTP: the web UI at /, AUTOMATIC1111's API at /sdapi/v1 "
                                   "(docs at /docs).")
    for f in dataclasses.fields(ServerConfig):
        if f.name in FLAGS:
            kind = type(f.default) if f.default is not None else str
            p.add_argument(FLAGS[f.name], dest=f.name, type=kind, default=f.default,
                           help=f"{HELP[f.name]} (default: {f.default})")
    p.add_argument("--listen", action="store_true", help="bind 0.0.0.0, reachable from the network")
    p.add_argument("--nowebui", dest="ui", action="store_false", help="serve the API alone, without the web UI at /")
    p.set_defaults(handler=run)


def run(args) -> int:
    import uvicorn

    from gouache.server.app import create_app
    from gouache.server.catalog import find_checkpoint

    config = ServerConfig(**{name: getattr(args, name) for name in FLAGS}, ui=args.ui)
    if args.listen:
        config.host = "0.0.0.0"
    config.validate()
    find_checkpoint(config.model, "--model")  # an unknown model is a one-line error before anything starts
    if config.host not in ("127.0.0.1", "localhost", "::1") and not config.api_auth:
        print(f"gouache: warning: serving on {config.host} without --api-auth: anyone who can reach it can use it",
              file=sys.stderr)
    app = create_app(config, preload=True)
    where = "web UI at /, " if config.ui else ""
    print(f"gouache: serving on http://{config.host}:{config.port} ({where}API docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
    return 0
