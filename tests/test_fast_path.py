"""PostgreSQL's fast write path (``timebank/ledger/fast.py``): one read, the rules in
Python, one write statement whose guards stop it when a concurrent write moved a balance
out of the range the limit rule allows, or claimed the Idempotency-Key, between the two.

The interleavings are made real: a wrapper around the real asyncpg connection runs another
request (through the API, on another connection) just before the write statement is sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.conftest import Api, simple
from timebank import db
from timebank.auth.service import hash_secret
from timebank.ledger import fast
from timebank.ledger.models import Exchange, Posting
from timebank.ledger.schemas import ExchangeCreate

pytestmark = pytest.mark.parametrize("engine_name", ["postgresql"], indirect=True)


class Interleaved:
    """The real connection; ``before_write`` runs just before the write statement."""

    def __init__(self, conn: Any, before_write: Callable[[], Awaitable[None]]) -> None:
        self.conn = conn
        self.before_write = before_write

    async def fetchrow(self, *args: Any) -> Any:
        return await self.conn.fetchrow(*args)

    async def execute(self, *args: Any) -> Any:
        return await self.conn.execute(*args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        if query == fast.WRITE:
            await self.before_write()
        return await self.conn.fetchval(query, *args)


@pytest.fixture
async def engine(session_maker: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    bind = session_maker.kw["bind"]
    assert isinstance(bind, AsyncEngine)
    return bind


async def _record(
    engine: AsyncEngine,
    secret: str,
    slug: str,
    body: dict[str, Any],
    *,
    key: str | None = None,
    before_write: Callable[[], Awaitable[None]] | None = None,
) -> fast.Answer | None:
    async def nothing() -> None:
        return None

    async with db.autocommit_driver(engine) as conn:
        return await fast.record(
            Interleaved(conn, before_write or nothing),
            secret_hash=hash_secret(secret),
            slug=slug,
            idempotency_key=key,
            fingerprint="fp" if key else "",
            data=ExchangeCreate.model_validate(body),
            retries=0,
        )


async def _exchanges(session_maker: async_sessionmaker[AsyncSession], tb_id: str) -> int:
    async with session_maker() as s:
        count = await s.scalar(select(func.count()).where(Exchange.timebank_id == uuid.UUID(tb_id)))
        return int(count or 0)


async def test_a_broker_key_records_with_two_statements(
    api: Api, engine: AsyncEngine, session_maker: async_sessionmaker[AsyncSession]
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann, bob = await api.member(slug, "Ann"), await api.member(slug, "Bob")
    broker = await api.key(slug, "broker")
    answer = await _record(engine, broker, slug, simple(ann, bob, 90), key="k-1")
    assert answer is not None and answer.status == 201 and not answer.replayed
    assert await api.balance(slug, ann["id"]) == 90
    assert await api.balance(slug, bob["id"]) == -90
    # the postings carry the balance after, in ledger order (provider, then recipient)
    async with session_maker() as s:
        rows = (
            await s.execute(
                select(Posting.minutes, Posting.balance_after_minutes).order_by(Posting.id)
            )
        ).all()
    assert [tuple(r) for r in rows[-2:]] == [(90, 90), (-90, -90)]
    # the stored response replays byte for byte, through the API too
    again = await _record(engine, broker, slug, simple(ann, bob, 90), key="k-1")
    assert again is not None and again.replayed and again.body == answer.body
    # the audit trail has the event, by the broker's key
    events = await api.ok("get", f"/v1/timebanks/{slug}/audit-events?action=exchange.record")
    assert len(events["items"]) == 1


async def test_a_member_key_is_left_to_the_in_process_path(
    api: Api, engine: AsyncEngine, session_maker: async_sessionmaker[AsyncSession]
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann, bob = await api.member(slug, "Ann"), await api.member(slug, "Bob")
    member = await api.key(slug, "member", member_id=ann["id"])
    assert await _record(engine, member, slug, simple(ann, bob, 30)) is None
    assert await _exchanges(session_maker, tb["id"]) == 0


async def test_a_balance_moved_out_of_range_meanwhile_stops_the_write(
    api: Api, engine: AsyncEngine, session_maker: async_sessionmaker[AsyncSession]
) -> None:
    tb = await api.timebank(member_min_balance_minutes=-60)
    slug = tb["slug"]
    ann, bob, cy = [await api.member(slug, n) for n in ("Ann", "Bob", "Cy")]

    async def bob_spends_30_elsewhere() -> None:
        r = await api.exchange(slug, simple(cy, bob, 30))
        assert r.status_code == 201, r.text

    # read: Bob at 0 may spend 60; meanwhile he spends 30; the write's guard stops it
    stopped = await _record(
        engine, api.secret, slug, simple(ann, bob, 60), before_write=bob_spends_30_elsewhere
    )
    assert stopped is None
    assert await _exchanges(session_maker, tb["id"]) == 1
    assert await api.balance(slug, bob["id"]) == -30
    assert await api.balance(slug, ann["id"]) == 0
    # the API, asked the same, refuses it naming Bob
    r = await api.exchange(slug, simple(ann, bob, 60))
    assert r.status_code == 409 and r.json()["code"] == "balance_limit_exceeded"
    assert "Bob" in r.json()["detail"]


async def test_a_key_claimed_meanwhile_stops_the_write_and_the_api_replays(
    api: Api, engine: AsyncEngine, session_maker: async_sessionmaker[AsyncSession]
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann, bob = await api.member(slug, "Ann"), await api.member(slug, "Bob")
    body = simple(ann, bob, 45)
    first: list[Any] = []

    async def same_request_first() -> None:
        r = await api.exchange(slug, body, headers={"Idempotency-Key": "twice"})
        assert r.status_code == 201, r.text
        first.append(r)

    stopped = await _record(
        engine, api.secret, slug, body, key="twice", before_write=same_request_first
    )
    assert stopped is None
    assert await _exchanges(session_maker, tb["id"]) == 1
    again = await api.exchange(slug, body, headers={"Idempotency-Key": "twice"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first[0].content
    assert await api.balance(slug, ann["id"]) == 45
