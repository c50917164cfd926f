"""Concurrency: limits hold, no deadlock reaches a client, idempotency gives one effect
(SPEC §2 invariant 5, the locking paragraph of §2, Idempotency in §3, §5 scale path)."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Api, gather, party, simple
from timebank.app import create_app
from timebank.config import Settings

Maker = async_sessionmaker[AsyncSession]
ROOT = Path(__file__).resolve().parent.parent
TIMEBANK_CLI = str(ROOT / ".venv" / "bin" / "timebank")


@pytest.fixture
async def live_api(settings: Settings, admin_secret: str) -> AsyncIterator[Api]:
    """Like ``api``, but gathered requests really overlap.

    Litestar's AsyncTestClient hands each request to a blocking portal thread and waits for
    it, so ``asyncio.gather`` over it runs requests one after another. httpx's ASGITransport
    runs the app on the test's own event loop. The app's lifespan is entered and left in one
    task of its own (its task group must be exited by the task that entered it).
    """
    app = create_app(settings)
    started, stop = asyncio.Event(), asyncio.Event()

    async def run_lifespan() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    lifespan = asyncio.create_task(run_lifespan())
    await asyncio.wait(
        [lifespan, asyncio.create_task(started.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    if lifespan.done():
        lifespan.result()  # startup failed: raise its error
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", timeout=60
        ) as c:
            yield Api(c, admin_secret)  # type: ignore[arg-type]
    finally:
        stop.set()
        await lifespan


async def _exchange_count(api: Api, slug: str) -> int:
    body = await api.ok("get", f"/v1/timebanks/{slug}/exchanges?limit=500")
    assert body["next_cursor"] is None
    return len(body["items"])


def _no_server_errors(responses: list[Any]) -> None:
    errors = [(r.status_code, r.text) for r in responses if r.status_code >= 500]
    assert errors == [], errors


async def _assert_ledger_consistent(session_maker: Maker) -> None:
    """SPEC §2 invariants 1-3 over the whole database, and ``balance_after_minutes`` equal to
    the running balance in ledger (posting id) order."""
    async with session_maker() as s:
        accounts = {
            row[0]: tuple(row[1:])
            for row in await s.execute(
                text("SELECT id, balance_minutes, earned_minutes, spent_minutes FROM accounts")
            )
        }
        lines = (
            await s.execute(
                text(
                    "SELECT exchange_id, account_id, minutes, balance_after_minutes"
                    " FROM postings ORDER BY id"
                )
            )
        ).all()
        bank_sums = (
            await s.execute(
                text("SELECT timebank_id, SUM(balance_minutes) FROM accounts GROUP BY timebank_id")
            )
        ).all()
    per_exchange: dict[Any, int] = defaultdict(int)
    running: dict[Any, list[int]] = defaultdict(lambda: [0, 0, 0])  # balance, earned, spent
    for exchange_id, account_id, minutes, balance_after in lines:
        assert minutes != 0
        per_exchange[exchange_id] += minutes
        acc = running[account_id]
        acc[0] += minutes
        acc[1 if minutes > 0 else 2] += abs(minutes)
        assert balance_after == acc[0], (account_id, balance_after, acc[0])
    assert {e: total for e, total in per_exchange.items() if total} == {}
    for account_id, stored in accounts.items():
        assert stored == tuple(running[account_id]), (account_id, stored, running[account_id])
    assert all(total == 0 for _, total in bank_sums), bank_sums


# --- (a) the limit holds exactly under concurrent debits -----------------------------------


async def test_forty_concurrent_debits_record_exactly_ten_and_stop_at_member_minimum(
    live_api: Api, session_maker: Maker
) -> None:
    api = live_api
    tb = await api.timebank()  # member minimum defaults to -600
    slug = tb["slug"]
    debtor = await api.member(slug, "Debtor")
    helper = await api.member(slug, "Helper")

    responses = await gather(*(api.exchange(slug, simple(helper, debtor, 60)) for _ in range(40)))

    _no_server_errors(responses)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 10 + [409] * 30, statuses
    refused = [r.json() for r in responses if r.status_code == 409]
    assert {p["code"] for p in refused} == {"balance_limit_exceeded"}
    assert await api.balance(slug, debtor["id"]) == -600
    assert await api.balance(slug, helper["id"]) == 600
    assert await _exchange_count(api, slug) == 10

    statement = await api.ok("get", f"/v1/timebanks/{slug}/members/{debtor['id']}/statement")
    assert [e["balance_after_minutes"] for e in statement["items"]] == [
        -60 * i for i in range(1, 11)
    ]
    assert statement["closing_balance_minutes"] == -600
    await _assert_ledger_consistent(session_maker)


# --- (b) opposite exchanges between the same accounts never deadlock ------------------------


@pytest.mark.postgres_only
async def test_opposite_concurrent_exchanges_between_same_accounts_all_succeed_without_deadlock(
    live_api: Api, session_maker: Maker
) -> None:
    api = live_api
    tb = await api.timebank(member_min_balance_minutes=-100_000)
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    cat = await api.member(slug, "Cat")

    bodies: list[dict[str, Any]] = []
    for i in range(15):
        bodies.append(simple(ann, bob, 30 + i))
        bodies.append(simple(bob, ann, 20 + i))
        # group legs touching the same accounts from both sides, in different orders
        bodies.append(
            {
                "providers": [
                    {"party": party(ann), "minutes": 10},
                    {"party": party(bob), "minutes": 15},
                ],
                "recipients": [{"party": party(cat), "minutes": 25}],
                "category": "transport",
            }
        )
        bodies.append(
            {
                "providers": [{"party": party(cat), "minutes": 40}],
                "recipients": [
                    {"party": party(bob), "minutes": 30},
                    {"party": party(ann), "minutes": 10},
                ],
                "category": "transport",
            }
        )

    responses = await gather(*(api.exchange(slug, b) for b in bodies))

    _no_server_errors(responses)
    assert [r.status_code for r in responses] == [201] * len(bodies), [
        r.text for r in responses if r.status_code != 201
    ]

    expected: dict[str, int] = defaultdict(int)
    for r in responses:
        for posting in r.json()["postings"]:
            expected[posting["account_id"]] += posting["minutes"]
    balances = {m["account_id"]: await api.balance(slug, m["id"]) for m in (ann, bob, cat)}
    assert balances == dict(expected)
    # independently of the responses: simple legs net 15 x 10; group legs +10 and -10 cancel
    assert balances[ann["account_id"]] == 150
    assert balances[bob["account_id"]] == -150 + 15 * (15 - 30)
    assert balances[cat["account_id"]] == 15 * (40 - 25)
    assert sum(balances.values()) == 0
    assert await _exchange_count(api, slug) == len(bodies)
    await _assert_ledger_consistent(session_maker)


# --- (c) concurrent duplicates with one Idempotency-Key --------------------------------------


async def test_ten_concurrent_duplicates_with_one_idempotency_key_have_exactly_one_effect(
    live_api: Api, session_maker: Maker
) -> None:
    api = live_api
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    body = simple(ann, bob, 45, description="Lift to the shops")
    headers = {"Idempotency-Key": "sheet-7-line-3"}

    responses = await gather(*(api.exchange(slug, body, headers=headers) for _ in range(10)))

    _no_server_errors(responses)
    created = [r for r in responses if r.status_code == 201]
    others = [r for r in responses if r.status_code != 201]
    assert created, [r.text for r in responses]
    for r in others:
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "idempotency_in_flight"
    assert len({r.content for r in created}) == 1
    originals = [r for r in created if r.headers.get("Idempotent-Replayed") is None]
    replays = [r for r in created if r.headers.get("Idempotent-Replayed") is not None]
    assert len(originals) == 1
    assert all(r.headers["Idempotent-Replayed"] == "true" for r in replays)
    assert await _exchange_count(api, slug) == 1
    assert await api.balance(slug, ann["id"]) == 45
    assert await api.balance(slug, bob["id"]) == -45
    await _assert_ledger_consistent(session_maker)


async def test_concurrent_different_requests_with_one_idempotency_key_have_one_effect(
    live_api: Api, session_maker: Maker
) -> None:
    api = live_api
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    headers = {"Idempotency-Key": "one-key-many-bodies"}

    responses = await gather(
        *(api.exchange(slug, simple(ann, bob, 10 + i), headers=headers) for i in range(8))
    )

    _no_server_errors(responses)
    created = [r for r in responses if r.status_code == 201]
    assert len(created) == 1, [(r.status_code, r.text) for r in responses]
    for r in responses:
        if r.status_code != 201:
            assert (r.status_code, r.json()["code"]) in {
                (422, "idempotency_key_reused"),
                (409, "idempotency_in_flight"),
            }, r.text
    assert await _exchange_count(api, slug) == 1
    assert await api.balance(slug, bob["id"]) == -created[0].json()["minutes"]
    await _assert_ledger_consistent(session_maker)


async def test_concurrent_registrations_each_get_the_starting_grant_from_the_pool(
    live_api: Api, session_maker: Maker
) -> None:
    api = live_api
    tb = await api.timebank(starting_grant_minutes=120)
    slug = tb["slug"]

    responses = await gather(
        *(
            api.post(f"/v1/timebanks/{slug}/members", json={"display_name": f"New {i}"})
            for i in range(20)
        )
    )

    _no_server_errors(responses)
    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses]
    for r in responses:
        assert await api.balance(slug, r.json()["id"]) == 120
    pool = await api.ok("get", f"/v1/timebanks/{slug}/accounts/{tb['pool_account_id']}")
    assert pool["balance_minutes"] == -20 * 120
    await _assert_ledger_consistent(session_maker)


# --- unique facts under concurrency: one wins, the rest get 409, never a 5xx ----------------


def _one_created_rest_conflict(responses: list[Any], code: str) -> Any:
    _no_server_errors(responses)
    created = [r for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code != 201]
    assert len(created) == 1, [(r.status_code, r.text) for r in responses]
    for r in refused:
        assert r.status_code == 409, r.text
        assert r.json()["code"] == code, r.text
    return created[0].json()


async def test_concurrent_exchanges_with_one_external_ref_record_one_and_refuse_the_rest(
    live_api: Api, session_maker: Maker
) -> None:
    api = live_api
    tb = await api.timebank()
    slug = tb["slug"]
    members = [await api.member(slug, f"M{i}") for i in range(16)]
    # disjoint pairs, so no account lock orders the requests: only the unique index can
    bodies = [
        simple(members[2 * i], members[2 * i + 1], 30, external_ref="sheet-4/line-2")
        for i in range(8)
    ]

    responses = await gather(*(api.exchange(slug, b) for b in bodies))

    winner = _one_created_rest_conflict(responses, "duplicate")
    assert await _exchange_count(api, slug) == 1
    balances = [await api.balance(slug, m["id"]) for m in members]
    assert sorted(balances) == [-30] + [0] * 14 + [30]
    assert winner["external_ref"] == "sheet-4/line-2"
    await _assert_ledger_consistent(session_maker)


async def test_concurrent_reversals_of_one_exchange_reverse_it_exactly_once(
    live_api: Api, session_maker: Maker
) -> None:
    api = live_api
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    ex = await api.ok("post", f"/v1/timebanks/{slug}/exchanges", simple(ann, bob, 90))

    responses = await gather(
        *(
            api.post(f"/v1/timebanks/{slug}/exchanges/{ex['id']}/reverse", json={"reason": "typo"})
            for _ in range(8)
        )
    )

    reversal = _one_created_rest_conflict(responses, "already_reversed")
    assert reversal["reverses"] == ex["id"]
    assert await api.balance(slug, ann["id"]) == 0
    assert await api.balance(slug, bob["id"]) == 0
    assert await _exchange_count(api, slug) == 2
    await _assert_ledger_consistent(session_maker)


async def test_concurrent_time_banks_with_one_slug_create_one_and_refuse_the_rest(
    live_api: Api,
) -> None:
    api = live_api
    responses = await gather(
        *(
            api.post("/v1/timebanks", json={"slug": "same-slug", "name": f"Bank {i}"})
            for i in range(8)
        )
    )
    _one_created_rest_conflict(responses, "duplicate")
    banks = await api.ok("get", "/v1/timebanks")
    assert [b["slug"] for b in banks["items"]] == ["same-slug"]


async def test_concurrent_categories_with_one_slug_create_one_and_refuse_the_rest(
    live_api: Api,
) -> None:
    api = live_api
    tb = await api.timebank()
    slug = tb["slug"]
    responses = await gather(
        *(
            api.post(
                f"/v1/timebanks/{slug}/categories", json={"slug": "bike-repair", "name": f"B{i}"}
            )
            for i in range(8)
        )
    )
    _one_created_rest_conflict(responses, "duplicate")
    cats = await api.ok("get", f"/v1/timebanks/{slug}/categories?limit=500")
    assert [c["slug"] for c in cats["items"]].count("bike-repair") == 1


async def test_concurrent_members_with_one_external_ref_register_one_and_refuse_the_rest(
    live_api: Api,
) -> None:
    api = live_api
    tb = await api.timebank()
    slug = tb["slug"]
    responses = await gather(
        *(
            api.post(
                f"/v1/timebanks/{slug}/members",
                json={"display_name": f"Ann {i}", "external_ref": "paper-form-17"},
            )
            for i in range(8)
        )
    )
    _one_created_rest_conflict(responses, "duplicate")
    listed = await api.ok("get", f"/v1/timebanks/{slug}/members")
    assert len(listed["items"]) == 1


# --- (d) several server processes share one PostgreSQL ---------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_healthy(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=2) as c:
        for _ in range(600):
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if (await c.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail(f"server never became healthy:\n{log.read_text()}")


@pytest.mark.slow
@pytest.mark.postgres_only
async def test_two_worker_server_gives_one_effect_per_idempotency_key_and_revokes_at_once(
    db_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "TIMEBANK_DATABASE_URL": db_url, "TIMEBANK_LOG_LEVEL": "WARNING"}
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [TIMEBANK_CLI, "serve", "--port", str(port), "--workers", "2"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await _wait_healthy(base, proc, log)

        created = await asyncio.to_thread(
            subprocess.run,
            [TIMEBANK_CLI, "keys", "create", "--role", "admin"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert created.returncode == 0, created.stderr
        assert re.fullmatch(r"tbk_[A-Za-z0-9_-]{20,}\n", created.stdout), created.stdout
        admin = {"Authorization": f"Bearer {created.stdout.strip()}"}

        # a fresh connection per request, so requests spread over both workers
        no_keepalive = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=no_keepalive) as c:

            async def ok(method: str, path: str, json: Any = None, status: int = 201) -> Any:
                r = await c.request(method, path, json=json, headers=admin)
                assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
                return r.json()

            tb = await ok("POST", "/v1/timebanks", {"slug": "multi-worker", "name": "Multi"})
            slug = tb["slug"]
            ann = await ok("POST", f"/v1/timebanks/{slug}/members", {"display_name": "Ann"})
            bob = await ok("POST", f"/v1/timebanks/{slug}/members", {"display_name": "Bob"})

            body = simple(ann, bob, 90)
            dup_headers = {**admin, "Idempotency-Key": "two-workers-one-effect"}
            responses = await gather(
                *(
                    c.post(f"/v1/timebanks/{slug}/exchanges", json=body, headers=dup_headers)
                    for _ in range(20)
                )
            )
            _no_server_errors(responses)
            created_ok = [r for r in responses if r.status_code == 201]
            assert created_ok, [r.text for r in responses]
            for r in responses:
                if r.status_code != 201:
                    assert r.status_code == 409, r.text
                    assert r.json()["code"] == "idempotency_in_flight"
            assert len({r.content for r in created_ok}) == 1
            assert sum(r.headers.get("Idempotent-Replayed") is None for r in created_ok) == 1
            listed = await ok("GET", f"/v1/timebanks/{slug}/exchanges", status=200)
            assert len(listed["items"]) == 1
            bal = await ok("GET", f"/v1/timebanks/{slug}/members/{bob['id']}/balance", status=200)
            assert bal["balance_minutes"] == -90

            key = await ok("POST", f"/v1/timebanks/{slug}/api-keys", {"role": "broker"})
            broker = {"Authorization": f"Bearer {key['secret']}"}
            before = await gather(
                *(c.get(f"/v1/timebanks/{slug}/members", headers=broker) for _ in range(6))
            )
            assert [r.status_code for r in before] == [200] * 6
            await ok("DELETE", f"/v1/timebanks/{slug}/api-keys/{key['id']}", status=200)
            after = await c.get(f"/v1/timebanks/{slug}/members", headers=broker)
            assert after.status_code == 401, after.text
            assert after.json()["code"] == "unauthorized"
            more = await gather(
                *(c.get(f"/v1/timebanks/{slug}/members", headers=broker) for _ in range(10))
            )
            assert [r.status_code for r in more] == [401] * 10
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 30)
