"""Checking the report rollups against the ledger: each rollup must equal the same sums
recomputed from the exchanges and postings (``timebank db check``, and the tests); and
rebuilding one bank's rollups that way after a bulk load (``timebank demo generate``)."""

from __future__ import annotations

from sqlalchemy import Uuid, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

SERVICE = "('p2p', 'p2o', 'o2p', 'o2o')"


def _recomputed(dialect: str, bank: str = "") -> dict[str, tuple[str, str]]:
    """Each rollup recomputed from the ledger (and the rollup as stored), set-based: one pass
    over the counted exchanges' postings, a window for the account that led each exchange
    (its first positive posting) — no query per row, so a million exchanges take seconds."""
    month = (
        "date_trunc('month', e.occurred_on)::date"
        if dialect == "postgresql"
        else "date(e.occurred_on, 'start of month')"
    )
    first_given = "min(CASE WHEN p.minutes > 0 THEN p.id END)"
    legs = f"""
        SELECT e.timebank_id, {month} AS month, e.category_id, e.kind, p.account_id,
               a.owner_type,
               CASE WHEN {first_given} = min({first_given}) OVER (PARTITION BY e.id)
                    THEN 1 ELSE 0 END AS led,
               sum(CASE WHEN p.minutes > 0 THEN p.minutes ELSE 0 END) AS given,
               sum(CASE WHEN p.minutes < 0 THEN -p.minutes ELSE 0 END) AS received
        FROM exchanges e
        JOIN postings p ON p.exchange_id = e.id
        JOIN accounts a ON a.id = p.account_id
        WHERE e.status = 'recorded' AND e.kind IN {SERVICE}
          AND NOT EXISTS (SELECT 1 FROM exchanges r WHERE r.reverses = e.id){bank}
        GROUP BY e.id, e.timebank_id, e.occurred_on, e.category_id, e.kind, p.account_id,
                 a.owner_type"""
    sums = "count(*), sum(l.led), sum(l.given), sum(l.received)"
    return {
        "activity_months": (
            f"""SELECT l.timebank_id, l.month, l.account_id, l.owner_type, {sums}
                FROM ({legs}) AS l
                GROUP BY l.timebank_id, l.month, l.account_id, l.owner_type""",
            """SELECT timebank_id, month, account_id, owner_type, exchanges, led,
                      given_minutes, received_minutes FROM activity_months""",
        ),
        "category_months": (
            f"""SELECT l.timebank_id, l.month, l.category_id, l.kind, l.account_id,
                       l.owner_type, {sums}
                FROM ({legs}) AS l
                GROUP BY l.timebank_id, l.month, l.category_id, l.kind, l.account_id,
                         l.owner_type""",
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
