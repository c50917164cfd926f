"""The report rollups must equal a recomputation from the postings: plain SQL over the
stored state. (The ledger's own invariants: ``tests.test_concurrency._assert_ledger_consistent``.)"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

SERVICE = "('p2p', 'p2o', 'o2p', 'o2o')"


def _month(dialect: str, column: str) -> str:
    if dialect == "postgresql":
        return f"date_trunc('month', {column})::date"
    return f"date({column}, 'start of month')"


def _counted() -> str:
    return f"""e.status = 'recorded' AND e.kind IN {SERVICE}
        AND NOT EXISTS (SELECT 1 FROM exchanges r WHERE r.reverses = e.id)"""


async def rollup_mismatches(engine: AsyncEngine) -> dict[str, int]:
    """Rows in which each rollup differs from a recomputation from the postings, both ways."""
    d = engine.dialect.name
    month = _month(d, "e.occurred_on")
    lead = """CASE WHEN p.id = (SELECT min(f.id) FROM postings f
                                 WHERE f.exchange_id = e.id AND f.minutes > 0) THEN 1 ELSE 0 END"""
    flows = """sum(CASE WHEN p.minutes > 0 THEN p.minutes ELSE 0 END),
               sum(CASE WHEN p.minutes < 0 THEN -p.minutes ELSE 0 END)"""
    joined = """FROM exchanges e JOIN postings p ON p.exchange_id = e.id
                JOIN accounts a ON a.id = p.account_id"""
    expected = {
        "activity_months": (
            f"""SELECT e.timebank_id, {month} AS month, p.account_id, a.owner_type,
                       count(DISTINCT e.id), sum({lead}), {flows}
                {joined} WHERE {_counted()}
                GROUP BY e.timebank_id, {month}, p.account_id, a.owner_type""",
            """SELECT timebank_id, month, account_id, owner_type, exchanges, led,
                      given_minutes, received_minutes FROM activity_months""",
        ),
        "category_months": (
            f"""SELECT e.timebank_id, {month} AS month, e.category_id, e.kind, p.account_id,
                       a.owner_type, count(DISTINCT e.id), sum({lead}), {flows}
                {joined} WHERE {_counted()}
                GROUP BY e.timebank_id, {month}, e.category_id, e.kind, p.account_id,
                         a.owner_type""",
            """SELECT timebank_id, month, category_id, kind, account_id, owner_type, exchanges,
                      led, given_minutes, received_minutes FROM category_months""",
        ),
    }
    out = {}
    async with engine.connect() as conn:
        for table, (recomputed, stored) in expected.items():
            for label, a, b in (("missing", recomputed, stored), ("extra", stored, recomputed)):
                sql = f"SELECT count(*) FROM ({a} EXCEPT {b}) AS x"
                out[f"{table} {label}"] = int((await conn.execute(text(sql))).scalar_one())
    return out


async def assert_rollups_ok(engine: AsyncEngine) -> None:
    found = await rollup_mismatches(engine)
    assert not any(found.values()), {k: v for k, v in found.items() if v}
