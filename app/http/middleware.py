"""Pure-ASGI middleware: request id and security headers on every response, body-size limit."""

from __future__ import annotations

import logging
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("coverproof.http")

API_CSP = "default-src 'none'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'"
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "ambient-light-sensor",
        "autoplay",
        "battery",
        "bluetooth",
        "camera",
        "display-capture",
        "document-domain",
        "encrypted-media",
        "fullscreen",
        "geolocation",
        "gyroscope",
        "hid",
        "idle-detection",
        "local-fonts",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "picture-in-picture",
        "publickey-credentials-create",
        "publickey-credentials-get",
        "screen-wake-lock",
        "serial",
        "storage-access",
        "usb",
        "web-share",
        "xr-spatial-tracking",
    )
)
SECURITY_HEADERS = {
    "strict-transport-security": "max-age=63072000; includeSubDomains; preload",
    "content-security-policy": API_CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "permissions-policy": PERMISSIONS_POLICY,
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "cache-control": "no-store",
}


# The same headers as raw pairs, plus ``Vary: Origin`` (what the CORS middleware adds when it
# runs; a response differs by Origin even without it: a foreign one is refused).
_DEFAULT_PAIRS = tuple(
    (name.encode(), value.encode())
    for name, value in {**SECURITY_HEADERS, "vary": "Origin"}.items()
)


class SecurityHeaders:
    """Gives each request a fresh id (for logs and masked errors; never taken from the client),
    adds the security headers to every response (a page may set a narrower CSP of its own) and
    answers a bare 500, headers included, if anything below fails before responding."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        id_pair = (b"x-request-id", request_id.encode())
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", ()))
                present = {bytes(name).lower() for name, _ in headers}
                headers = [h for h in headers if bytes(h[0]).lower() != b"x-request-id"]
                headers += [pair for pair in _DEFAULT_PAIRS if pair[0] not in present]
                message["headers"] = [*headers, id_pair]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception("unhandled error [request %s]", request_id)
            if started:
                raise
            await send_with_headers(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                }
            )
            await send({"type": "http.response.body", "body": b"Internal server error."})


class RefuseUpgrade:
    """400, the connection closed after it, for a request asking to upgrade the connection (to
    WebSocket, h2c, anything) or to tunnel (CONNECT): the app serves none, and uvicorn's default
    parser (httptools) reads such a request as ending with its headers, whatever its
    Content-Length, and the rest of the stream as requests of its own: one smuggled inside the
    body, past a proxy that forwards Upgrade (and trusted as coming from it). Inside
    SecurityHeaders, so the refusal carries the security headers as every answer does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            scope["method"] == "CONNECT" or any(name == b"upgrade" for name, _ in scope["headers"])
        ):
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": b"Upgrading is not supported."})
            return
        await self.app(scope, receive, send)


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """413 for a body over the limit, before anything parses it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                await self._refuse(send)
                return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send(
            {
                "type": "http.response.body",
                "body": b'{"errors":[{"message":"Request body too large.",'
                b'"extensions":{"code":"PAYLOAD_TOO_LARGE"}}]}',
            }
        )
