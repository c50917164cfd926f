"""A database that stops a statement — an operator's ``statement_timeout`` or
``lock_timeout`` — gives a clean 503 ``unavailable`` and writes nothing (never a 500).

The service sets neither outside reports (tests/test_abuse.py covers ``report_timeout``);
an operator may (``ALTER ROLE ... SET``). Here a role with a short timeout writes while
another transaction holds the member's account row locked.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, make_url, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Api, simple
from tests.test_errors import assert_problem
from timebank.app import create_app
from timebank.config import Settings
from timebank.ledger.models import Account, Exchange, ExchangeKind

Maker = async_sessionmaker[AsyncSession]


@pytest.mark.postgres_only
@pytest.mark.parametrize("timeout", ["statement_timeout", "lock_timeout"])
async def test_a_statement_stopped_by_the_database_is_503_and_writes_nothing(
    timeout: str, api: Api, db_url: str, session_maker: Maker
) -> None:
    tb = (await api.timebank())["slug"]
    ann, bob = await api.member(tb, "Ann"), await api.member(tb, "Bob")
    role = f"impatient_{uuid.uuid4().hex[:12]}"
    async with session_maker() as s:
        for sql in (
            f"CREATE ROLE {role} LOGIN",
            f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}",
            f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}",
            f"ALTER ROLE {role} SET {timeout} = '200ms'",
        ):
            await s.execute(text(sql))
        await s.commit()
    url = make_url(db_url).set(username=role).render_as_string(hide_password=False)
    app = create_app(Settings(database_url=url, log_json=False, rate_limit_per_minute=0))
    async with AsyncTestClient(app=app) as client, session_maker() as holder:
        impatient = Api(client, api.secret)
        await holder.execute(  # another transaction holds Ann's account row
            select(Account.id).where(Account.owner_id == uuid.UUID(ann["id"])).with_for_update()
        )
        r = await impatient.exchange(tb, simple(ann, bob, 30))
        await holder.rollback()
        assert_problem(r, 503, "unavailable")
        body: dict[str, Any] = r.json()
        assert "request_id" in body
        r = await impatient.exchange(tb, simple(ann, bob, 30))  # the lock is gone: it works
        assert r.status_code == 201, r.text
    async with session_maker() as s:
        p2p = select(func.count()).where(Exchange.kind == ExchangeKind.p2p)
        assert await s.scalar(p2p) == 1  # the stopped one left nothing behind
