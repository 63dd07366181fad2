"""The FastAPI app: AUTOMATIC1111's ``/sdapi/v1`` over gouache, OpenAPI docs at ``/docs``, and the
web UI (:mod:`gouache.server.ui`) at ``/``.

>>> app = create_app(ServerConfig())                     # doctest: +SKIP
>>> uvicorn.run(app, host="127.0.0.1", port=7860)        # doctest: +SKIP

Every :class:`~gouache.errors.GouacheError` becomes an HTTP status in one handler
(:data:`STATUS`): a bad request is a 4xx with a message, a full queue a 503. Generation runs on
the job queue's one worker; the web side only parses, checks and waits, so ``/progress`` answers
throughout. ``app.state.gouache`` holds the :class:`~gouache.server.state.Server` that the API and
the web UI share. Routes come in groups, one function each (:func:`_generation_routes`,
:func:`_progress_routes`, :func:`_option_routes`, :func:`_catalog_routes`, and
:func:`_extension_routes` for what A1111's extensions add outside ``/sdapi/v1``): a new route joins its group.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from contextlib import asynccontextmanager
from typing import Any, Callable

from fastapi import APIRouter, Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from gouache import __version__
from gouache.errors import GouacheError, InvalidArgument, ModelLoadError, OutputError, UnknownName
from gouache.prompts.llm import LLMError
from gouache.server import catalog
from gouache.server.config import ServerConfig
from gouache.server.expand import ExpandBody, ExpandResponse
from gouache.server.expand import response as expanded
from gouache.server.generator import Generator
from gouache.server.jobs import JobQueue, QueueFull, WorkerLost
from gouache.server.schemas import (Img2ImgBody, ImageResponse, InterrogateBody, InterrogateResponse, PngInfoBody,
                                    RembgBody, RembgResponse, RequestTooLarge, Txt2ImgBody, decode_image,
                                    img2img_request, interrogate_image, rembg_job, txt2img_request)
from gouache.server.state import Server
from gouache.server.training import TrainingBusy

logger = logging.getLogger(__name__)

DISCONNECT_POLL_SECONDS = 0.5  # how often a waiting request checks that its client is still there


class ClientGone(GouacheError):
    """The client hung up while its job waited in the queue (nobody reads the answer)."""


# the one place errors become statuses; the most specific class first
STATUS: list[tuple[type[GouacheError], int]] = [
    (QueueFull, 503), (WorkerLost, 503), (ClientGone, 499), (TrainingBusy, 409), (RequestTooLarge, 413), (InvalidArgument, 422), (UnknownName, 422),
    (ModelLoadError, 500), (OutputError, 500),
    (LLMError, 503),  # the server's LLM gave no prompt: down, too slow, or an answer without one
]


def create_app(config: ServerConfig, loader: Callable | None = None, preload: bool = False,
               generator: Generator | None = None, workers: int = 1) -> FastAPI:
    """The app for ``config``; ``loader(path_or_None)`` loads a checkpoint (default
    :func:`gouache.load_model`); ``preload`` loads the server's model as the first job.
    ``generator`` runs the jobs elsewhere (``gouache serve --ray``: a
    :class:`~gouache.server.rayserve.front.RayGenerator`), ``workers`` of them at once."""
    config.validate()
    server = Server(config, JobQueue(config.queue_size, workers), generator or Generator(config, loader))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.queue.start()
        if preload:
            server.queue.submit("load", lambda tracker: server.generator.model_for(None))
        yield
        await run_in_threadpool(server.queue.stop)

    app = FastAPI(title="gouache", version=__version__, lifespan=lifespan,
                  description="AUTOMATIC1111-compatible API of gouache (`/sdapi/v1`).")
    app.state.gouache = server
    app.add_exception_handler(GouacheError, _gouache_error)
    app.add_exception_handler(RequestValidationError, _malformed_body)
    app.add_exception_handler(Exception, _unexpected_error)
    app.include_router(_routes(server), prefix="/sdapi/v1")
    app.include_router(_extension_routes(server))
    if config.ui:
        from gouache.server.ui import mount_ui

        mount_ui(app, server)  # after the API's routes, which keep their paths
    from gouache.server.middleware import BasicAuth, BodyLimit, BrowserGuard

    # the last added is the outermost: CORS (only when asked for), the browser guard, auth, the body limit
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    credentials = config.credentials()
    if credentials:
        app.add_middleware(BasicAuth, credentials=credentials)
    app.add_middleware(BrowserGuard, loopback=config.loopback, allowed_origins=config.allowed_origins())
    if config.allowed_origins():
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.allowed_origins(), allow_methods=["*"],
                           allow_headers=["*"], allow_credentials=bool(credentials))
    return app


async def _gouache_error(request: Request, exc: GouacheError) -> JSONResponse:
    status = next((code for cls, code in STATUS if isinstance(exc, cls)), 400)
    message = str(exc)
    return JSONResponse({"error": type(exc).__name__, "detail": message, "body": None, "errors": message}, status)


async def _malformed_body(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 for a body of the wrong shape, without echoing the input back (it may be large,
    or hold numbers like NaN that JSON cannot carry)."""
    errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))[:300], "type": str(e.get("type", ""))}
              for e in exc.errors()[:20]]
    return JSONResponse({"error": "InvalidArgument", "detail": errors}, 422)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug, not the client's doing: logged with its traceback here, one line to the client."""
    logger.error("gouache: %s %s failed", request.method, request.url.path, exc_info=exc)
    message = f"internal error ({type(exc).__name__}); the server's log has the details"
    return JSONResponse({"error": "InternalError", "detail": message, "body": None, "errors": message}, 500)


