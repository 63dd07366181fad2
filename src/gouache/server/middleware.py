"""ASGI guards around the whole app (a web UI mounted later is behind them too): HTTP basic auth
(A1111's ``--api-auth``), a limit on the request body, and :class:`BrowserGuard`, which keeps web
pages of other sites from driving the server through a visitor's browser."""

from __future__ import annotations

import base64
import binascii
import json
import secrets

from starlette.exceptions import HTTPException


class BasicAuth:
    """Every HTTP and websocket request needs one of ``credentials`` (``{user: password}``);
    otherwise 401 with ``WWW-Authenticate: Basic``, as A1111 answers."""

    def __init__(self, app, credentials: dict[str, str]):
        self.app = app
        self.credentials = credentials

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and not self._allowed(scope):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await _send_json(send, 401, {"detail": "Incorrect username or password"},
                             [(b"www-authenticate", b'Basic realm="gouache"')])
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope) -> bool:
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, value = header.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = self.credentials.get(user)
        # compare even for an unknown user, so the time taken does not tell which users exist
        ok = secrets.compare_digest(password.encode(), (expected or "\0").encode())
        return bool(sep) and expected is not None and ok


class BodyLimit:
    """A body over ``limit`` bytes answers 413: at once by its Content-Length, or as it streams in."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is over this server's limit of {self.limit / 2**20:g} MB (gouache serve --max-body-mb)"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _send_json(send, 413, {"error": "RequestTooLarge", "detail": message})
            return
        seen = 0

        async def counted():
            nonlocal seen
            event = await receive()
            seen += len(event.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, detail=message)  # FastAPI re-raises it from body parsing
            return event

        await self.app(scope, counted, send)


STATE_CHANGING = (b"POST", b"PUT", b"PATCH", b"DELETE")
# the content types a web page may POST cross-site without a CORS preflight (the Fetch standard's
# "CORS-safelisted" ones); the API takes JSON, so on /sdapi they mean a form or script of another site
_SIMPLE_TYPES = (b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data")
JSON_ROUTES = ("/sdapi/", "/rembg")  # the API's routes: A1111's, and sd-webui-rembg's at the root


class BrowserGuard:
    """Refuses what only a web page of another site would send:

    * a state-changing request (POST, PUT, PATCH, DELETE, and every websocket) whose ``Origin`` is
      not this server's own or one of ``allowed_origins`` (``--cors-allow-origins``); a browser sends
      ``Origin`` with every cross-origin POST, so a page elsewhere cannot start, stop or change jobs;
    * a POST to the API (``/sdapi``, ``/rembg``) with a form or text content type: the API takes JSON;
    * with ``loopback`` (the server is bound to 127.0.0.1 or ::1), a ``Host`` header that does not
      name loopback: a DNS-rebinding page reaches the port under its own host name;
    * and it strips CORS headers that no allowed origin asked for (Gradio adds its own for
      localhost pages), so no other site's script can read the answers.
    """

    def __init__(self, app, loopback: bool, allowed_origins: list[str] | None = None):
        self.app = app
        self.loopback = loopback
        self.allowed = {o.lower().encode() for o in allowed_origins or []}

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"")
        problem = self._problem(scope, headers, host)
        if problem is not None:
            status, message = problem
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await _send_json(send, status, {"error": "Forbidden", "detail": message})
            return
        origin = headers.get(b"origin", b"").lower()
        if origin in self.allowed:
            await self.app(scope, receive, send)
            return

        async def without_cors(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [(k, v) for k, v in message.get("headers", [])
                                                  if not k.lower().startswith(b"access-control-")]}
            await send(message)

        await self.app(scope, receive, without_cors)

    def _problem(self, scope, headers: dict, host: bytes) -> tuple[int, str] | None:
        if self.loopback and _hostname(host) not in (b"127.0.0.1", b"localhost", b"[::1]", b"::1"):
            return 421, ("this server listens on loopback only and answers requests addressed to localhost or "
                         "127.0.0.1, not to another host name (gouache serve --listen serves the network)")
        method = scope.get("method", "GET").encode() if scope["type"] == "http" else b"WEBSOCKET"
        if method not in STATE_CHANGING and method != b"WEBSOCKET":
            return None
        origin = headers.get(b"origin")
        if origin is not None and origin.lower() not in self.allowed and _netloc(origin) != host.lower():
            return 403, (f"cross-origin request refused: a page of {origin.decode('latin-1')[:100]} may not use this "
                         "server (gouache serve --cors-allow-origins lists the sites that may)")
        if origin is None and headers.get(b"sec-fetch-site") == b"cross-site":
            return 403, "cross-site request refused"
        if scope["type"] == "http" and scope.get("path", "").startswith(JSON_ROUTES):
            kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if kind in _SIMPLE_TYPES:
                return 415, f"the API takes JSON (Content-Type: application/json), not {kind.decode('latin-1')}"
        return None


def _hostname(host: bytes) -> bytes:
    """``Host``'s name without the port (``[::1]:7860`` → ``[::1]``)."""
    host = host.lower()
    if host.startswith(b"["):
        return host[: host.find(b"]") + 1]
    return host.rsplit(b":", 1)[0] if host.count(b":") == 1 else host


def _netloc(origin: bytes) -> bytes:
    """``scheme://host:port`` → ``host:port``; default ports dropped, as browsers drop them from Host."""
    _, sep, rest = origin.lower().partition(b"://")
    if not sep:
        return b""
    for scheme, port in ((b"http", b":80"), (b"https", b":443")):
        if origin.lower().startswith(scheme + b"://") and rest.endswith(port):
            rest = rest[: -len(port)]
    return rest.rstrip(b"/")


async def _send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})
