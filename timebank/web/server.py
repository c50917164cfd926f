"""How ``timebank serve`` runs uvicorn, and the defences against slow and greedy clients.

uvicorn bounds the idle time between requests (``timeout_keep_alive``) and, with its h11
parser, the size of a request head; with httptools (the fast parser ``uvicorn[standard]``
picks) the head has no size limit, and with either parser nothing bounds how long a client
may take to send its head: ``timeout_keep_alive`` is cancelled by the first byte received.
So a client trickling a header byte by byte (slow loris) holds its connection for ever.
:class:`HttpProtocol` adds what is missing:

- the request head must arrive within ``header_timeout_seconds`` of the connection opening
  or of the previous response (else 408 ``request_timeout``, connection closed);
- the head may not exceed ``max_header_bytes`` (else 431 ``header_too_large``, closed);
- over ``max_connections`` open connections in the worker, a request is answered 503
  ``unavailable`` with ``Retry-After`` and its connection closed (uvicorn's own
  ``limit_concurrency`` answers plain text).

:class:`BodyTimeoutMiddleware` bounds the time to receive a request body (408). A reverse
proxy in front (nginx, Caddy, a cloud load balancer) should still be used in production for
TLS, per-address connection limits and its own timeouts: see docs/security.md.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseStartEvent,
    Message,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
)
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from timebank.config import Settings, get_settings
from timebank.errors import RequestTimeout
from timebank.web.problems import PROBLEM_JSON, problem_type


def _problem_body(status: int, code: str, title: str, detail: str) -> bytes:
    return json.dumps(
        {
            "type": problem_type(code),
            "title": title,
            "status": status,
            "detail": detail,
            "code": code,
        }
    ).encode()


def _raw_problem(status: int, code: str, title: str, detail: str) -> bytes:
    """A whole HTTP/1.1 problem+json response that closes the connection, for answers given
    before there is a request for the application to handle."""
    body = _problem_body(status, code, title, detail)
    head = [
        f"HTTP/1.1 {status} {title}",
        f"content-type: {PROBLEM_JSON}",
        f"content-length: {len(body)}",
        "connection: close",
        "cache-control: no-store",
        "x-content-type-options: nosniff",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout, a header size limit and a
    problem+json answer over the connection limit. Settings come from the environment
    (``TIMEBANK_*``), so every worker process configures itself.

    "Waiting for a head" runs from the connection opening, the end of the previous response
    or the start of a pipelined request, to the end of the request head. A connection that
    sent nothing in that time is closed silently (like an idle keep-alive connection: an
    unasked-for response could be read as the answer to a request the client sends at that
    moment); one that sent part of a head gets 408 first.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout = settings.header_timeout_seconds
        self.max_header_bytes = settings.max_header_bytes
        self.max_connections = settings.max_connections
        self._head_timer: asyncio.TimerHandle | None = None
        self._waiting = False
        self._raw_head_bytes = 0  # bytes received while the head stayed incomplete
        self._head_bytes = 0  # the parsed head: URL, names and values

    def _wait_for_head(self) -> None:
        self._waiting = True
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _head_done(self) -> None:
        self._waiting = False
        self._raw_head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int, code: str, title: str, detail: str) -> None:
        self._head_done()
        if not self.transport.is_closing():
            self.transport.write(_raw_problem(status, code, title, detail))
            self.transport.close()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # finish the response in flight, then close
        elif self._raw_head_bytes == 0:
            self._head_done()
            self.transport.close()
        else:
            self._refuse(
                408,
                "request_timeout",
                "Request Timeout",
                f"The request head did not arrive within {self.header_timeout:g} s",
            )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait_for_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._waiting and not self.transport.is_closing():
            self._raw_head_bytes += len(data)
            if self._raw_head_bytes > self.max_header_bytes:
                self._refuse(431, *_HEADER_TOO_LARGE, self._too_large())

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._wait_for_head()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._head_bytes += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self._head_done()
        limit = self.max_connections
        refusal: ASGIApp | None = None
        if self._head_bytes > self.max_header_bytes:
            refusal = _refusal(431, *_HEADER_TOO_LARGE, self._too_large())
        elif limit and (len(self.connections) > limit or len(self.tasks) >= limit):
            refusal = _refusal(
                503, "unavailable", "Service Unavailable", "Too many connections; retry", "1"
            )
        if refusal is None:
            super().on_headers_complete()
            return
        app, self.app = self.app, refusal  # answered without the application
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.cycle.response_complete:
            self._wait_for_head()

    def _too_large(self) -> str:
        return f"The request head is over {self.max_header_bytes} bytes"


_HEADER_TOO_LARGE = ("header_too_large", "Request Header Fields Too Large")


def _refusal(
    status: int, code: str, title: str, detail: str, retry_after: str | None = None
) -> ASGIApp:
    """An ASGI app that answers every request with this problem and closes the connection."""
    body = _problem_body(status, code, title, detail)
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"cache-control", b"no-store"),
    ]
    if retry_after:
        headers.append((b"retry-after", retry_after.encode()))

    async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": status,
            "headers": headers,
        }
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return refuse


class BodyTimeoutMiddleware:
    """A request body must arrive within ``seconds`` of the request head; otherwise 408
    ``request_timeout`` and the connection is closed (what was read of it is discarded)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        state = {"body_done": False, "timed_out": False}

        async def timed_receive() -> ReceiveMessage:
            if state["body_done"]:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                state["timed_out"] = True
                raise RequestTimeout(
                    f"The request body did not arrive within {self.seconds:g} s"
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                state["body_done"] = True
            return message

        async def closing_send(message: Message) -> None:
            if state["timed_out"] and message["type"] == "http.response.start":
                MutableScopeHeaders.from_message(message)["connection"] = "close"
            await send(message)

        await self.app(scope, timed_receive, closing_send)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn settings ``timebank serve`` uses (besides host, port and workers)."""
    trusted = [p.strip() for p in settings.trusted_proxies.split(",") if p.strip()]
    return {
        "http": "timebank.web.server:HttpProtocol",
        "timeout_keep_alive": settings.keep_alive_timeout_seconds,
        "log_config": None,
        "access_log": False,
        # uvicorn believes X-Forwarded-For from loopback by default: from nobody unless the
        # operator names their proxies (TIMEBANK_TRUSTED_PROXIES)
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
    }
