"""Per-key rate limiting (SPEC §3.8): ``TIMEBANK_RATE_LIMIT_PER_MINUTE`` requests a minute
per API key, unauthenticated requests per client address; over it → 429 ``rate_limited``
with ``Retry-After``.

The limiter is a token bucket of ``limit`` tokens refilled at ``limit`` a minute, kept as
one number per key (GCRA: the "theoretical arrival time"), so a request costs one dict
lookup and no database access. It lives in process memory: with N worker processes a key
may get up to N × the limit. That is an abuse limit, not an accounting rule, so nothing
needed for correctness depends on it (SPEC §5).

Keys are identified by the SHA-256 of the secret (as stored), never the secret itself. A
key not yet seen to authenticate (its first request, or after a minute unused) is also
charged to the caller's address, as is every 401; so guessing keys is limited per address
before the guesses reach the database, while a key in use counts only against its own
bucket and is not slowed by other callers behind the same address.

Litestar's ``RateLimitConfig`` was not used: it keeps a list of timestamps per key in a
store (JSON-encoded on every request), keys by client address unless subclassed, and sets
``RateLimit-*`` headers rather than ``Retry-After`` with our problem ``code``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from litestar import Request
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from timebank.auth.service import hash_secret
from timebank.errors import DomainError, RateLimited
from timebank.web.language import localise
from timebank.web.problems import domain_problem

WINDOW_SECONDS = 60.0
EPSILON = 1e-6  # seconds: below this, floating-point noise, not a wait
UNLIMITED_PATHS = frozenset({"/health", "/ready"})


class TokenBuckets:
    """``limit`` requests per minute per key, with bursts of up to ``limit``.

    For each key we keep the time at which its bucket would be full again (``tat``); a
    request adds one emission interval (60 s / limit) to it and is allowed while that stays
    within one window of now. Buckets that are full again are forgotten.
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.interval = WINDOW_SECONDS / per_minute
        self.clock = clock
        self._tat: dict[str, float] = {}
        self._next_sweep = float("-inf")  # the first take schedules the sweeps

    def wait(self, key: str, now: float | None = None) -> float:
        """Seconds until ``key`` may make a request (0 if it may now), charging nothing."""
        now = self.clock() if now is None else now
        over = self._backlog(key, now) + self.interval - WINDOW_SECONDS
        return over if over > EPSILON else 0.0

    def take(self, key: str, now: float | None = None) -> float:
        """Charge one request to ``key`` if it has a token: 0.0. Otherwise charge nothing and
        return the seconds until it would have one."""
        now = self.clock() if now is None else now
        if now >= self._next_sweep:
            self._sweep(now)
        backlog = self._backlog(key, now)
        over = backlog + self.interval - WINDOW_SECONDS
        if over > EPSILON:
            return over
        self._tat[key] = now + backlog + self.interval
        return 0.0

    def _backlog(self, key: str, now: float) -> float:
        """How far ahead of ``now`` the key's bucket is: exactly 0 for a full one. (Not
        ``tat - now`` after adding the interval: with a clock value of some size,
        ``(now + 60) - now - 60`` can come out a hair above zero and refuse a fresh key.)"""
        return max(self._tat.get(key, now) - now, 0.0)

    def charge(self, key: str, now: float | None = None) -> None:
        """Charge one request to ``key`` whether or not it has a token left (capped at one
        window, so the debt never exceeds a minute)."""
        now = self.clock() if now is None else now
        tat = max(self._tat.get(key, now), now) + self.interval
        self._tat[key] = min(tat, now + WINDOW_SECONDS + self.interval)

    def __len__(self) -> int:
        return len(self._tat)

    def _sweep(self, now: float) -> None:
        self._tat = {k: t for k, t in self._tat.items() if t > now}
        self._next_sweep = now + WINDOW_SECONDS


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            text = value.decode("latin-1")
            if text[:7].lower() == "bearer " and text[7:].strip():
                return "key:" + hash_secret(text[7:].strip())
            return None
    return None


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return "addr:" + (client[0] if client else "unknown")


async def send_problem(scope: Scope, receive: Receive, send: Send, error: DomainError) -> None:
    """Answer with ``error``'s problem+json from a middleware, through the inner ``send``
    (so the request is logged with its status and carries its request id)."""
    request: Request[Any, Any, Any] = Request(scope, receive, send)
    response = localise(request, domain_problem(error))
    asgi = response.to_asgi_response(app=None, request=request)
    await asgi(scope, receive, send)


class RateLimiter:
    """The limiter of one worker process. One instance is shared by every route (Litestar
    builds a middleware stack per route), so a key's requests to all routes count together."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.buckets = TokenBuckets(per_minute, clock)
        self.clock = clock
        self.proven: dict[str, float] = {}  # key -> until when it counts as authenticated
        self._next_sweep = float("-inf")

    def admit(self, key: str | None, address: str, now: float) -> float:
        """Charge a request; 0.0 if it may go on, else the seconds until it could."""
        if now >= self._next_sweep:
            self.proven = {k: t for k, t in self.proven.items() if t > now}
            self._next_sweep = now + WINDOW_SECONDS
        if key is None:
            return self.buckets.take(address, now)
        if self.proven.get(key, 0.0) > now:
            return self.buckets.take(key, now)
        return self.buckets.take(address, now) or self.buckets.take(key, now)

    def answered(self, key: str | None, address: str, status: int, now: float) -> None:
        """Learn from the response: a key that authenticated is proven for a minute; a
        401 for a key that was proven is charged to its address (unproven ones were)."""
        if key is None:
            return
        if status != 401:
            self.proven[key] = now + WINDOW_SECONDS
        elif self.proven.pop(key, 0.0) > now:
            self.buckets.charge(address, now)


class RateLimitMiddleware:
    """Refuses requests over the limit with 429 ``rate_limited`` and ``Retry-After``."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        limiter = self.limiter
        key = _bearer(scope)
        address = _address(scope)
        now = limiter.clock()
        wait = limiter.admit(key, address, now)
        if wait:
            seconds = max(1, math.ceil(wait))
            await send_problem(
                scope,
                receive,
                send,
                RateLimited(
                    f"Over {limiter.per_minute} requests a minute; retry in {seconds} s",
                    retry_after=seconds,
                ),
            )
            return

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                limiter.answered(key, address, message["status"], now)
            await send(message)

        await self.app(scope, receive, observe)
