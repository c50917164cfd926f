"""Name search timings on a bank of 20 000 members (issue 24: "search p95 on the 20 k-member
bench bank"): the API directory and members search through the ASGI app in process (no
network: the service's time alone), and the console's lookups (typeahead, record-by-name,
closest names) as service calls, each over queries drawn from the bank's own names — a
first name, a surname, "first sur" prefixes, a whole name in capitals, a misspelling.

    python benchmarks/names.py sqlite+aiosqlite:///./names-bench.db names [calls]

The database must be migrated and hold the bank (``timebank demo generate --timebank names
--members 20000 --exchanges 2000``); it is analysed first, as autovacuum would."""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from timebank.access import SYSTEM, Role
from timebank.app import create_app
from timebank.auth.service import create_key
from timebank.config import Settings
from timebank.db import create_engine
from timebank.members import search
from timebank.members.models import Member
from timebank.timebanks.models import TimeBank


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def queries(names: list[str], rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        first, _, last = rng.choice(names).partition(" ")
        out.append(
            rng.choice(
                [
                    first,
                    last,
                    f"{first[:3]} {last[:2]}",
                    f"{first} {last}".upper(),
                    last[:4].lower(),
                    first[:1],
                ]
            )
        )
    return out


async def timed(label: str, qs: list[str], call: Callable[[str], Awaitable[Any]]) -> None:
    for q in qs[:10]:
        await call(q)  # warm-up
    samples = []
    for q in qs:
        start = time.perf_counter()
        await call(q)
        samples.append((time.perf_counter() - start) * 1000)
    print(
        f"{label:<38} n={len(samples):>4}  median {statistics.median(samples):6.2f} ms"
        f"  p95 {p95(samples):6.2f} ms  max {max(samples):6.2f} ms"
    )


async def main(url: str, slug: str, calls: int) -> None:
    settings = Settings(database_url=url, log_json=False, log_level="WARNING")
    engine = create_engine(settings)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    # settled as a served bank is (autovacuum; the SPEC benchmark's VACUUM ANALYZE)
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        if engine.dialect.name == "postgresql":
            await conn.exec_driver_sql("VACUUM (ANALYZE) name_words, members, organisations")
        else:
            await conn.exec_driver_sql("ANALYZE")
    async with maker() as s:
        tb = (await s.execute(select(TimeBank).where(TimeBank.slug == slug))).scalar_one()
        names = list(
            (await s.execute(select(Member.display_name).where(Member.timebank_id == tb.id)))
            .scalars()
            .all()
        )
        secret = (await create_key(s, SYSTEM, role=Role.admin, timebank_id=None)).secret
        await s.commit()
    print(f"{url.split(':')[0]}: {len(names)} members in {slug}")
    rng = random.Random(24)
    qs = queries(names, rng, calls)
    headers = {"Authorization": f"Bearer {secret}"}
    async with AsyncTestClient(app=create_app(settings), timeout=60) as client:

        async def api(path: str) -> None:
            r = await client.get(path, headers=headers)
            assert r.status_code == 200, r.text

        def enc(q: str) -> str:
            return urllib.parse.quote(q)

        await timed(
            "API GET directory?q=", qs, lambda q: api(f"/v1/timebanks/{slug}/directory?q={enc(q)}")
        )
        await timed(
            "API GET members?q=", qs, lambda q: api(f"/v1/timebanks/{slug}/members?q={enc(q)}")
        )

    async def service(fn: Callable[..., Awaitable[Any]], q: str) -> None:
        async with maker() as s:
            await fn(s, tb, q)

    await timed("console typeahead (search.starting)", qs, lambda q: service(search.starting, q))
    await timed("record-by-name (search.called)", qs, lambda q: service(search.called, q))
    typos = [f"{n[:-2]}{n[-1]}" for n in (rng.choice(names) for _ in range(calls))]
    await timed("closest names (search.closest)", typos, lambda q: service(search.closest, q))
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 400))
