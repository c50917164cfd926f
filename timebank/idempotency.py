"""Idempotency-Key handling (SPEC §3): the key record is written in the same transaction as
the effect, so a concurrent duplicate blocks on the record's primary key and then replays.
Only 2xx results are stored; a refused request rolls the record back with its effect."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, Text, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from timebank.db import Base, run_write, table_of, utcnow
from timebank.errors import Duplicate, IdempotencyInFlight, IdempotencyKeyReused, InvalidInput
from timebank.types import DateTimeUTC


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    api_key_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    subject_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow, index=True)


@dataclass(frozen=True)
class Outcome:
    status: int
    body: bytes
    replayed: bool = False


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps(
        {"m": method.upper(), "p": path, "b": body}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


KEY_PATTERN = r"^[ -~]{1,255}$"  # printable ASCII, as documented in OpenAPI


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not re.fullmatch(KEY_PATTERN, key):
        raise InvalidInput("Idempotency-Key", "must be 1-255 printable ASCII characters")
    return key


def dump(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


async def _replay(
    session: AsyncSession, api_key_id: uuid.UUID, key: str, fp: str
) -> Outcome | None:
    row = (
        await session.execute(
            select(IdempotencyRecord).where(
                IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.key == key
            )
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    if row.fingerprint != fp:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was used with a different request",
        )
    if row.status_code is None:
        raise IdempotencyInFlight("A request with this Idempotency-Key is still being processed")
    if row.response_body is None:  # purged by a member's erasure
        raise Duplicate(
            "A request with this Idempotency-Key was already carried out; its stored response "
            "was erased with a member's personal data"
        )
    return Outcome(row.status_code, row.response_body.encode(), replayed=True)


async def run_idempotent(
    session: AsyncSession,
    *,
    api_key_id: uuid.UUID,
    key: str | None,
    fp: str,
    effect: Callable[[AsyncSession], Awaitable[tuple[int, Any]]],
    subject_id: uuid.UUID | None = None,
    retries: int = 8,
    unstored_fields: tuple[str, ...] = (),
) -> Outcome:
    """Run ``effect`` (which must not commit) at most once per (API key, Idempotency-Key).

    ``unstored_fields`` (e.g. a new key's ``secret``) are in the first response only: the
    stored copy, and so every replay, leaves them out."""
    if key is None:

        async def plain(s: AsyncSession) -> Outcome:
            status, payload = await effect(s)
            return Outcome(status, dump(payload))

        return await run_write(session, plain, retries=retries)

    async def work(s: AsyncSession) -> Outcome:
        earlier = await _replay(s, api_key_id, key, fp)
        if earlier is not None:
            return earlier
        await s.execute(
            insert(table_of(IdempotencyRecord)).values(
                api_key_id=api_key_id,
                key=key,
                fingerprint=fp,
                subject_id=subject_id,
                created_at=utcnow(),
            )
        )
        status, payload = await effect(s)
        body = dump(payload)
        stored = body
        if unstored_fields and isinstance(payload, dict):
            stored = dump({k: v for k, v in payload.items() if k not in unstored_fields})
        await s.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.key == key)
            .values(status_code=status, response_body=stored.decode())
        )
        return Outcome(status, body)

    for _ in range(3):
        try:
            return await run_write(session, work, retries=retries)
        except IntegrityError as exc:
            if "idempotency" not in str(exc.orig).lower():
                raise
            # A concurrent duplicate committed first: replay its stored result.
            async with session.begin():
                earlier = await _replay(session, api_key_id, key, fp)
            if earlier is not None:
                return earlier
    raise IdempotencyInFlight("A request with this Idempotency-Key is still being processed")


async def purge_expired(session: AsyncSession, older_than: datetime) -> int:
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at < older_than)
    )
    return int(getattr(result, "rowcount", 0) or 0)
