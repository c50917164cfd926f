"""Each report is defined once: the exact builders (``reports/service.py``) and the published
ones (``reports/published.py``), run over the same generated community and period with the
cell-key noise switched off, give the same figures (SPEC §8.5 and issue 26: the two must not
drift apart). Suppression is left out of the comparison (exact figures suppress by who took
part, published ones by population): the builders' cells are compared before it. Figures a
published report rounds for disclosure (a median to half an hour, a Gini coefficient or the
top-10 % share to 0.01, shares to 4 places) are compared within that rounding."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from timebank.reports import cellkey, run
from timebank.reports.disclosure import Cell
from timebank.reports.periods import Period, last_complete_quarter
from timebank.reports.service import REPORTS, Built, Options
from timebank.tools.demo import generate, get_or_create_bank

ROUNDED = {
    "median_hours_per_participating_member": 0.25,
    "gini_hours": 0.005,
    "top_10_percent_share": 0.005,
}


def flat(built: Built) -> dict[tuple[Any, ...], Any]:
    """(row key, figure) → value of every cell's figures, suppressed or not."""
    out: dict[tuple[Any, ...], Any] = {}
    for key, items in [({}, built.scalars), *built.rows]:
        label = tuple(sorted(key.items()))
        for item in items:
            if isinstance(item, Cell) and item.published:
                for name, value in item.figures.items():
                    out[(label, name)] = value
    return out


def agree(name: str, a: Any, b: Any) -> bool:
    if a is None or b is None or isinstance(a, str) or isinstance(b, str):
        return a == b
    tolerance = ROUNDED.get(name, 0.0051 if name.endswith("share") else 0.0)
    return abs(float(a) - float(b)) <= tolerance + 1e-9


async def test_exact_and_published_reports_agree_with_the_noise_off(
    session_maker: async_sessionmaker[AsyncSession],
) -> None:
    async with session_maker() as session:
        tb, _ = await get_or_create_bank(session, f"parity-{uuid.uuid4().hex[:6]}")
        await generate(session, tb, members=150, exchanges=2000, seed=4)
        await session.commit()
    start, end = last_complete_quarter(date.today())
    year = (date(start.year, 1, 1), date(start.year + 1, 1, 1))
    as_of = datetime.now(UTC) + timedelta(minutes=1)
    compared, differ, only = 0, [], []
    for p in ((start, end), year):
        period = Period(p[0], p[1], as_of)
        for name in REPORTS:
            options = Options(interval="month")
            async with session_maker() as session:
                exact, _ = await run.build(session, name, [tb], period, options, timeout_ms=120_000)
            token = cellkey.NOISE.set(False)
            try:
                async with session_maker() as session:
                    published, _ = await run.build(
                        session, name, [tb], period, options, timeout_ms=120_000, published=True
                    )
            finally:
                cellkey.NOISE.reset(token)
            e, q = flat(exact), flat(published)
            for key in e.keys() & q.keys():
                compared += 1
                if not agree(key[1], e[key], q[key]):
                    differ.append((name, p, key, e[key], q[key]))
            only += [(name, "exact only", k) for k in e.keys() - q.keys() if e[k] not in (0, None)]
    print(f"\nparity: {compared} figures compared, {len(differ)} differ")
    for d in differ[:40]:
        print("  differs:", d)
    for o in only[:40]:
        print("  ", o)
    assert compared > 300
    assert not differ, differ[:10]