def _routes(server: Server) -> APIRouter:
    api = APIRouter()
    for group in (_generation_routes, _progress_routes, _option_routes, _catalog_routes):
        group(api, server)
    return api


async def _run_job(queue: JobQueue, name: str, work, client: Request | None = None) -> Any:
    """Queue ``work`` and wait for it; a job still waiting when its client hangs up is dropped."""
    future = queue.submit(name, work)
    waiting = asyncio.wrap_future(future)
    while client is not None:
        done, _ = await asyncio.wait({waiting}, timeout=DISCONNECT_POLL_SECONDS)
        if done:
            break
        if await client.is_disconnected() and queue.drop(future):  # too late once the job runs
            raise ClientGone(f"the client of a queued {name} job hung up; the job was dropped")
    return await waiting


def _generation_routes(api: APIRouter, server: Server) -> None:
    """``/txt2img``, ``/img2img`` and ``/interrogate``: parsed and checked here, run on the queue's worker."""
    config, queue, generator = server.config, server.queue, server.generator

    @api.post("/txt2img", response_model=ImageResponse)
    async def txt2img(body: Txt2ImgBody, client: Request) -> dict:
        request = await run_in_threadpool(txt2img_request, body, config, generator.options)
        parameters = body.model_dump()
        video = await _video_job(body, request, config)
        if video is not None:  # the AnimateDiff extension's unit (gouache.server.video)
            return await _run_job(queue, "txt2img", lambda t: run_video(
                generator, video, parameters, body.save_images, body.send_images, t), client)
        if body.script_name:
            return await _run_script(server, body, request, parameters, client)
        return await _run_job(queue, "txt2img", lambda t: generator.generate(
            request, parameters, body.save_images, body.send_images, t), client)

    @api.post("/img2img", response_model=ImageResponse)
    async def img2img(body: Img2ImgBody, client: Request) -> dict:
        request = await run_in_threadpool(img2img_request, body, config, generator.options)
        parameters = body.model_dump()
        if not body.include_init_images:
            parameters.update(init_images=None, mask=None)
        video = await _video_job(body, request, config)
        if video is not None:
            return await _run_job(queue, "img2img", lambda t: run_video(
                generator, video, parameters, body.save_images, body.send_images, t), client)
        if body.script_name:
            return await _run_script(server, body, request, parameters, client, img2img=True)
        return await _run_job(queue, "img2img", lambda t: generator.generate(
            request, parameters, body.save_images, body.send_images, t), client)

    @api.post("/interrogate", response_model=InterrogateResponse)
    async def interrogate(body: InterrogateBody, client: Request) -> dict:
        image = await run_in_threadpool(interrogate_image, body, config)
        return {"caption": await _run_job(queue, "interrogate", lambda t: generator.interrogate(image, t), client)}


async def _video_job(body, request, config):
    from gouache.server.video import video_job

    return await run_in_threadpool(video_job, body, request, config)


def run_video(*args):
    from gouache.server.video import run_video as run

    return run(*args)


async def _run_script(server: Server, body, request, parameters: dict, client: Request, img2img: bool = False) -> dict:
    """``script_name``: the X/Y/Z plot or prompt matrix (:mod:`gouache.server.scripts`), planned and
    checked here, every cell run on the queue's worker as one job."""
    from gouache.server.scripts import plan_script, run_script

    job = await run_in_threadpool(plan_script, body, request, server.config, img2img)
    return await _run_job(server.queue, "img2img" if img2img else "txt2img", lambda t: run_script(
        server.generator, job, request, parameters, body.save_images, body.send_images, t), client)


def _progress_routes(api: APIRouter, server: Server) -> None:
    """``/progress``, ``/interrupt`` and ``/skip``: about the job that runs now."""
    queue = server.queue

    @api.get("/progress")
    async def progress(skip_current_image: bool = False) -> dict:
        state = queue.state()
        tracker = queue.current
        image = None if skip_current_image or tracker is None else tracker.preview
        return {**state, "current_image": None if image is None else _png(image), "textinfo": None}

    @api.post("/interrupt")
    async def interrupt() -> None:
        queue.interrupt()

    @api.post("/skip")
    async def skip() -> None:
        queue.interrupt()  # gouache's jobs are one request each: skipping it is interrupting it


