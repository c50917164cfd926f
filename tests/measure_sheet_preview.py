import time, cProfile, pstats, io as _io
from tests.conftest import Api
from tests.test_imports import upload
import pytest


async def test_measure(api: Api, engine_name: str) -> None:
    slug = (await api.timebank(member_min_balance_minutes=-1_000_000))["slug"]
    names = [f"Member {i:03d}" for i in range(100)]
    for n in names:
        await api.member(slug, n)
    rows = ["Date,Giver,Receiver,Minutes,Category"]
    for i in range(10_000):
        day = f"2026-{1 + i // 1000:02d}-{1 + i % 28:02d}"
        rows.append(f"{day},{names[i % 100]},{names[(i * 7 + 1) % 100]},{15 + i % 5 * 15},other")
    body = "\n".join(rows) + "\n"
    for attempt in range(3):
        t = time.perf_counter()
        r = await upload(api, slug, body, sheet=f"big{attempt}")
        took = time.perf_counter() - t
        assert r.status_code == 201, r.text[:300]
        print(
            f"\n{engine_name}: 10 000-line preview {took:.2f} s ({len(body)} bytes) {r.json()['summary']}"
        )
