"""Faults: a crashed server, a database connection killed mid-transaction, a database that
refuses connections, crashes, or goes away and comes back, a SQLite file locked by another
process (SPEC §2 invariant 6; §3 `unavailable`; §3.8 `/ready`).

The service runs as real separate processes (tests/servers.py) on a real database; after
each fault the ledger invariants are checked with SQL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import simple
from tests.servers import (
    Bank,
    ServerProcess,
    SharedServer,
    check_ledger,
    create_admin_key,
    database,
    fault_server,
    new_bank,
    no_server_errors,
    ok,
    problem,
    running_server,
)

__all__ = ["fault_server"]  # the module's two-worker server on its own cluster (a fixture)


async def _wait_ready(c: httpx.AsyncClient) -> None:
    """Until /ready says 200 (bounded, so a server that never recovers fails the test)."""
    for _ in range(600):
        if (await c.get("/ready")).status_code == 200:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the server never became ready again")


# --- kill -9 of the whole server under write load --------------------------------------------


class _Load:
    """Clients that keep recording exchanges, each with its own Idempotency-Key, and note
    what each request came to: acknowledged (201); unknown (the connection died with the
    server); unavailable (503, a lost database connection: it may or may not have taken
    effect); anything else is refused (a failure in these tests)."""

    def __init__(self, bank: Bank) -> None:
        self.bank = bank
        self.bodies: dict[str, dict[str, Any]] = {}
        self.acked: dict[str, httpx.Response] = {}
        self.unknown: set[str] = set()
        self.unavailable: set[str] = set()
        self.refused: list[tuple[str, int, str]] = []
        self.stopping = False
        self.tasks: list[asyncio.Task[None]] = []

    def body(self, client: int, n: int) -> dict[str, Any]:
        people = self.bank.members
        a = people[(client + n) % len(people)]
        b = people[(client + 2 * n + 1) % len(people)]
        if a is b:
            b = people[(people.index(a) + 1) % len(people)]
        return simple(a, b, 5 + (client * 7 + n) % 50, external_ref=f"c{client}/{n}")

    def start(self, c: httpx.AsyncClient, clients: int) -> None:
        self.tasks = [asyncio.create_task(self._run(c, i)) for i in range(clients)]

    async def _run(self, c: httpx.AsyncClient, client: int) -> None:
        n = 0
        while not self.stopping:
            key = f"load-{client}-{n}"
            self.bodies[key] = self.body(client, n)
            n += 1
            try:
                r = await c.post(
                    self.bank.exchanges, json=self.bodies[key], headers={"Idempotency-Key": key}
                )
            except httpx.TransportError:
                self.unknown.add(key)
                return
            if r.status_code == 201:
                self.acked[key] = r
            elif r.status_code == 503 and r.json().get("code") == "unavailable":
                self.unavailable.add(key)
            else:
                self.refused.append((key, r.status_code, r.text))

    async def until_acked(self, n: int) -> None:
        """Until ``n`` requests in all have been acknowledged (a guard stops a stuck load)."""
        for _ in range(6000):
            if len(self.acked) >= n:
                return
            if all(t.done() for t in self.tasks):
                break
            await asyncio.sleep(0.02)
        raise AssertionError(
            f"{len(self.acked)} acknowledged, {self.refused[:3]}, "
            f"{[t.exception() for t in self.tasks if t.done()]}"
        )

    async def stop(self) -> None:
        self.stopping = True
        await asyncio.gather(*self.tasks)

    async def retry_unsettled(self, c: httpx.AsyncClient) -> None:
        """Send again, with its key, every request whose outcome the client did not learn:
        each must now be acknowledged (its one effect, or a replay of it)."""
        for key in sorted(self.unknown | self.unavailable):
            r = await c.post(
                self.bank.exchanges, json=self.bodies[key], headers={"Idempotency-Key": key}
            )
            assert r.status_code == 201, (key, r.text)
            self.acked[key] = r

    async def assert_replays(self, c: httpx.AsyncClient, how_many: int = 10) -> None:
        for key in sorted(self.acked)[:how_many]:
            r = await c.post(
                self.bank.exchanges, json=self.bodies[key], headers={"Idempotency-Key": key}
            )
            assert r.status_code == 201, (key, r.text)
            assert r.headers["Idempotent-Replayed"] == "true"
            assert r.content == self.acked[key].content

    async def assert_balances(self, c: httpx.AsyncClient) -> None:
        expected: dict[str, int] = {}
        for key in self.acked:
            body = self.bodies[key]
            for side, sign in (("provider", 1), ("recipient", -1)):
                member_id = body[side]["member_id"]
                expected[member_id] = expected.get(member_id, 0) + sign * body["minutes"]
        for member in self.bank.members:
            bal = await ok(c, "GET", self.bank.balance_path(member))
            assert bal["balance_minutes"] == expected.get(member["id"], 0), member["id"]

    def acked_ids(self) -> set[uuid.UUID]:
        return {uuid.UUID(r.json()["id"]) for r in self.acked.values()}


@pytest.mark.slow
async def test_kill_9_under_write_load_keeps_every_acknowledged_exchange_and_the_invariants(
    db_url: str, tmp_path: Path
) -> None:
    server = ServerProcess(db_url, tmp_path, workers=2)
    try:
        server.start()
        secret = create_admin_key(db_url, tmp_path)
        async with server.client(secret) as c:
            bank = await new_bank(c, members=6, member_min_balance_minutes=-1_000_000)
            load = _Load(bank)
            load.start(c, clients=6)
            await load.until_acked(30)
            assert len(server.pids()) >= 3  # the supervisor and its two workers (at least)
            server.crash()  # every process at once, with requests in flight
            await load.stop()

        assert (load.refused, load.unavailable) == ([], set())
        assert load.unknown, "no request was in flight when the server was killed"
        assert not server.pids()

        # with no server running: every acknowledged exchange is in the database, whole
        facts = await check_ledger(db_url)
        assert load.acked_ids() <= facts.exchange_ids, load.acked_ids() - facts.exchange_ids
        assert len(facts.exchange_ids) <= len(load.acked) + len(load.unknown)

        server.workers = 1  # `timebank serve` again on the same database
        server.start()
        async with server.client(secret) as c:
            await load.retry_unsettled(c)  # one effect each, in all
            await load.assert_replays(c)
            await load.assert_balances(c)
        facts = await check_ledger(db_url)
        assert facts.exchange_ids == load.acked_ids()
    finally:
        server.stop()


# --- a database connection terminated in the middle of an exchange ---------------------------


@pytest.mark.slow
async def test_connection_terminated_mid_exchange_gives_503_writes_nothing_and_retry_succeeds_once(
    fault_server: SharedServer,
) -> None:
    async with fault_server.client() as c, database(fault_server.db_url) as db:
        bank = await new_bank(c)
        ann, bob = bank.members
        body = simple(ann, bob, 45, description="Lift to the surgery")
        key = f"sheet-9/line-4/{uuid.uuid4()}"
        headers = {"Idempotency-Key": key}

        # hold Bob's account row: the service's exchange blocks mid-transaction, after
        # writing its idempotency record and before any posting
        async with db.engine.connect() as holder:
            await holder.execute(
                text("SELECT id FROM accounts WHERE id = :id FOR UPDATE"),
                {"id": uuid.UUID(bob["account_id"])},
            )
            pending = asyncio.create_task(c.post(bank.exchanges, json=body, headers=headers))
            victim = None
            for _ in range(600):
                victim = await db.scalar(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
                if victim is not None or pending.done():
                    break
                await asyncio.sleep(0.05)
            assert victim is not None, "the service never blocked on the held row lock"
            assert await db.scalar(f"SELECT pg_terminate_backend({int(victim)})") is True
            problem(await pending, 503, "unavailable")
            await holder.rollback()

        # nothing half-written: no exchange, no posting, no idempotency record
        assert await db.bank_counts(bank.slug) == (0, 0)
        assert await db.scalar("SELECT COUNT(*) FROM idempotency_keys WHERE key = :k", k=key) == 0
        for m in (ann, bob):
            assert (await ok(c, "GET", bank.balance_path(m)))["balance_minutes"] == 0

        # every pooled connection killed while idle: the pool reconnects, nobody sees it
        await db.scalar(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        reads = await asyncio.gather(*(c.get(bank.balance_path(ann)) for _ in range(12)))
        assert [r.status_code for r in reads] == [200] * 12, [r.text for r in reads]

        # the retry with the same key records it once; a second retry replays it
        first = await c.post(bank.exchanges, json=body, headers=headers)
        assert first.status_code == 201, first.text
        assert "Idempotent-Replayed" not in first.headers
        again = await c.post(bank.exchanges, json=body, headers=headers)
        assert again.status_code == 201, again.text
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.content == first.content
        assert await db.bank_counts(bank.slug) == (1, 2)
    facts = await check_ledger(fault_server.db_url)
    assert facts.by_bank[bank.slug] == {uuid.UUID(first.json()["id"])}


# --- the database refuses connections, then takes them again ----------------------------------


@pytest.mark.slow
async def test_database_refusing_connections_gives_503_and_the_server_recovers_when_it_allows_them(
    fault_server: SharedServer,
) -> None:
    """Regression: an error while *connecting* (here 55000 "not currently accepting
    connections"; likewise 57P03 "starting up"/"shutting down", 53300 too many
    connections) was a 500 `internal_error`; it is the database being unavailable: 503."""
    name, psql = fault_server.dbname, fault_server.cluster.psql
    async with fault_server.client() as c:
        bank = await new_bank(c)
        ann, bob = bank.members
        await ok(c, "POST", bank.exchanges, simple(ann, bob, 30))
        body = simple(ann, bob, 20, description="Logged while the database was closed")
        headers = {"Idempotency-Key": f"refused-{uuid.uuid4()}"}
        try:
            psql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
            psql(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
                f" WHERE datname = '{name}'"
            )
            refused = await asyncio.gather(
                *(c.get("/ready") for _ in range(3)),
                *(c.get(bank.balance_path(ann)) for _ in range(3)),
                *(c.post(bank.exchanges, json=body, headers=headers) for _ in range(3)),
                c.post(f"/v1/timebanks/{bank.slug}/members", json={"display_name": "Cy"}),
            )
            for r in refused:
                problem(r, 503, "unavailable")
            assert (await c.get("/health")).status_code == 200
        finally:
            psql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")

        await _wait_ready(c)
        first = await c.post(bank.exchanges, json=body, headers=headers)
        assert first.status_code == 201, first.text
        assert "Idempotent-Replayed" not in first.headers
        assert (await ok(c, "GET", bank.balance_path(bob)))["balance_minutes"] == -50
    facts = await check_ledger(fault_server.db_url)
    assert len(facts.by_bank[bank.slug]) == 2


# --- the database crashes, shuts down, goes away and comes back -------------------------------


@pytest.mark.slow
async def test_database_crash_shutdown_and_outage_give_503_and_the_same_server_recovers(
    fault_server: SharedServer,
) -> None:
    """One story on the module's own cluster, one two-worker server throughout:

    1. a backend of the database is killed (kill -9) under write load: PostgreSQL ends
       every session (57P02) and recovers (57P03 "in recovery mode"); clients get 201 or
       503 `unavailable`, never another error, and the writes carry on by themselves;
    2. a maintenance shutdown begins (smart: new connections refused with 57P03);
    3. the database is gone (no socket): every request 503, `/ready` 503, `/health` 200;
    4. it is back: the same processes serve again; every unsettled request, retried with
       its key, takes effect exactly once."""
    server, pg, db_url = fault_server.server, fault_server.stoppable, fault_server.db_url
    assert pg is not None
    async with fault_server.client() as c:
        load = _Load(await new_bank(c, members=4, member_min_balance_minutes=-100_000))
        bank = await new_bank(c)
        ann, bob = bank.members
        before = await ok(c, "POST", bank.exchanges, simple(ann, bob, 30))
        pids = server.pids()

        # 1. a database backend crashes under write load
        load.start(c, clients=4)
        await load.until_acked(15)
        backends = pg.cluster.psql(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = 'faults' AND backend_type = 'client backend'"
        ).split()
        os.kill(int(backends[0]), signal.SIGKILL)
        await load.until_acked(len(load.acked) + 15)  # the same server writes again
        await load.stop()
        assert (load.refused, load.unknown) == ([], set())
        await _wait_ready(c)
        # warm both workers' pools, so the outage finds open connections to break
        warm = await asyncio.gather(*(c.get(bank.balance_path(ann)) for _ in range(10)))
        no_server_errors(warm)

        body = simple(ann, bob, 20, description="Logged while the database was down")
        headers = {"Idempotency-Key": "during-outage"}

        async def all_refused() -> None:
            down = await asyncio.gather(
                *(c.get("/ready") for _ in range(4)),
                *(c.get(bank.balance_path(ann)) for _ in range(4)),
                *(c.post(bank.exchanges, json=body, headers=headers) for _ in range(4)),
                c.get(bank.exchanges),
                c.post(f"/v1/timebanks/{bank.slug}/members", json={"display_name": "Cy"}),
            )
            for r in down:
                problem(r, 503, "unavailable")

        # 2. a maintenance shutdown begins: sessions open elsewhere hold it up, the
        # service's sessions end and every new connection is refused (57P03)
        logged = len(server.log_text())
        async with database(db_url) as db, db.engine.connect() as elsewhere:
            await elsewhere.execute(text("SELECT 1"))
            await asyncio.to_thread(pg.begin_smart_stop)
            await elsewhere.execute(
                text(
                    "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            await all_refused()
            assert "the database system is shutting down" in server.log_text()[logged:]

        # 3. the last other session ended: the database is gone (no socket)
        await asyncio.to_thread(pg.wait_stopped)
        await all_refused()
        assert (await c.get("/health")).status_code == 200  # the process is up

        await asyncio.to_thread(pg.start)

        # 4. the same processes recover, without a restart
        await _wait_ready(c)
        ready = await asyncio.gather(*(c.get("/ready") for _ in range(8)))
        assert [r.status_code for r in ready] == [200] * 8, [r.text for r in ready]
        again = await asyncio.gather(*(c.get(bank.balance_path(ann)) for _ in range(8)))
        assert [r.status_code for r in again] == [200] * 8, [r.text for r in again]
        assert {r.json()["balance_minutes"] for r in again} == {30}
        first = await c.post(bank.exchanges, json=body, headers=headers)
        assert first.status_code == 201, first.text
        assert "Idempotent-Replayed" not in first.headers
        await load.retry_unsettled(c)
        await load.assert_replays(c)
        await load.assert_balances(c)
        assert server.pids() == pids
    facts = await check_ledger(db_url)
    assert facts.by_bank[bank.slug] == {uuid.UUID(before["id"]), uuid.UUID(first.json()["id"])}
    assert facts.by_bank[load.bank.slug] == load.acked_ids()


# --- SQLite: the database locked by another process --------------------------------------------


@pytest.mark.slow
async def test_sqlite_locked_by_another_process_gives_503_writes_nothing_and_retry_succeeds_once(
    engine_name: str, db_url: str, tmp_path: Path
) -> None:
    """SQLite's "briefly unavailable": another process (an operator's sqlite3 shell, say)
    holds the write lock. A write waits the busy timeout, is retried internally, then gets
    503 `unavailable` rather than hanging; reads go on (WAL); nothing is half-written."""
    if engine_name != "sqlite":
        pytest.skip("SQLite-only (PostgreSQL: the terminated connection and outage tests)")
    env = {"TIMEBANK_SQLITE_BUSY_TIMEOUT_MS": "200", "TIMEBANK_WRITE_RETRIES": "2"}
    with running_server(db_url, tmp_path, workers=1, **env) as server:
        secret = create_admin_key(db_url, tmp_path)
        async with server.client(secret) as c:
            bank = await new_bank(c)
            ann, bob = bank.members
            body = simple(ann, bob, 25, description="Logged while the file was locked")
            headers = {"Idempotency-Key": "locked-1"}
            holder = sqlite3.connect(db_url.split(":///", 1)[1], isolation_level=None)
            try:
                holder.execute("BEGIN IMMEDIATE")
                problem(
                    await c.post(bank.exchanges, json=body, headers=headers), 503, "unavailable"
                )
                assert (await ok(c, "GET", bank.balance_path(bob)))["balance_minutes"] == 0
                assert (await c.get("/ready")).status_code == 200  # reachable, only busy
            finally:
                holder.execute("ROLLBACK")
                holder.close()

            first = await c.post(bank.exchanges, json=body, headers=headers)
            assert first.status_code == 201, first.text
            assert "Idempotent-Replayed" not in first.headers
            again = await c.post(bank.exchanges, json=body, headers=headers)
            assert again.headers.get("Idempotent-Replayed") == "true"
            assert again.content == first.content
    facts = await check_ledger(db_url)
    assert facts.by_bank[bank.slug] == {uuid.UUID(first.json()["id"])}
