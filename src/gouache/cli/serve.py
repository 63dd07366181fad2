"""``gouache serve``: the web UI at ``/`` and the AUTOMATIC1111-compatible REST API (``/sdapi/v1``,
docs at ``/docs``), in one process."""

from __future__ import annotations

import dataclasses
import os
import sys

from gouache.cli.common import UsageError
from gouache.server.config import ServerConfig

# ServerConfig field -> flag, and its help (types and defaults come from the dataclass)
FLAGS = {"host": "--host", "port": "--port", "model": "--model", "out": "--out", "api_auth": "--api-auth",
         "api_auth_file": "--api-auth-file", "cors_allow_origins": "--cors-allow-origins",
         "queue_size": "--queue-size", "max_pixels": "--max-pixels", "max_batch": "--max-batch",
         "max_job_pixels": "--max-job-pixels", "max_steps": "--max-steps", "max_prompt_chars": "--max-prompt-chars",
         "max_and_parts": "--max-and-parts", "max_controlnets": "--max-controlnets", "max_uploads": "--max-uploads",
         "max_body_mb": "--max-body-mb", "datasets": "--datasets", "device": "--device", "compile_mode": "--compile-mode",
         "clip": "--clip", "captioner": "--captioner", "llm": "--llm", "llm_model": "--llm-model",
         "llm_timeout": "--llm-timeout", "llm_max_tokens": "--llm-max-tokens"}
HELP = {
    "host": "address to bind; loopback only unless --listen",
    "port": "port to listen on",
    "model": "checkpoint to load at start: a name from `gouache models`; gouache-tiny if omitted",
    "out": "folder that images saved by a request (save_images) go under",
    "api_auth": "user:password[,user2:password2]: HTTP basic auth on every route (visible in `ps`: prefer "
                "--api-auth-file or the GOUACHE_API_AUTH environment variable)",
    "api_auth_file": "a file of user:password lines: HTTP basic auth on every route",
    "cors_allow_origins": "comma-separated origins (https://app.example) whose web pages may call the server; "
                          "none by default",
    "max_job_pixels": "most pixels one job may make, all its images at their final size (422 above)",
    "max_steps": "most sampling steps, and hires steps, a request may ask for (422 above)",
    "max_prompt_chars": "longest prompt or negative prompt, in characters (413 above)",
    "max_and_parts": "most AND parts in a prompt, each one more model pass per step (422 above)",
    "max_controlnets": "most ControlNet units in one request (422 above)",
    "max_uploads": "most files the web UI keeps uploaded at once (older ones are deleted)",
    "datasets": "folder whose prepared datasets the Train tab lists (default: $GOUACHE_HOME/datasets)",
    "queue_size": "jobs that may wait behind the running one; more answer 503",
    "max_pixels": "largest width x height of an image asked for or sent (413/422 above)",
    "max_batch": "most images per request, batch_size x n_iter (422 above)",
    "max_body_mb": "largest request body in MB (413 above)",
    "device": "device to run on: cpu, cuda, cuda:N, mps",
    "compile_mode": "with --compile: default, reduce-overhead (CUDA graphs), max-autotune, max-autotune-no-cudagraphs",
    "clip": "CLIP model of Interrogate (/sdapi/v1/interrogate): a name in $GOUACHE_HOME/clip or a folder; "
            "left out: the built-in gouache-tiny-clip",
    "captioner": "captioner of Interrogate: a name in $GOUACHE_HOME/captioners or a folder, or 'none'; "
                 "left out: the built-in one if installed",
    "llm": "the LLM of the UI's ✨ and /gouache/v1/prompt/expand: an OpenAI-compatible server's URL, a transformers "
           "causal-LM folder or a name in $GOUACHE_HOME/llm (requests cannot name one); $GOUACHE_LLM if left out",
    "llm_model": "the LLM server's model name; the first it lists if left out",
    "llm_timeout": "seconds one prompt may take (503 after)",
    "llm_max_tokens": "tokens of one reply of the LLM",
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
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet, once per model and shape, "
                                                           "reused by every request after (docs/gpu.md)")
    p.add_argument("--listen", action="store_true", help="bind 0.0.0.0, reachable from the network")
    p.add_argument("--nowebui", dest="ui", action="store_false", help="serve the API alone, without the web UI at /")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run the generations on Ray Serve replicas (docs/scale-out.md): alone, on a Ray cluster "
                        "started here (loopback only); `auto`: the cluster this machine is in; ray://HOST:PORT: a "
                        "remote one")
    p.add_argument("--replicas", default=None, metavar="N|MIN-MAX",
                   help="with --ray: replicas of the model, each loading it once; MIN-MAX scales between them "
                        "with the load (default: 1)")
    p.set_defaults(handler=run)


def run(args) -> int:
    import uvicorn

    from gouache.server.app import create_app
    from gouache.server.catalog import find_checkpoint

    config = ServerConfig(**{name: getattr(args, name) for name in FLAGS}, ui=args.ui, compile=args.compile)
    if args.listen:
        config.host = "0.0.0.0"
    if config.api_auth is None and os.environ.get("GOUACHE_API_AUTH"):
        config.api_auth = os.environ["GOUACHE_API_AUTH"]  # read when the command runs, not at import
    if config.llm is None and os.environ.get("GOUACHE_LLM"):
        config.llm = os.environ["GOUACHE_LLM"]
    config.validate()
    find_checkpoint(config.model, "--model")  # an unknown model is a one-line error before anything starts
    if not config.loopback and not config.credentials():
        print(f"gouache: warning: serving on {config.host} without --api-auth: anyone who can reach it can use it",
              file=sys.stderr)
    where = "web UI at /, " if config.ui else ""
    if args.ray is None:
        if args.replicas is not None:
            raise UsageError("--replicas needs --ray (replicas are Ray Serve's)")
        app = create_app(config, preload=True)
        print(f"gouache: serving on http://{config.host}:{config.port} ({where}API docs at /docs)", file=sys.stderr)
        uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
        return 0
    from gouache.server.rayserve.cluster import RayOptions, serve_on_ray

    options = RayOptions(args.ray, args.replicas or "1").validate()
    with serve_on_ray(config, options) as generator:
        app = create_app(config, generator=generator, workers=options.replica_range[1])
        print(f"gouache: serving on http://{config.host}:{config.port} ({where}API docs at /docs), generating on "
              f"{options.replicas} Ray Serve replica(s) ({options.address})", file=sys.stderr)
        uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
    return 0
