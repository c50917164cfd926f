"""Faults: a crashed server, a database connection killed mid-transaction, a database that
refuses connections or goes away and comes back (SPEC §2 invariant 6; §3 `unavailable`;
§3.8 `/ready`).

The service runs as real separate processes (tests/servers.py) on a real database; after
each fault the ledger invariants are checked with SQL.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import simple
from tests.pg import Cluster
from tests.servers import (
    Bank,
    ServerProcess,
    SharedServer,
    check_ledger,
    create_admin_key,
    database,
    migrated_database,
    new_bank,
    no_server_errors,
    ok,
    pg_server,
    problem,
    running_server,
    stoppable_cluster,
)

__all__ = ["pg_server"]  # the module's shared two-worker PostgreSQL server (a fixture)


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
    what each request came to: acknowledged (201), refused, or unknown (the connection died
    with the server)."""

    def __init__(self, bank: Bank) -> None:
        self.bank = bank
        self.bodies: dict[str, dict[str, Any]] = {}
        self.acked: dict[str, httpx.Response] = {}
        self.unknown: set[str] = set()
        self.refused: list[tuple[str, int, str]] = []
        self.enough = asyncio.Event()
        self.stopping = False

    def body(self, client: int, n: int) -> dict[str, Any]:
        people = self.bank.members
        a = people[(client + n) % len(people)]
        b = people[(client + 2 * n + 1) % len(people)]
        if a is b:
            b = people[(people.index(a) + 1) % len(people)]
        return simple(a, b, 5 + (client * 7 + n) % 50, external_ref=f"c{client}/{n}")

    async def run(self, c: httpx.AsyncClient, client: int, ack_target: int) -> None:
        n = 0
        while not self.stopping:
            key = f"crash-{client}-{n}"
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
                if len(self.acked) >= ack_target:
                    self.enough.set()
            else:
                self.refused.append((key, r.status_code, r.text))

    def expected_balances(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for key in self.acked:
            body = self.bodies[key]
            for side, sign in (("provider", 1), ("recipient", -1)):
                member_id = body[side]["member_id"]
                out[member_id] = out.get(member_id, 0) + sign * body["minutes"]
        return out


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
            clients = [asyncio.create_task(load.run(c, i, ack_target=60)) for i in range(8)]
            done, _ = await asyncio.wait(
                [asyncio.create_task(load.enough.wait()), *clients],
                return_when=asyncio.FIRST_COMPLETED,
            )
            assert load.enough.is_set(), (load.refused, [t.exception() for t in done])
            assert len(server.pids()) >= 3  # the supervisor and its two workers (at least)
            server.crash()  # every process at once, with requests in flight
            load.stopping = True
            await asyncio.gather(*clients)

        assert load.refused == [], load.refused
        assert load.unknown, "no request was in flight when the server was killed"
        assert not server.pids()

        # with no server running: every acknowledged exchange is in the database, whole
        facts = await check_ledger(db_url)
        acked_ids = {uuid.UUID(r.json()["id"]) for r in load.acked.values()}
        assert acked_ids <= facts.exchange_ids, acked_ids - facts.exchange_ids
        assert len(facts.exchange_ids) <= len(load.acked) + len(load.unknown)

        server.workers = 1  # `timebank serve` again on the same database
        server.start()
        async with server.client(secret) as c:
            # a request whose answer was lost is retried with its key: one effect in all
            for key in sorted(load.unknown):
                r = await c.post(
                    bank.exchanges, json=load.bodies[key], headers={"Idempotency-Key": key}
                )
                assert r.status_code == 201, (key, r.text)
                load.acked[key] = r
            # an acknowledged one replays byte for byte
            for key in sorted(load.acked)[:10]:
                r = await c.post(
                    bank.exchanges, json=load.bodies[key], headers={"Idempotency-Key": key}
                )
                assert r.status_code == 201, (key, r.text)
                assert r.headers["Idempotent-Replayed"] == "true"
                assert r.content == load.acked[key].content
            expected = load.expected_balances()
            for member in bank.members:
                bal = await ok(c, "GET", bank.balance_path(member))
                assert bal["balance_minutes"] == expected.get(member["id"], 0), member["id"]
        facts = await check_ledger(db_url)
        assert facts.exchange_ids == {uuid.UUID(r.json()["id"]) for r in load.acked.values()}
    finally:
        server.stop()


# --- a database connection terminated in the middle of an exchange ---------------------------


@pytest.mark.slow
async def test_connection_terminated_mid_exchange_gives_503_writes_nothing_and_retry_succeeds_once(
    pg_server: SharedServer,
) -> None:
    async with pg_server.client() as c, database(pg_server.db_url) as db:
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
    await check_ledger(pg_server.db_url)


# --- the database refuses connections, then takes them again ----------------------------------


@pytest.mark.slow
async def test_database_refusing_connections_gives_503_and_the_server_recovers_when_it_allows_them(
    pg_server: SharedServer, pg_cluster: Cluster
) -> None:
    """Regression: an error while *connecting* (here 55000 "not currently accepting
    connections"; likewise 57P03 "starting up"/"shutting down", 53300 too many
    connections) was a 500 `internal_error`; it is the database being unavailable: 503."""
    name = pg_server.dbname
    async with pg_server.client() as c:
        bank = await new_bank(c)
        ann, bob = bank.members
        await ok(c, "POST", bank.exchanges, simple(ann, bob, 30))
        body = simple(ann, bob, 20, description="Logged while the database was closed")
        headers = {"Idempotency-Key": f"refused-{uuid.uuid4()}"}
        try:
            pg_cluster.psql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
            pg_cluster.psql(
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
            pg_cluster.psql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")

        await _wait_ready(c)
        first = await c.post(bank.exchanges, json=body, headers=headers)
        assert first.status_code == 201, first.text
        assert "Idempotent-Replayed" not in first.headers
        assert (await ok(c, "GET", bank.balance_path(bob)))["balance_minutes"] == -50
    await check_ledger(pg_server.db_url)


# --- the database goes away and comes back ---------------------------------------------------


@pytest.mark.slow
async def test_database_down_gives_503_and_the_same_server_recovers_when_it_is_back(
    pg_cluster: Cluster | None, tmp_path: Path
) -> None:
    if pg_cluster is None:  # (with CI=true the pg_cluster fixture has failed the run)
        pytest.skip("!!! PostgreSQL binaries not found: PostgreSQL tests SKIPPED")
    with stoppable_cluster() as pg:  # a cluster of its own: the suite's one stays up
        db_url = await asyncio.to_thread(migrated_database, pg.cluster, "outage")
        with running_server(db_url, tmp_path, workers=2) as server:
            secret = create_admin_key(db_url, tmp_path)
            async with server.client(secret) as c:
                bank = await new_bank(c)
                ann, bob = bank.members
                before = await ok(c, "POST", bank.exchanges, simple(ann, bob, 30))
                # warm both workers' pools, so the outage finds open connections to break
                warm = await asyncio.gather(*(c.get(bank.balance_path(ann)) for _ in range(10)))
                no_server_errors(warm)
                pids = server.pids()

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

                # a maintenance shutdown begins: sessions open elsewhere hold it up, the
                # service's sessions end and every new connection is refused (57P03)
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
                    assert "the database system is shutting down" in server.log_text()

                # the last other session ended: the database is gone altogether (no socket)
                await asyncio.to_thread(pg.wait_stopped)
                await all_refused()
                assert (await c.get("/health")).status_code == 200  # the process is up

                await asyncio.to_thread(pg.start)

                # the same processes recover, without a restart
                await _wait_ready(c)
                ready = await asyncio.gather(*(c.get("/ready") for _ in range(8)))
                assert [r.status_code for r in ready] == [200] * 8, [r.text for r in ready]
                again = await asyncio.gather(*(c.get(bank.balance_path(ann)) for _ in range(8)))
                assert [r.status_code for r in again] == [200] * 8, [r.text for r in again]
                assert {r.json()["balance_minutes"] for r in again} == {30}
                first = await c.post(bank.exchanges, json=body, headers=headers)
                assert first.status_code == 201, first.text
                assert "Idempotent-Replayed" not in first.headers
                assert server.pids() == pids
        facts = await check_ledger(db_url)
        assert facts.exchange_ids == {uuid.UUID(before["id"]), uuid.UUID(first.json()["id"])}
