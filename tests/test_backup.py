"""Backups and restores (``timebank db backup|restore|check``), on SQLite and PostgreSQL.

A backup taken while the service writes is one consistent snapshot; restored into a fresh
database it holds exactly the backed-up rows, the SPEC §2 invariants hold (every exchange's
postings sum to zero, stored balance = Σ postings, every bank's balances sum to zero), and
the service carries on writing to it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import timebank.models
from tests.conftest import Api, simple
from tests.pg import Cluster
from timebank.app import create_app
from timebank.config import Settings
from timebank.db import create_engine
from timebank.ledger.models import Account, Exchange
from timebank.tools import backup as backups

ROOT = Path(__file__).resolve().parent.parent
TIMEBANK_CLI = str(ROOT / ".venv" / "bin" / "timebank")
Maker = async_sessionmaker[AsyncSession]


@pytest.fixture
def fresh_url(engine_name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database to restore into (SQLite: a file not there yet)."""
    if engine_name == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'restored' / 'timebank.db'}"
        return
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    name = f"restored_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    cluster.psql(f"CREATE DATABASE {name}")
    yield cluster.url(name)
    cluster.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    cluster.psql(f"DROP DATABASE IF EXISTS {name}")


async def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [TIMEBANK_CLI, *args],
        env={**os.environ, "TIMEBANK_DATABASE_URL": url, "TIMEBANK_LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=300,
    )


