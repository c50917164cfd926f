"""Streaming replication without Patroni (docs/operations.md): a primary and a synchronous
standby on this machine, the service on a libpq-style multi-host URL; the primary killed
(-9) under write load and the standby promoted by hand, as an operator who runs their own
failover would. And reports served from an asynchronous read replica.

Real servers throughout: PostgreSQL 15 (runuser postgres), `timebank serve` as a process,
HTTP clients that retry a 503 with the same Idempotency-Key."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import CI, simple
from tests.pg import find_pg_bin
from tests.replication import (
    Node,
    RetryingLoad,
    assert_nothing_lost,
    caught_up,
    make_synchronous,
    start_primary,
    start_standby,
    stopping,
    wait_for,
)
from tests.servers import (
    ROOT,
    TIMEBANK_CLI,
    create_admin_key,
    new_bank,
    ok,
    running_server,
    server_env,
)

pytestmark = [pytest.mark.slow, pytest.mark.ha]

ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    if find_pg_bin() is None:
        if CI:
            pytest.fail("CI=true but PostgreSQL binaries are missing")
        pytest.skip("!!! PostgreSQL binaries not found: replication tests SKIPPED")


def multi_host_url(dbname: str, *nodes: Node | int) -> str:
    ports = [n if isinstance(n, int) else n.port for n in nodes]
    hosts = "&".join(f"host=127.0.0.1:{p}" for p in ports)
    return f"postgresql+asyncpg://postgres@/{dbname}?{hosts}&target_session_attrs=read-write"


def record_figures(name: str, figures: dict[str, object]) -> None:
    """The run's figures, printed (pytest -s) and kept in tests/artifacts (ignored by git)."""
    ARTIFACTS.mkdir(exist_ok=True)
    line = json.dumps({"test": name, "at": time.time(), **figures})
    print(line)
    with (ARTIFACTS / "failover.jsonl").open("a") as out:
        out.write(line + "\n")


PASSWORD = "a long funder passphrase"


def funder(db_url: str, cwd: Path, slug: str) -> None:
    """A funder's console account for ``slug``, made with the CLI as an operator would."""
    done = subprocess.run(
        [
            TIMEBANK_CLI,
            "users",
            "create",
            "--role",
            "funder",
            "--email",
            "funder@example.org",
            "--timebank",
            slug,
        ],
        input=PASSWORD + "\n",
        env=server_env(db_url),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]*)"', html)
    assert found, "no csrf_token in the page"
    return found.group(1)


@pytest.fixture
def pair() -> Iterator[tuple[Node, Node]]:
    """A primary and a synchronous standby (every commit flushed on both before it is
    acknowledged), with an empty database ``tb``."""
    primary = start_primary()
    with stopping(primary) as live:
        primary.psql("CREATE DATABASE tb")
        standby = start_standby(primary)
        live.append(standby)
        make_synchronous(primary, standby)
        yield primary, standby


