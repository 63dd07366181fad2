"""ASGI guards around the whole app (a web UI mounted later is behind them too): HTTP basic auth
(A1111's ``--api-auth``) and a limit on the request body."""

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


async def _send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})