def _option_routes(api: APIRouter, server: Server) -> None:
    """``/options``: the settings every request gets; a checkpoint change is a job on the queue."""
    queue, generator = server.queue, server.generator

    @api.get("/options")
    async def get_options() -> dict:
        return await run_in_threadpool(generator.get_options)

    @api.post("/options")
    async def set_options(body: dict[str, Any] = Body(...)) -> None:
        known = await run_in_threadpool(generator.check_options, body)
        if "sd_model_checkpoint" in body:
            name = body["sd_model_checkpoint"]
            await _run_job(queue, "load", lambda t: generator.switch(name, t))
        generator.options.update(known)


def _catalog_routes(api: APIRouter, server: Server) -> None:
    """What can be named (:mod:`gouache.server.catalog`), and ``/png-info``."""
    config = server.config

    @api.get("/samplers")
    async def samplers() -> list[dict]:
        return catalog.samplers()

    @api.get("/schedulers")
    async def schedulers() -> list[dict]:
        return catalog.schedulers()

    @api.get("/sd-models")
    async def sd_models() -> list[dict]:
        return await run_in_threadpool(catalog.sd_models)

    @api.post("/refresh-checkpoints")
    async def refresh_checkpoints() -> None:
        """The folder is read afresh on every listing: nothing to do."""

    @api.get("/loras")
    async def loras() -> list[dict]:
        return await run_in_threadpool(catalog.loras)

    @api.post("/refresh-loras")
    async def refresh_loras() -> None:
        """The folder is read afresh on every listing: nothing to do."""

    @api.get("/embeddings")
    async def embeddings() -> dict:
        return await run_in_threadpool(catalog.embeddings)

    @api.get("/segmenters")
    async def segmenters() -> list[dict]:
        """gouache's own: what ``segmenter`` (img2img's mask from words) and ``/rembg``'s ``model`` can name."""
        return await run_in_threadpool(catalog.segmenters)

    @api.get("/ip-adapters")
    async def ip_adapters() -> list[dict]:
        """gouache's own: what an IP-Adapter unit's ``model`` (and the UI's image prompt) can name."""
        return await run_in_threadpool(catalog.ip_adapters)

    @api.get("/prompt-styles")
    async def prompt_styles() -> list[dict]:
        return await run_in_threadpool(catalog.prompt_styles)

    @api.get("/wildcards")
    async def wildcards() -> list[dict]:
        """gouache's own: what ``__name__`` in a prompt can name (Dynamic Prompts' wildcards)."""
        return await run_in_threadpool(catalog.wildcards)

    @api.get("/scripts")
    async def scripts() -> dict:
        from gouache.server.scripts import SCRIPTS

        return {"txt2img": list(SCRIPTS), "img2img": list(SCRIPTS)}  # A1111's titles, lower case

    @api.post("/png-info")
    async def png_info(body: PngInfoBody) -> dict:
        return await run_in_threadpool(_png_info, body.image, config.max_pixels)


def _extension_routes(server: Server) -> APIRouter:
    """Routes that A1111's extensions add at the root: sd-webui-rembg's ``POST /rembg`` (a cut-out
    by gouache's segmenters, on the queue like a generation), and gouache's own under ``/gouache/v1``
    (:mod:`gouache.server.expand`)."""
    api = APIRouter()
    config, queue, generator = server.config, server.queue, server.generator

    @api.post("/rembg", response_model=RembgResponse)
    async def rembg(body: RembgBody, client: Request) -> dict:
        image, segmenter = await run_in_threadpool(rembg_job, body, config)
        result = await _run_job(queue, "rembg", lambda t: generator.remove_background(
            image, segmenter, body.return_mask, t), client)
        return {"image": None if result is None else _png(result)}

    @api.post("/gouache/v1/prompt/expand", response_model=ExpandResponse)
    async def expand_prompt(body: ExpandBody, client: Request) -> dict:
        """gouache's own: an idea made a prompt and a negative prompt by the server's LLM (``gouache serve --llm``)."""
        expander = server.expander
        idea = expander.check(body.idea)
        if expander.local:
            result = await _run_job(queue, "expand", lambda t: expander.run_local(idea, t), client)
        else:
            result = await run_in_threadpool(expander.run_remote, idea)
        return expanded(result)

    return api


def _png(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _png_info(text: str, max_pixels: int) -> dict:
    """``POST /png-info``: the infotext, the other text chunks, and the parsed parameters."""
    from gouache.metadata.infotext import parse_infotext
    from gouache.metadata.png import PARAMETERS_KEY, infotext_of

    image = decode_image("image", text, max_pixels)
    info = infotext_of(image) or ""
    items = {k: v for k, v in image.info.items() if isinstance(v, str) and k != PARAMETERS_KEY}
    if not info:
        return {"info": "", "items": items, "parameters": {}}
    parsed = parse_infotext(info)
    parameters: dict[str, Any] = {"Prompt": parsed.prompt, "Negative prompt": parsed.negative_prompt}
    for key, raw in parsed.params.items():
        try:
            value = parsed.value(key)
        except GouacheError:
            value = raw
        if key == "Size" and isinstance(value, tuple):
            parameters["Size-1"], parameters["Size-2"] = value  # A1111's split
        else:
            parameters[key] = value
    return {"info": info, "items": items, "parameters": parameters}
