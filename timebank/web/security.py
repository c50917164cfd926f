"""Security headers on every response, and CORS for partner web apps (off by default)."""

from __future__ import annotations

from litestar.config.cors import CORSConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import Message, Scope

from timebank.config import Settings
from timebank.logs import request_id_var
from timebank.web.requestid import request_id_from

_ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-site",
}
# The API returns data, never pages: nothing may be loaded, framed or cached from it.
_API = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}
# The docs page loads only the service's own copy of Swagger UI (and runs its inline set-up).
_DOCS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
}


async def add_security_headers(message: Message, scope: Scope) -> None:
    """A ``before_send`` hook, so it also covers the router's own 404/405 responses:
    security headers and the request id on every HTTP response."""
    if scope["type"] != ScopeType.HTTP or message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message)
    for name, value in _ALWAYS.items():
        headers[name] = value
    path = scope.get("path", "")
    if path.startswith("/schema"):
        for name, value in _DOCS.items():
            headers.setdefault(name, value)
    elif not path.startswith("/static/"):
        for name, value in _API.items():
            headers.setdefault(name, value)
    if "x-request-id" not in headers:
        headers["X-Request-ID"] = request_id_var.get() or request_id_from(scope)
    if headers.get("content-type", "").startswith("application/problem+json"):
        # every problem's title (and some details) follow Accept-Language; appended, so a
        # CORS Vary: Origin set on the way out is kept
        vary = headers.get("vary", "")
        if "accept-language" not in vary.lower():
            headers["Vary"] = f"{vary}, Accept-Language" if vary else "Accept-Language"


def cors_config(settings: Settings) -> CORSConfig | None:
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if not origins:
        return None
    return CORSConfig(
        allow_origins=origins,
        allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
        expose_headers=["Idempotent-Replayed", "X-Request-ID", "Retry-After", "Location"],
        allow_credentials=False,
        max_age=600,
    )
