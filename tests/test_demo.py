"""The community generator (``timebank demo generate``, SPEC §5/§6): what it writes obeys
every ledger invariant and the limits, feeds the rollups, is the size asked for, looks like a
time bank, and is deterministic for a seed."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, make_url, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.conftest import Api
from tests.rollup_checks import assert_activity_rollup_matches_a_recount, assert_rollups_ok
from tests.test_concurrency import TIMEBANK_CLI, _assert_ledger_consistent
from timebank.config import Settings
from timebank.db import create_engine
from timebank.ledger.models import Account, Exchange, ExchangeStatus, OwnerType, Posting
from timebank.members.models import Member, MemberStatus
from timebank.tools import demo
from timebank.tools.demo import generate, get_or_create_bank

Maker = async_sessionmaker[AsyncSession]


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(settings)
    yield eng
    await eng.dispose()


async def _generate(maker: Maker, slug: str, seed: int = 5, **size: int) -> Any:
    async with maker() as s:
        tb, _ = await get_or_create_bank(s, slug)
        return await generate(
            s, tb, members=size.get("members", 60), exchanges=size.get("exchanges", 1500), seed=seed
        )


async def test_generated_community_keeps_every_ledger_invariant_and_feeds_the_rollups(
    session_maker: Maker, engine: AsyncEngine
) -> None:
    out = await _generate(session_maker, "gen-a")
    async with session_maker() as s:
        tb_id = out.timebank.id
        n_exchanges = await s.scalar(
            select(func.count()).select_from(Exchange).where(Exchange.timebank_id == tb_id)
        )
        n_members = await s.scalar(
            select(func.count()).select_from(Member).where(Member.timebank_id == tb_id)
        )
        lowest = await s.scalar(
            select(func.min(Account.balance_minutes)).where(
                Account.timebank_id == tb_id, Account.owner_type == OwnerType.member
            )
        )
        statuses = dict(
            (
                await s.execute(
                    select(Exchange.status, func.count())
                    .where(Exchange.timebank_id == tb_id)
                    .group_by(Exchange.status)
                )
            ).all()
        )
        left = await s.scalar(
            select(func.count()).where(
                Member.timebank_id == tb_id, Member.status == MemberStatus.left
            )
        )
    assert (n_exchanges, n_members) == (1500, 60) == (out.exchanges, out.members)
    assert lowest is not None and lowest >= -600  # the default member limit held throughout
    assert statuses[ExchangeStatus.recorded] > 1400
    assert set(out.by_kind) >= {"p2p", "p2o", "o2p", "reversal"}
    assert left and left > 0
    await _assert_ledger_consistent(session_maker)
    await assert_rollups_ok(engine)
    async with session_maker() as s:  # not only the SQL recomputation the load itself used
        await assert_activity_rollup_matches_a_recount(s, tb_id)


async def test_a_broken_simulation_is_refused_whole_and_the_triggers_stay_on(
    session_maker: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bulk load switches the row triggers off for its transaction; the set-based checks
    before the commit must catch what they would have (here: one posting a minute short)."""
    settle = demo.Community.settle

    def short_by_a_minute(self: demo.Community, progress: Any) -> list[demo.Draft]:
        ledger = settle(self, progress)
        d = next(d for d in ledger if d.status is ExchangeStatus.recorded)
        party, minutes, after = d.legs[0]
        d.legs[0] = (party, minutes - 1, after - 1)
        return ledger

    monkeypatch.setattr(demo.Community, "settle", short_by_a_minute)
    with pytest.raises(RuntimeError, match="do not sum to zero"):
        await _generate(session_maker, "gen-x", members=20, exchanges=200)
    monkeypatch.undo()
    async with session_maker() as s:
        assert await s.scalar(select(func.count()).select_from(Exchange)) == 0
        assert await s.scalar(select(func.count()).select_from(Posting)) == 0
    await _generate(session_maker, "gen-x", members=20, exchanges=200)
    async with session_maker() as s:  # the append-only trigger is back
        with pytest.raises(DBAPIError, match="append-only"):
            await s.execute(update(Posting).values(minutes=Posting.minutes + 1))


async def test_generation_is_deterministic_for_a_seed_and_adds_to_an_existing_bank(
    session_maker: Maker, engine: AsyncEngine
) -> None:
    a = await _generate(session_maker, "gen-a", seed=9, members=30, exchanges=400)
    b = await _generate(session_maker, "gen-b", seed=9, members=30, exchanges=400)
    c = await _generate(session_maker, "gen-a", seed=10, members=30, exchanges=400)
    assert a.by_kind == b.by_kind
    async with session_maker() as s:
        totals = {
            tb_id: (int(n), int(m))
            for tb_id, n, m in (
                await s.execute(
                    select(Exchange.timebank_id, func.count(), func.sum(Exchange.minutes))
                    .where(Exchange.status == ExchangeStatus.recorded)
                    .group_by(Exchange.timebank_id)
                )
            ).all()
        }
    assert totals[a.timebank.id][0] > totals[b.timebank.id][0]  # the second run added to gen-a
    assert c.timebank.id == a.timebank.id
    await _assert_ledger_consistent(session_maker)
    await assert_rollups_ok(engine)


async def test_reports_of_a_generated_bank_show_unsuppressed_figures(
    session_maker: Maker, api: Api
) -> None:
    await _generate(session_maker, "gen-r", members=120, exchanges=3000)
    body = await api.ok("get", "/v1/timebanks/gen-r/reports/summary")
    assert body["exchanges"] > 100
    assert body["participating_members"] >= 10
    assert body["median_hours_per_participating_member"] is not None


def test_cli_generates_a_community_with_a_progress_report(db_url: str) -> None:
    env = {**os.environ, "TIMEBANK_DATABASE_URL": db_url}
    run = subprocess.run(
        [
            TIMEBANK_CLI,
            "demo",
            "generate",
            "--timebank",
            "cli-bank",
            "--members",
            "20",
            "--exchanges",
            "200",
            "--seed",
            "3",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "time bank 'cli-bank': +20 members" in run.stderr
    assert "+200 exchanges" in run.stderr
    bad = subprocess.run(
        [TIMEBANK_CLI, "demo", "generate", "--timebank", "Not A Slug"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 2 and "slug" in bad.stderr


@pytest.mark.postgres_only
async def test_a_role_that_may_not_alter_the_tables_generates_with_the_triggers_on(
    db_url: str, session_maker: Maker
) -> None:
    """Where the database role does not own the tables (so cannot switch triggers off), the
    generator falls back to the triggers checking every row, and the result is the same."""
    async with session_maker() as s:
        role = f"gen_{uuid.uuid4().hex[:12]}"
        for sql in (
            f"CREATE ROLE {role} LOGIN",
            f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}",
            f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}",
        ):
            await s.execute(text(sql))
        await s.commit()
    url = make_url(db_url).set(username=role)
    engine = create_engine(Settings(database_url=url.render_as_string(hide_password=False)))
    try:
        maker = async_sessionmaker(engine, expire_on_commit=False)
        async with maker() as s:
            assert await demo._suspend_triggers(s) is None  # not the owner: refused
        out = await _generate(maker, "gen-role", members=30, exchanges=300)
        assert out.exchanges == 300
    finally:
        await engine.dispose()
    await _assert_ledger_consistent(session_maker)
    async with session_maker() as s:  # the triggers were never off
        assert (
            await s.scalar(
                text("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'D'")
            )
            == 0
        )
