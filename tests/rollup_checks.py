"""The report rollups must equal a recomputation from the postings (the ledger's own
invariants: ``tests.test_concurrency._assert_ledger_consistent``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from timebank.reports.rollups import rollup_mismatches


async def assert_rollups_ok(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        found = await rollup_mismatches(conn)
    assert not any(found.values()), {k: v for k, v in found.items() if v}
