"""Writes from the web: the retry discipline, and Idempotency-Key handling around a use case.

A use case (a service function) writes and commits by itself. :func:`write` runs it in a
write transaction and retries it on a deadlock or serialization failure, as configured.
:func:`idempotent` does the same for a creating use case and hands it a
:class:`~timebank.idempotency.Claim`: the key's record is inserted first, in the same
transaction, and the use case settles it with its result before it commits — so a retry
with the same key replays the stored bytes, and a concurrent duplicate waits and replays.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from litestar import Request, Response
from litestar.datastructures import UploadFile
from litestar.params import Parameter
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from timebank import db, idempotency
from timebank.access import Principal
from timebank.auth import service as auth
from timebank.errors import IdempotencyInFlight
from timebank.idempotency import Claim, Outcome, Replayed
from timebank.ledger import fast
from timebank.ledger.schemas import ExchangeCreate

T = TypeVar("T")

IdempotencyKeyHeader = Parameter(
    header="Idempotency-Key",
    required=False,
    min_length=1,
    max_length=255,
    pattern=idempotency.KEY_PATTERN,
    description="1–255 printable ASCII characters; replays the first 2xx result for this API key.",
)


def created_here(request: Request[Any, Any, Any], body: bytes) -> str:
    """The ``Location`` of what a POST to a collection created: the collection's path and
    the new resource's ``slug`` (time banks, categories) or ``id``."""
    data = json.loads(body)
    return f"{request.url.path.rstrip('/')}/{data.get('slug') or data.get('id')}"


def retries(request: Request[Any, Any, Any]) -> int:
    return int(request.app.state.settings.write_retries)


async def write(
    request: Request[Any, Any, Any], session: AsyncSession, attempt: Callable[[], Awaitable[T]]
) -> T:
    """Run a writing use case, retried as configured (``TIMEBANK_WRITE_RETRIES``)."""
    return await db.write(session, attempt, retries=retries(request))


def view_as(schema: type[BaseModel]) -> Callable[[Any], Any]:
    """A renderer: the result (an ORM object) through its response schema, as JSON."""
    return lambda result: schema.model_validate(result).model_dump(mode="json")


def as_json(result: Any) -> Any:
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    return result


async def idempotent(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    principal: Principal,
    use_case: Callable[[Claim], Awaitable[Any]],
    *,
    status: int = 201,
    render: Callable[[Any], Any] = as_json,
    subject_id: uuid.UUID | None = None,
    unstored_fields: tuple[str, ...] = (),
    location: Callable[[Request[Any, Any, Any], bytes], str] = created_here,
) -> Response[Any]:
    """Run a creating use case at most once per (API key, Idempotency-Key) and answer with
    the bytes it settled, so that a replay is byte-identical."""
    key = idempotency.check_key(request.headers.get("idempotency-key"))
    outcome = await run_once(
        request,
        session,
        principal,
        use_case,
        key=key,
        fp=await fingerprint(request),
        status=status,
        render=render,
        subject_id=subject_id,
        unstored_fields=unstored_fields,
    )
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    if outcome.status == 201:
        headers["Location"] = location(request, outcome.body)
    return Response(
        content=outcome.body,
        status_code=outcome.status,
        media_type="application/json",
        headers=headers,
    )


async def run_once(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    principal: Principal,
    use_case: Callable[[Claim], Awaitable[Any]],
    *,
    key: str | None,
    fp: str,
    status: int = 201,
    render: Callable[[Any], Any] = as_json,
    subject_id: uuid.UUID | None = None,
    unstored_fields: tuple[str, ...] = (),
) -> Outcome:
    """The core of :func:`idempotent`, for the API and the console alike: run the use case
    at most once per (principal, ``key``) — a key's or a console user's (SPEC §7.2) — and
    return its settled result, or the stored one of an earlier run."""
    assert principal.scope_id is not None or key is None
    api_key_id = principal.scope_id or uuid.UUID(int=0)

    async def attempt() -> Claim:
        claim = Claim(api_key_id, key, status, render, unstored_fields)
        await idempotency.claim(session, claim, fp, subject_id)
        result = await use_case(claim)
        if claim.body is None:  # refused as a whole and rolled back (an atomic batch)
            claim.body = idempotency.dump(render(result))
        return claim

    for _ in range(3):
        try:
            claim = await write(request, session, attempt)
            return Outcome(status, claim.body or b"null")
        except Replayed as replayed:
            return replayed.outcome
        except IntegrityError as exc:
            if key is None or "idempotency" not in str(exc.orig).lower():
                raise
            # A concurrent duplicate committed first: replay its stored result.
            outcome = await idempotency.replay_after_race(session, api_key_id, key, fp)
            if outcome is not None:
                return outcome
    raise IdempotencyInFlight("A request with this Idempotency-Key is still being processed")


async def fingerprint(request: Request[Any, Any, Any]) -> str:
    """What an Idempotency-Key is bound to: the method, the path (and query) and the body —
    as JSON, or its bytes' digest for a file (a time sheet)."""
    if request.content_type[0] == "multipart/form-data":
        # a browser draws a new boundary for each submission: bind the key to the file
        upload = (await request.form()).get("file")
        raw = b""
        if isinstance(upload, UploadFile):
            raw = await upload.read()
            await upload.seek(0)
    else:
        raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        body = {"sha256": hashlib.sha256(raw).hexdigest()}
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return idempotency.fingerprint(request.method, path, body)


def session_for(request: Request[Any, Any, Any]) -> AsyncSession:
    """A session of the app's engine for a route that opens one only when it needs it (the
    hot routes, whose PostgreSQL path needs none); use it as ``async with``."""
    session: AsyncSession = request.app.state.sessions()
    return session


async def balance_in_one_call(
    request: Request[Any, Any, Any], slug: str, member_id: uuid.UUID
) -> Response[Any] | None:
    """PostgreSQL: a member's balance with one read (key, bank, member, pending flows)
    judged in Python. ``None`` where that path does not take the request on (SQLite)."""
    pool = request.app.state.driver_pool
    secret = auth.bearer_secret(request.headers.get("authorization"))
    if pool is None or secret is None:
        return None
    async with pool.connection() as conn:
        body = await fast.balance(
            conn,
            secret_hash=auth.hash_secret(secret),
            slug=slug,
            member_id=member_id,
        )
    if body is None:
        return None
    return Response(content=body, status_code=200, media_type="application/json")


async def record_in_one_call(
    request: Request[Any, Any, Any], slug: str, data: ExchangeCreate
) -> Response[Any] | None:
    """PostgreSQL: record an exchange with one read and one write statement, the rules in
    Python (:mod:`timebank.ledger.fast`). ``None`` where that path does not take the request
    on; nothing was written then."""
    pool = request.app.state.driver_pool
    secret = auth.bearer_secret(request.headers.get("authorization"))
    if pool is None or secret is None:
        return None
    key = idempotency.check_key(request.headers.get("idempotency-key"))
    async with pool.connection() as conn:
        answer = await fast.record(
            conn,
            secret_hash=auth.hash_secret(secret),
            slug=slug,
            idempotency_key=key,
            fingerprint=await fingerprint(request) if key else "",
            data=data,
            retries=retries(request),
        )
    if answer is None:
        return None
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
    if answer.status == 201:
        headers["Location"] = created_here(request, answer.body)
    return Response(
        content=answer.body,
        status_code=answer.status,
        media_type="application/json",
        headers=headers,
    )
