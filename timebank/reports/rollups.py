"""Checking the report rollups against the ledger: each rollup must equal the same sums
recomputed from the exchanges and postings (``timebank db check``, and the tests); and
rebuilding one bank's rollups that way after a bulk load (``timebank demo generate``)."""

from __future__ import annotations

from sqlalchemy import Uuid, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

SERVICE = "('p2p', 'p2o', 'o2p', 'o2o')"


def _recomputed(dialect: str, bank: str = "") -> dict[str, tuple[str, str]]:
    month = (
        "date_trunc('month', e.occurred_on)::date"
        if dialect == "postgresql"
        else "date(e.occurred_on, 'start of month')"
    )
    counted = f"""e.status = 'recorded' AND e.kind IN {SERVICE}
        AND NOT EXISTS (SELECT 1 FROM exchanges r WHERE r.reverses = e.id){bank}"""
    lead = """CASE WHEN p.id = (SELECT min(f.id) FROM postings f
                                 WHERE f.exchange_id = e.id AND f.minutes > 0) THEN 1 ELSE 0 END"""
    flows = """sum(CASE WHEN p.minutes > 0 THEN p.minutes ELSE 0 END),
               sum(CASE WHEN p.minutes < 0 THEN -p.minutes ELSE 0 END)"""
    joined = """FROM exchanges e JOIN postings p ON p.exchange_id = e.id
                JOIN accounts a ON a.id = p.account_id"""
    return {
        "activity_months": (
            f"""SELECT e.timebank_id, {month} AS month, p.account_id, a.owner_type,
                       count(DISTINCT e.id), sum({lead}), {flows}
                {joined} WHERE {counted}
                GROUP BY e.timebank_id, {month}, p.account_id, a.owner_type""",
            """SELECT timebank_id, month, account_id, owner_type, exchanges, led,
                      given_minutes, received_minutes FROM activity_months""",
        ),
        "category_months": (
            f"""SELECT e.timebank_id, {month} AS month, e.category_id, e.kind, p.account_id,
                       a.owner_type, count(DISTINCT e.id), sum({lead}), {flows}
                {joined} WHERE {counted}
                GROUP BY e.timebank_id, {month}, e.category_id, e.kind, p.account_id,
                         a.owner_type""",
            """SELECT timebank_id, month, category_id, kind, account_id, owner_type, exchanges,
                      led, given_minutes, received_minutes FROM category_months""",
        ),
    }


COLUMNS = {
    "activity_months": """timebank_id, month, account_id, owner_type, exchanges, led,
                          given_minutes, received_minutes""",
    "category_months": """timebank_id, month, category_id, kind, account_id, owner_type,
                          exchanges, led, given_minutes, received_minutes""",
}


async def rebuild_rollups(conn: AsyncConnection, timebank_id: object) -> None:
    """Recompute one bank's rollups from its ledger, set-based (in the caller's transaction)."""
    tb = bindparam("tb", timebank_id, type_=Uuid())
    for table, (recomputed, _) in _recomputed(
        conn.dialect.name, " AND e.timebank_id = :tb"
    ).items():
        await conn.execute(text(f"DELETE FROM {table} WHERE timebank_id = :tb").bindparams(tb))
        await conn.execute(
            text(f"INSERT INTO {table} ({COLUMNS[table]}) {recomputed}").bindparams(tb)
        )


async def rollup_mismatches(conn: AsyncConnection) -> dict[str, int]:
    """Rows in which each rollup differs from its recomputation, both ways ("missing": in
    the recomputation only; "extra": in the rollup only). All zero when the rollups hold."""
    out = {}
    for table, (recomputed, stored) in _recomputed(conn.dialect.name).items():
        for label, a, b in (("missing", recomputed, stored), ("extra", stored, recomputed)):
            sql = f"SELECT count(*) FROM ({a} EXCEPT {b}) AS x"
            out[f"{table} {label}"] = int((await conn.execute(text(sql))).scalar_one())
    return out