async def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (and the schema revision), in primary-key order."""
    engine = create_engine(Settings(database_url=url))
    out: dict[str, list[tuple[Any, ...]]] = {}
    try:
        async with engine.connect() as conn:
            for table in timebank.models.Base.metadata.sorted_tables:
                rows = await conn.execute(select(table).order_by(*table.primary_key.columns))
                out[table.name] = [tuple(r) for r in rows]
            versions = await conn.execute(text("SELECT version_num FROM alembic_version"))
            out["alembic_version"] = [tuple(r) for r in versions]
    finally:
        await engine.dispose()
    return out


async def community(api: Api) -> dict[str, Any]:
    """A small but complete ledger: grants, p2p, p2o, a group exchange, a reversal, a
    pending proposal, an erased member."""
    tb = await api.timebank(starting_grant_minutes=60)
    slug = tb["slug"]
    ann, bob, cat = [await api.member(slug, n) for n in ("Ann", "Bob", "Cat")]
    shed = await api.organisation(slug, "Harbour Shed", "community_group")
    for body in (
        simple(ann, bob, 90),
        simple(bob, shed, 120, category="community-events", description="Winter fair"),
        {
            "providers": [{"party": {"member_id": cat["id"]}, "minutes": 120}],
            "recipients": [
                {"party": {"member_id": ann["id"]}, "minutes": 60},
                {"party": {"member_id": bob["id"]}, "minutes": 60},
            ],
            "category": "learning-teaching",
        },
    ):
        r = await api.exchange(slug, body)
        assert r.status_code == 201, r.text
    lift = (await api.exchange(slug, simple(cat, ann, 30))).json()
    await api.ok("post", f"/v1/timebanks/{slug}/exchanges/{lift['id']}/reverse", {"reason": "x"})
    member_key = api.as_key(await api.key(slug, "member", member_id=ann["id"]))
    proposal = await member_key.exchange(slug, simple(bob, ann, 15))
    assert proposal.status_code == 201, proposal.text
    await api.ok("post", f"/v1/timebanks/{slug}/members/{cat['id']}/erase", status=200)
    return {"slug": slug, "ann": ann, "bob": bob, "cat": cat, "shed": shed}


async def test_backup_restores_into_a_fresh_database_with_the_same_rows_and_a_sound_ledger(
    api: Api, db_url: str, fresh_url: str, admin_secret: str, tmp_path: Path
) -> None:
    people = await community(api)
    slug = people["slug"]
    backed_up = await snapshot(db_url)
    balances = {n: await api.balance(slug, people[n]["id"]) for n in ("ann", "bob")}

    target = tmp_path / "backups" / "nightly.backup"
    made = await cli(db_url, "db", "backup", "--output", str(target))
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == str(target)
    assert target.stat().st_size > 0
    assert not list(target.parent.glob("*.partial"))

    # the service writes on after the backup: none of that is in it
    r = await api.exchange(slug, simple(people["ann"], people["bob"], 45))
    assert r.status_code == 201, r.text
    assert await snapshot(db_url) != backed_up

    restored = await cli(fresh_url, "db", "restore", str(target))
    assert restored.returncode == 0, restored.stderr
    assert "ledger check ok" in restored.stderr
    assert await snapshot(fresh_url) == backed_up

    # the restored database is a working ledger: same balances, and it takes new writes
    settings = Settings(database_url=fresh_url, log_json=False, log_level="WARNING")
    async with AsyncTestClient(app=create_app(settings), timeout=60) as c:
        again = Api(c, admin_secret)
        assert {n: await again.balance(slug, people[n]["id"]) for n in ("ann", "bob")} == balances
        r = await again.exchange(slug, simple(people["bob"], people["ann"], 30))
        assert r.status_code == 201, r.text
        assert await again.balance(slug, people["ann"]["id"]) == balances["ann"] - 30
    assert await asyncio.to_thread(backups.check, settings) == []


async def test_backup_taken_while_the_service_writes_is_one_consistent_snapshot(
    api: Api, db_url: str, fresh_url: str, session_maker: Maker, tmp_path: Path
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann, bob = await api.member(slug, "Ann"), await api.member(slug, "Bob")
    shed = await api.organisation(slug)
    written = 0
    backing_up = asyncio.Event()
    done = asyncio.Event()

    async def write_until_done() -> None:
        nonlocal written
        legs = [(ann, bob), (bob, shed), (shed, ann)]
        while not done.is_set():
            provider, recipient = legs[written % 3]
            r = await api.exchange(slug, simple(provider, recipient, 1 + written % 50))
            assert r.status_code == 201, r.text
            written += 1
            if written == 20:
                backing_up.set()
            await asyncio.sleep(0)  # the test client blocks the loop while it serves a request

    writer = asyncio.create_task(write_until_done())
    await asyncio.wait_for(backing_up.wait(), 120)
    before = written
    target = tmp_path / "during-writes.backup"
    # in a thread of its own (SQLite: its own connection; PostgreSQL: a pg_dump process)
    await asyncio.to_thread(backups.backup, Settings(database_url=db_url), target)
    after = written
    done.set()
    await writer
    assert after > before, "no write ran while the backup was taken"

    settings = Settings(database_url=fresh_url)
    await asyncio.to_thread(backups.restore, settings, target)
    assert await asyncio.to_thread(backups.check, settings) == []
    engine = create_engine(settings)
    try:
        async with async_sessionmaker(engine)() as s:
            in_backup = await s.scalar(select(func.count()).select_from(Exchange))
    finally:
        await engine.dispose()
    assert in_backup is not None
    # every write acknowledged before the backup began is in it; at most one more than
    # was acknowledged by its end (the one whose response was still on its way)
    assert before <= in_backup <= after + 1


async def test_restore_refuses_a_database_with_data_unless_forced(
    api: Api, db_url: str, tmp_path: Path
) -> None:
    people = await community(api)
    settings = Settings(database_url=db_url)
    target = tmp_path / "x.backup"
    await asyncio.to_thread(backups.backup, settings, target)
    backed_up = await snapshot(db_url)
    r = await api.exchange(people["slug"], simple(people["ann"], people["bob"], 45))
    assert r.status_code == 201, r.text
    changed = await snapshot(db_url)

    with pytest.raises(backups.BackupError, match="not empty"):
        await asyncio.to_thread(backups.restore, settings, target)
    assert await snapshot(db_url) == changed

    await asyncio.to_thread(backups.restore, settings, target, force=True)
    assert await snapshot(db_url) == backed_up
    assert await asyncio.to_thread(backups.check, settings) == []


async def test_ledger_check_reports_a_stored_balance_that_is_not_its_postings(
    api: Api, engine_name: str, db_url: str, session_maker: Maker
) -> None:
    people = await community(api)
    settings = Settings(database_url=db_url)
    assert await asyncio.to_thread(backups.check, settings) == []
    async with session_maker() as s:  # no trigger guards this: only the check can see it
        await s.execute(
            update(Account)
            .where(Account.id == uuid.UUID(people["bob"]["account_id"]))
            .values(
                balance_minutes=Account.balance_minutes + 5,
                earned_minutes=Account.earned_minutes + 5,
            )
        )
        await s.commit()
    problems = await asyncio.to_thread(backups.check, settings)
    assert len(problems) == 2, problems
    assert "stored balance is not the sum of their postings" in problems[0]
    assert people["bob"]["account_id"].replace("-", "") in problems[0].replace("-", "")
    assert "do not sum to zero" in problems[1]
    if engine_name == "sqlite":  # the command's exit status, for cron (one engine will do)
        checked = await cli(db_url, "db", "check")
        assert checked.returncode == 1
        assert "ledger check FAILED" in checked.stderr


async def test_ledger_check_reports_a_report_rollup_that_is_not_its_postings(
    api: Api, db_url: str, session_maker: Maker
) -> None:
    await community(api)
    settings = Settings(database_url=db_url)
    assert await asyncio.to_thread(backups.check, settings) == []
    async with session_maker() as s:  # the rollups are kept by triggers: tamper behind them
        await s.execute(text("UPDATE activity_months SET given_minutes = given_minutes + 1"))
        await s.commit()
    problems = await asyncio.to_thread(backups.check, settings)
    assert any("activity_months" in p and "rollup" in p for p in problems), problems
    assert not any("category_months" in p for p in problems), problems


async def test_backup_and_restore_fail_cleanly_on_bad_input(
    engine_name: str, db_url: str, fresh_url: str, tmp_path: Path
) -> None:
    with pytest.raises(backups.BackupError, match="no backup file"):
        await asyncio.to_thread(
            backups.restore, Settings(database_url=fresh_url), tmp_path / "nope"
        )
    garbage = tmp_path / "garbage.backup"
    garbage.write_bytes(b"not a backup at all" * 100)
    with pytest.raises(backups.BackupError):
        await asyncio.to_thread(backups.restore, Settings(database_url=fresh_url), garbage)
    if engine_name == "sqlite":
        missing = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'missing.db'}")
        with pytest.raises(backups.BackupError, match="no SQLite database"):
            await asyncio.to_thread(backups.backup, missing, tmp_path / "out.db")
        assert not (tmp_path / "out.db").exists()
        unreachable = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'no' / 'x.db'}")
        with pytest.raises(backups.BackupError, match="cannot use the database"):
            await asyncio.to_thread(backups.check, unreachable)
    else:
        wrong = db_url.replace("/t_", "/no_such_database_", 1)
        with pytest.raises(backups.BackupError, match="pg_dump failed"):
            await asyncio.to_thread(backups.backup, Settings(database_url=wrong), tmp_path / "o")
        assert not (tmp_path / "o").exists()
        with pytest.raises(backups.BackupError, match="cannot use the database"):
            await asyncio.to_thread(backups.check, Settings(database_url=wrong))