async def test_manual_failover_on_a_multi_host_url_rides_the_switch_and_loses_nothing(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    primary, standby = pair
    # first a host gone from the network (it takes the connection and never answers: each
    # attempt waits its timeout there), then the standby: every path (Alembic at `serve`,
    # the CLI, both pools) must pass over both
    with silent_host() as gone:
        url = multi_host_url("tb", gone, standby, primary)
        await _manual_failover(url, primary, standby, tmp_path)


@contextmanager
def silent_host() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        yield int(listener.getsockname()[1])


async def _manual_failover(url: str, primary: Node, standby: Node, tmp_path: Path) -> None:
    env = {"TIMEBANK_DB_CONNECT_TIMEOUT_SECONDS": "1"}
    with running_server(url, tmp_path, workers=1, **env) as server:
        secret = create_admin_key(url, tmp_path)
        pids = server.pids()
        async with server.client(secret, keepalive=True) as c:
            # the hot path (asyncpg's own pool) on the multi-host URL: was a 500
            probe = await new_bank(c)
            ann, bob = probe.members
            await ok(c, "POST", probe.exchanges, simple(ann, bob, 30))
            assert (await ok(c, "GET", probe.balance_path(bob)))["balance_minutes"] == -30

            bank = await new_bank(c, members=6, member_min_balance_minutes=-1_000_000)

            load = RetryingLoad(bank)
            load.start(c, clients=4)
            await load.until_acked(40)
            killed = time.monotonic()
            primary.kill9()
            await asyncio.to_thread(standby.promote)
            promoted = time.monotonic()
            await load.until_acked(len(load.acked()) + 40, timeout=60)
            await load.stop()
            first_write = load.first_write_after(killed)
            assert first_write is not None and first_write < 30, first_write
            assert load.no_retry_after == 0
            assert server.pids() == pids  # the same processes, never restarted

            ready = await c.get("/ready")
            assert ready.status_code == 200, ready.text
        await assert_nothing_lost(load, standby.url("tb"))
    record_figures(
        "manual-promote",
        {
            "first_write_after_kill_s": round(first_write, 3),
            "promote_took_s": round(promoted - killed, 3),
            "acknowledged": len(load.acked()),
            "answered_503": load.unavailable,
            "retried": load.retried,
            "lost": 0,
        },
    )


async def test_reports_read_the_replica_and_the_primary_runs_none_of_their_queries(
    tmp_path: Path,
) -> None:
    """pg_stat_statements on both servers count the reports' queries: their snapshot's `SET
    LOCAL work_mem` and their reads of the rollup tables (only reports run either; a
    prepared utility statement is counted once per connection, a SELECT every time)."""
    stats = {"shared_preload_libraries": "pg_stat_statements"}
    primary = start_primary(**stats)
    with stopping(primary) as live:
        primary.psql("CREATE DATABASE tb")
        primary.psql("CREATE EXTENSION pg_stat_statements", "tb")
        replica = start_standby(primary, "replica")
        live.append(replica)
        env = {
            "TIMEBANK_REPLICA_DATABASE_URL": replica.url("tb"),
            "TIMEBANK_REPLICA_MAX_LAG_SECONDS": "1",
        }

        def report_queries(node: Node) -> int:
            return int(
                node.psql(
                    "SELECT COALESCE(SUM(calls), 0) FROM pg_stat_statements"
                    " WHERE query ILIKE 'SET LOCAL work_mem%' OR (query ILIKE 'SELECT%'"
                    " AND query ~* '(activity|category)_months')",
                    "tb",
                )
            )

        url = primary.url("tb")
        with running_server(url, tmp_path, workers=1, **env) as server:
            secret = create_admin_key(url, tmp_path)
            async with server.client(secret, keepalive=True) as c:
                bank = await new_bank(c, members=3)
                ann, bob, cy = bank.members
                for i in range(6):
                    await ok(c, "POST", bank.exchanges, simple(ann if i % 2 else cy, bob, 30))
                await asyncio.to_thread(
                    wait_for, "the replica", lambda: caught_up(primary, replica)
                )
                for node in (primary, replica):
                    node.psql("SELECT pg_stat_statements_reset()", "tb")

                async def ready() -> dict[str, object]:
                    r = await c.get("/ready")
                    assert r.status_code == 200, r.text
                    body: dict[str, object] = r.json()
                    return body

                state = await ready()
                assert state["replica_in_use"] is True, state
                assert isinstance(state["replica_lag_seconds"], float | int), state

                path = f"/v1/timebanks/{bank.slug}/reports"
                summary = await ok(c, "GET", f"{path}/summary")
                for name in ("timeseries", "categories", "exchange-types"):
                    await ok(c, "GET", f"{path}/{name}")
                assert report_queries(primary) == 0
                assert report_queries(replica) >= 4
                assert json.dumps(summary)  # figures came back

                # the console's dashboard, as a funder signed in
                on_replica = report_queries(replica)
                funder(url, tmp_path, bank.slug)
                async with server.client() as browser:
                    page = await browser.get("/console/sign-in")
                    signed = await browser.post(
                        "/console/sign-in",
                        data={
                            "email": "funder@example.org",
                            "password": PASSWORD,
                            "csrf_token": token(page.text),
                            "next": "",
                        },
                    )
                    assert signed.status_code == 303, signed.text
                    dashboard = await browser.get("/console/dashboard")
                    assert dashboard.status_code == 200, dashboard.text
                assert report_queries(primary) == 0
                assert report_queries(replica) > on_replica

                # the replica stops replaying: once it lags more than a second it is
                # bypassed (reports read the primary) and comes back when it catches up
                replica.psql("SELECT pg_wal_replay_pause()")
                await ok(c, "POST", bank.exchanges, simple(ann, bob, 15))
                deadline = time.monotonic() + 30
                while (state := await ready())["replica_in_use"] is not False:
                    assert time.monotonic() < deadline, state
                    await asyncio.sleep(0.2)
                assert float(state["replica_lag_seconds"]) > 1  # type: ignore[arg-type]
                fresh = await ok(c, "GET", f"{path}/summary")
                assert report_queries(primary) >= 1
                assert fresh != summary  # the primary's figures include the new exchange
                replica.psql("SELECT pg_wal_replay_resume()")
                deadline = time.monotonic() + 30
                while (await ready())["replica_in_use"] is not True:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.2)
                bypassed = report_queries(primary)
                await ok(c, "GET", f"{path}/summary")
                assert report_queries(primary) == bypassed
