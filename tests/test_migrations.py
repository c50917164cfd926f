"""Migrations are the only source of the schema (SPEC §2, §5): ``upgrade head`` builds exactly
the models' schema plus the ledger's triggers, the round trip through ``base`` works, and the
CLI reports the revision."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from litestar.testing import AsyncTestClient
from sqlalchemy import (
    CheckConstraint,
    Connection,
    Executable,
    delete,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from alembic import command
from tests.conftest import Api, simple
from timebank.access import SYSTEM, Role
from timebank.app import create_app
from timebank.auth.service import create_key
from timebank.config import Settings
from timebank.db import create_engine
from timebank.ledger.models import Exchange, Posting
from timebank.migrations import alembic_config, head_revisions
from timebank.models import Base

ROOT = Path(__file__).resolve().parent.parent
TIMEBANK_CLI = str(ROOT / ".venv" / "bin" / "timebank")

LEDGER_TRIGGERS = {
    "postgresql": {
        "postings_append_only",
        "postings_no_truncate",
        "postings_sealed",
        "postings_balanced",
        "exchanges_balanced_insert",
        "exchanges_balanced_update",
        "exchanges_immutable",
        "exchanges_rollup",
        "exchanges_rollup_confirm",
        "evidence_entries_append_only",
        "evidence_nodes_append_only",
        "evidence_checkpoints_append_only",
        "evidence_entries_gapless",
    },
    "sqlite": {
        "postings_no_update",
        "postings_no_delete",
        "postings_no_replace",
        "exchanges_no_replace",
        "postings_sealed",
        "exchanges_balanced_insert",
        "exchanges_balanced_update",
        "exchanges_immutable",
        "exchanges_no_delete",
        "exchanges_rollup_insert",
        "exchanges_rollup_confirm",
        "exchanges_rollup_reversal",
        *(
            f"evidence_{t}_no_{op}"
            for t in ("entries", "nodes", "checkpoints")
            for op in ("update", "delete")
        ),
        "evidence_entries_gapless",
    },
}


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(settings)
    yield eng
    await eng.dispose()


def _schema_diff(conn: Connection) -> list[Any]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(ctx, Base.metadata))


def _check_constraints(conn: Connection) -> dict[str, set[str]]:
    insp = inspect(conn)
    return {
        table: {c["name"] for c in insp.get_check_constraints(table) if c.get("name")}
        for table in insp.get_table_names()
        if table != "alembic_version"
    }


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


async def _triggers(engine: AsyncEngine) -> set[str]:
    sql = (
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
        if engine.dialect.name == "postgresql"
        else "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    )
    async with engine.connect() as conn:
        return {row[0] for row in await conn.execute(text(sql))}


async def _upgrade(db_url: str, revision: str = "head") -> None:
    # alembic's env.py runs its own event loop: keep it off the test's loop
    await asyncio.to_thread(command.upgrade, alembic_config(db_url), revision)


async def _downgrade(db_url: str, revision: str) -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(db_url), revision)


async def _write(engine: AsyncEngine, *statements: Executable) -> None:
    async with engine.begin() as conn:
        for stmt in statements:
            await conn.execute(stmt)


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TIMEBANK_DATABASE_URL": db_url}
    return subprocess.run(
        [TIMEBANK_CLI, *args], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )


# --- upgrade head == the models -----------------------------------------------------------


async def test_upgrade_head_matches_the_models_exactly(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        diff = await conn.run_sync(_schema_diff)
    assert diff == []


async def test_upgrade_head_has_every_named_check_constraint_of_the_models(
    engine: AsyncEngine,
) -> None:
    """compare_metadata does not look at CHECK constraints; the ledger depends on them."""
    async with engine.connect() as conn:
        in_db = await conn.run_sync(_check_constraints)
    for table in Base.metadata.sorted_tables:
        expected = {
            str(c.name) for c in table.constraints if isinstance(c, CheckConstraint) and c.name
        }
        assert expected <= in_db.get(table.name, set()), (
            table.name,
            expected,
            in_db.get(table.name),
        )
    # the ledger's own rules, by name
    assert {"ck_postings_minutes_nonzero"} <= in_db["postings"]
    assert {"ck_accounts_balance_sum", "ck_accounts_flows_nonneg"} <= in_db["accounts"]
    assert {"ck_exchanges_minutes_positive"} <= in_db["exchanges"]


async def test_upgrade_head_creates_the_ledger_triggers(engine: AsyncEngine) -> None:
    assert await _triggers(engine) == LEDGER_TRIGGERS[engine.dialect.name]


# --- round trip ---------------------------------------------------------------------------


async def test_downgrade_to_base_then_upgrade_head_restores_schema_triggers_and_refusals(
    db_url: str, settings: Settings
) -> None:
    await _downgrade(db_url, "base")
    eng = create_engine(settings)
    try:
        async with eng.connect() as conn:
            assert await conn.run_sync(_tables) <= {"alembic_version"}
        assert await _triggers(eng) == set()
    finally:
        await eng.dispose()

    await _upgrade(db_url)

    eng = create_engine(settings)
    try:
        async with eng.connect() as conn:
            assert await conn.run_sync(_schema_diff) == []
        assert await _triggers(eng) == LEDGER_TRIGGERS[eng.dialect.name]

        # the service works on the rebuilt schema ...
        async with eng.connect() as conn, AsyncSession(bind=conn, expire_on_commit=False) as s:
            secret = (await create_key(s, SYSTEM, role=Role.admin, timebank_id=None)).secret
            await s.commit()
        async with AsyncTestClient(app=create_app(settings), timeout=60) as client:
            api = Api(client, secret)
            tb = await api.timebank()
            ann = await api.member(tb["slug"], "Ann")
            bob = await api.member(tb["slug"], "Bob")
            ex = await api.ok("post", f"/v1/timebanks/{tb['slug']}/exchanges", simple(ann, bob, 60))
            assert await api.balance(tb["slug"], bob["id"]) == -60

        # ... and the database still refuses what breaks the ledger
        async with eng.connect() as conn:
            posting_id = (await conn.execute(text("SELECT min(id) FROM postings"))).scalar_one()
        for sql, match in [
            ("UPDATE postings SET minutes = 1 WHERE id = :id", "append-only"),
            ("DELETE FROM postings WHERE id = :id", "append-only"),
        ]:
            with pytest.raises(IntegrityError, match=match):
                await _write(eng, text(sql).bindparams(id=posting_id))
        with pytest.raises(IntegrityError, match="never deleted"):
            await _write(eng, delete(Exchange).where(Exchange.id == uuid.UUID(ex["id"])))
        unbalanced = uuid.uuid4()
        legs = [(uuid.UUID(ann["account_id"]), 60), (uuid.UUID(bob["account_id"]), -30)]
        lines = [
            {"exchange_id": unbalanced, "account_id": a, "minutes": m, "balance_after_minutes": 0}
            for a, m in legs
        ]
        async with eng.connect() as conn:
            category_id = (
                await conn.execute(
                    select(Exchange.category_id).where(Exchange.id == uuid.UUID(ex["id"]))
                )
            ).scalar_one()
        row = {
            "id": unbalanced,
            "timebank_id": uuid.UUID(tb["id"]),
            "category_id": category_id,
            "status": "recorded",
            "kind": "p2p",
            "minutes": 60,
            "occurred_on": date.today(),
            "logged_by_role": "admin",
        }
        with pytest.raises(IntegrityError, match="unbalanced"):
            await _write(eng, insert(Posting).values(lines), insert(Exchange).values(row))
        async with eng.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM postings"))).scalar_one()
        assert count == 2
    finally:
        await eng.dispose()


# --- CLI ----------------------------------------------------------------------------------


async def test_cli_db_current_prints_the_head_revision(db_url: str) -> None:
    (head,) = head_revisions()
    result = await asyncio.to_thread(_cli, db_url, "db", "current")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{head} (head)"


async def test_cli_db_downgrade_and_upgrade_move_the_current_revision(db_url: str) -> None:
    (head,) = head_revisions()
    down = await asyncio.to_thread(_cli, db_url, "db", "downgrade", "base")
    assert down.returncode == 0, down.stderr
    current = await asyncio.to_thread(_cli, db_url, "db", "current")
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip() == ""

    up = await asyncio.to_thread(_cli, db_url, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    current = await asyncio.to_thread(_cli, db_url, "db", "current")
    assert current.stdout.strip() == f"{head} (head)"


async def test_ready_is_503_below_head_and_200_at_head(db_url: str, settings: Settings) -> None:
    await _downgrade(db_url, "base")
    async with AsyncTestClient(app=create_app(settings), timeout=60) as client:
        r = await client.get("/ready")
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "unavailable"
    await _upgrade(db_url)
    async with AsyncTestClient(app=create_app(settings), timeout=60) as client:
        r = await client.get("/ready")
        assert r.status_code == 200, r.text
