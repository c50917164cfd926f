"""The real service as separate processes, for tests across workers, crashes and faults.

``running_server`` starts ``timebank serve --workers N`` (migrations first, as in
production) in a process group of its own, waits until every worker has started and
``/ready`` answers 200, and always stops the whole group on the way out, even when the test
fails. ``ServerProcess.crash()`` is ``kill -9`` of every process of the server.

Also here: a throwaway PostgreSQL cluster that a test may stop and start again, and the
ledger invariants of SPEC §2 checked with SQL against whatever a server left behind.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from tests.pg import Cluster, _run_as_owner, start_cluster
from timebank.config import Settings
from timebank.db import create_engine
from timebank.ledger.models import Account, Exchange, Posting
from timebank.timebanks.models import TimeBank

ROOT = Path(__file__).resolve().parent.parent
TIMEBANK_CLI = str(ROOT / ".venv" / "bin" / "timebank")
STARTUP_LIMIT_S = 180  # only a guard against a server that never comes up, not a measure
STARTED = "Application startup complete."
_LIVE: set[int] = set()  # process groups of servers started and not yet stopped


@atexit.register
def _kill_leftovers() -> None:
    """Whatever way pytest ends (an interrupt included), no server outlives it."""
    for pgid in list(_LIVE):
        with suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(db_url: str, **extra: str) -> dict[str, str]:
    """The environment of a server or CLI process on ``db_url``.

    Logs are JSON lines at INFO: the access line of each request carries its request id and
    the pid of the worker that served it, which is how a test proves requests were spread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMEBANK_")}
    env.update(
        TIMEBANK_DATABASE_URL=db_url,
        TIMEBANK_LOG_LEVEL="INFO",
        TIMEBANK_LOG_JSON="true",
        TIMEBANK_RATE_LIMIT_PER_MINUTE="0",
        **extra,
    )
    return env


def cli(db_url: str, *args: str, cwd: Path) -> str:
    """Run ``timebank ARGS`` against ``db_url``; its stdout (fails the test on an error)."""
    done = subprocess.run(
        [TIMEBANK_CLI, *args],
        env=server_env(db_url),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=STARTUP_LIMIT_S,
    )
    assert done.returncode == 0, f"timebank {' '.join(args)}: {done.stderr}"
    return done.stdout


def create_admin_key(db_url: str, cwd: Path) -> str:
    """A global admin key, made with the CLI as an operator would (`timebank keys create`)."""
    return cli(db_url, "keys", "create", "--role", "admin", cwd=cwd).strip()


@dataclass
class ServerProcess:
    """``timebank serve`` with ``workers`` worker processes, in a process group of its own."""

    db_url: str
    workdir: Path
    workers: int = 2
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"server-{self.starts}.log"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines of the current (or last) run."""
        out = []
        for line in self.log_text().splitlines():
            with suppress(ValueError):
                item = json.loads(line)
                if isinstance(item, dict):
                    out.append(item)
        return out

    def worker_pids_by_request_id(self) -> dict[str, int]:
        """Which worker process served each request (from the access log lines)."""
        return {
            str(item["request_id"]): int(item["pid"])
            for item in self.log_lines()
            if item.get("logger") == "timebank.access" and "request_id" in item and "pid" in item
        }

    def start(self) -> None:
        """Start (or restart, on a new port) and wait until every worker serves.

        Blocking: an async test may call it directly when nothing else is in flight."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self.port = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    TIMEBANK_CLI,
                    "serve",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                ],
                env=server_env(self.db_url, **self.env),
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a crash takes every worker
            )
        _LIVE.add(self.proc.pid)

    def wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + STARTUP_LIMIT_S
        relaunches = 0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "address already in use" in self.log_text().lower() and relaunches < 3:
                    relaunches += 1  # another process took the free port first: a new one
                    self.launch()
                    continue
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log_text()}")
            started = sum(1 for item in self.log_lines() if item.get("msg") == STARTED)
            if started >= self.workers:
                with suppress(httpx.TransportError):
                    if httpx.get(f"{self.base_url}/ready", timeout=5).status_code == 200:
                        return
            time.sleep(0.1)
        self.crash()
        pytest.fail(f"server never became ready:\n{self.log_text()}")

    def pids(self) -> set[int]:
        """Every live process of the server's process group (supervisor and workers)."""
        if self.proc is None:
            return set()
        pgid = self.proc.pid
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ')'
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                found.add(int(entry.name))
        return found

    def crash(self) -> None:
        """``kill -9`` every process of the server at once (no shutdown of any kind)."""
        if self.proc is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        # orphaned workers are reaped by init; wait until none is left holding a connection
        for _ in range(300):
            if not self.pids():
                _LIVE.discard(self.proc.pid)
                return
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            time.sleep(0.05)
        raise AssertionError(f"server processes {self.pids()} survived SIGKILL")

    def stop(self) -> None:
        """A graceful stop (SIGTERM to the supervisor, which stops its workers)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(60)
        self.crash()  # whatever is left

    def client(self, secret: str | None = None, *, keepalive: bool = False) -> httpx.AsyncClient:
        """An httpx client for this server. Without keep-alive every request opens a new
        connection, so the kernel spreads requests over the workers."""
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        limits = httpx.Limits(
            max_connections=200, max_keepalive_connections=None if keepalive else 0
        )
        return httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=120, limits=limits
        )


@contextmanager
def running_server(
    db_url: str, workdir: Path, *, workers: int = 2, **env: str
) -> Iterator[ServerProcess]:
    """A started server, stopped (and every process of it gone) however the block ends."""
    with running_servers(db_url, workdir, [workers], **env) as servers:
        yield servers[0]


@contextmanager
def running_servers(
    db_url: str, workdir: Path, workers: list[int], **env: str
) -> Iterator[list[ServerProcess]]:
    """Several servers on one database (as several machines would be), each with its
    number of workers; started side by side, all stopped however the block ends."""
    servers = [
        ServerProcess(db_url, workdir / f"server-{i}", n, env) for i, n in enumerate(workers)
    ]
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


# --- a PostgreSQL cluster a test may stop and start -----------------------------------------


@dataclass
class StoppableCluster:
    """A throwaway cluster of its own (never the suite's shared one), so a test can take the
    database away from a running server and bring it back on the same socket."""

    cluster: Cluster

    def url(self, dbname: str) -> str:
        return self.cluster.url(dbname)

    def _pg_ctl(self, *args: str, check: bool = True) -> int:
        data = str(self.cluster.root / "data")
        log = str(self.cluster.root / "log")
        cmd = [str(self.cluster.bin / "pg_ctl"), "-D", data, "-l", log, *args]
        return _run_as_owner(cmd, check=check).returncode

    def begin_smart_stop(self) -> None:
        """``pg_ctl stop -m smart`` without waiting: open sessions go on, every new
        connection is refused with 57P03 "the database system is shutting down"."""
        self._pg_ctl("-m", "smart", "-W", "stop")

    def stop_fast(self) -> None:
        """``pg_ctl stop -m fast``: sessions are terminated, the socket goes away."""
        self._pg_ctl("-m", "fast", "-w", "stop")

    def wait_stopped(self) -> None:
        """Until the server has stopped (a smart shutdown ends with the last session)."""
        for _ in range(600):
            if self._pg_ctl("status", check=False) == 3:  # "no server running"
                return
            time.sleep(0.1)
        raise AssertionError("the PostgreSQL server did not stop")

    def start(self) -> None:
        self._pg_ctl("-w", "-t", "60", "start")


@contextmanager
def stoppable_cluster() -> Iterator[StoppableCluster]:
    """A cluster like the suite's (fsync off: only processes crash here, never the
    machine) but with synchronous_commit on: with it off, a commit is acknowledged before
    its WAL leaves shared memory, so a crash of PostgreSQL itself loses acknowledged
    writes. Its settings live in postgresql.auto.conf, so a plain restart keeps them."""
    cluster = start_cluster()
    try:
        settings = {
            "listen_addresses": "",
            "unix_socket_directories": str(cluster.socket_dir),
            "port": str(cluster.port),
            "fsync": "off",
            "synchronous_commit": "on",
            "full_page_writes": "off",
            "max_connections": "300",
        }
        for name, value in settings.items():
            cluster.psql(f"ALTER SYSTEM SET {name} = '{value}'")
        stoppable = StoppableCluster(cluster)
        stoppable.stop_fast()  # and start without the command-line settings
        stoppable.start()
        assert cluster.psql("SHOW synchronous_commit").strip() == "on"
        yield stoppable
    finally:
        cluster.stop()


# --- a server shared by the tests of a module -----------------------------------------------


@dataclass
class SharedServer:
    """Server processes on one PostgreSQL database of their own, shared by a module's
    tests (each works in a time bank of its own), with a global admin key."""

    servers: list[ServerProcess]
    secret: str
    db_url: str
    dbname: str
    cluster: Cluster
    stoppable: StoppableCluster | None = None

    @property
    def server(self) -> ServerProcess:
        return self.servers[0]

    def client(self, i: int = 0, *, keepalive: bool = False) -> httpx.AsyncClient:
        return self.servers[i].client(self.secret, keepalive=keepalive)

    def worker_pids_by_request_id(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for server in self.servers:
            out.update(server.worker_pids_by_request_id())
        return out


def _skip_without_postgresql(pg_cluster: Cluster | None) -> Cluster:
    if pg_cluster is None:  # (with CI=true the pg_cluster fixture has failed the run)
        pytest.skip("!!! PostgreSQL binaries not found: PostgreSQL tests SKIPPED")
    return pg_cluster


@pytest.fixture(scope="module")
def pg_server(
    pg_cluster: Cluster | None, pg_template: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedServer]:
    """Two servers on the suite's PostgreSQL for a whole test module, as two machines
    behind a load balancer: one with two workers, one with one (each process start costs
    seconds of CPU). A test that alternates its requests between them knows that they
    ran in different processes; within the first, the kernel picks the worker."""
    cluster = _skip_without_postgresql(pg_cluster)
    dbname = f"srv_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    cluster.psql(f"CREATE DATABASE {dbname} TEMPLATE {pg_template}")
    url = cluster.url(dbname)
    workdir = tmp_path_factory.mktemp("servers")
    try:
        with running_servers(url, workdir, [2, 1]) as servers:
            yield SharedServer(servers, create_admin_key(url, workdir), url, dbname, cluster)
    finally:
        cluster.psql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{dbname}'"
        )
        cluster.psql(f"DROP DATABASE IF EXISTS {dbname}")


@pytest.fixture(scope="module")
def fault_server(
    pg_cluster: Cluster | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedServer]:
    """A two-worker server on a PostgreSQL cluster of its own, which tests may crash, shut
    down and start again. The database starts empty: `timebank serve` migrates it."""
    _skip_without_postgresql(pg_cluster)
    workdir = tmp_path_factory.mktemp("fault-server")
    with stoppable_cluster() as pg:
        pg.cluster.psql("CREATE DATABASE faults")
        url = pg.cluster.url("faults")
        with running_server(url, workdir, workers=2) as server:
            yield SharedServer(
                [server], create_admin_key(url, workdir), url, "faults", pg.cluster, pg
            )


def request_id() -> str:
    return uuid.uuid4().hex


# --- talking to a server ---------------------------------------------------------------------


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert ``r`` is an RFC 9457 problem with this status and code; its body."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert (body["status"], body["code"]) == (status, code), body
    return body


def no_server_errors(responses: list[httpx.Response]) -> None:
    errors = [(r.status_code, r.text) for r in responses if r.status_code >= 500]
    assert errors == [], errors


async def ok(
    c: httpx.AsyncClient, method: str, path: str, json: Any = None, status: int | None = None
) -> Any:
    r = await c.request(method, path, json=json)
    expected = status or (201 if method.upper() == "POST" else 200)
    assert r.status_code == expected, f"{method} {path}: {r.status_code} {r.text}"
    return r.json()


async def new_bank(c: httpx.AsyncClient, members: int = 2, **settings: Any) -> Bank:
    """A time bank of its own for one test, with ``members`` members and an organisation."""
    slug = f"tb-{uuid.uuid4().hex[:10]}"
    body: dict[str, Any] = {"slug": slug, "name": "Process tests"}
    if settings:
        body["settings"] = settings
    tb = await ok(c, "POST", "/v1/timebanks", body)
    people = [
        await ok(c, "POST", f"/v1/timebanks/{slug}/members", {"display_name": f"Member {i}"})
        for i in range(members)
    ]
    org = await ok(
        c, "POST", f"/v1/timebanks/{slug}/organisations", {"name": "Shed", "kind": "charity"}
    )
    return Bank(slug, tb, people, org)


@dataclass
class Bank:
    slug: str
    body: dict[str, Any]
    members: list[dict[str, Any]]
    org: dict[str, Any]

    @property
    def exchanges(self) -> str:
        return f"/v1/timebanks/{self.slug}/exchanges"

    def balance_path(self, member: dict[str, Any]) -> str:
        return f"/v1/timebanks/{self.slug}/members/{member['id']}/balance"


class Database:
    """Direct SQL on a test's database (to hold locks, look at backends, count rows)."""

    def __init__(self, db_url: str) -> None:
        self.engine = create_engine(Settings(database_url=db_url, db_pool_size=2, log_json=False))

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()

    async def bank_counts(self, slug: str) -> tuple[int, int]:
        """(exchanges, postings) of one time bank."""
        bank = "(SELECT id FROM timebanks WHERE slug = :slug)"
        exchanges = await self.scalar(
            f"SELECT COUNT(*) FROM exchanges WHERE timebank_id = {bank}", slug=slug
        )
        postings = await self.scalar(
            "SELECT COUNT(*) FROM postings p JOIN exchanges e ON e.id = p.exchange_id"
            f" WHERE e.timebank_id = {bank}",
            slug=slug,
        )
        return int(exchanges), int(postings)

    async def close(self) -> None:
        await self.engine.dispose()


@asynccontextmanager
async def database(db_url: str) -> AsyncIterator[Database]:
    db = Database(db_url)
    try:
        yield db
    finally:
        await db.close()


# --- the ledger invariants (SPEC §2), in SQL ------------------------------------------------


@dataclass
class LedgerFacts:
    exchanges: int
    postings: int
    exchange_ids: set[uuid.UUID]
    by_bank: dict[str, set[uuid.UUID]]  # time bank slug -> its exchanges


async def check_ledger(db_url: str) -> LedgerFacts:
    """Assert SPEC §2 invariants 1-3 over the whole database and return what is there:

    every exchange's postings sum to zero and none is zero; every recorded exchange has at
    least two postings and no other exchange has any; each account's stored balance,
    earned and spent equal the sums of its postings; the balances of each time bank sum to
    zero; ``balance_after_minutes`` is the running balance in ledger order."""
    engine = create_engine(Settings(database_url=db_url, db_pool_size=1, log_json=False))
    try:
        async with engine.connect() as conn:
            unbalanced = (
                await conn.execute(
                    text(
                        "SELECT exchange_id, SUM(minutes) FROM postings GROUP BY exchange_id"
                        " HAVING SUM(minutes) <> 0"
                    )
                )
            ).all()
            assert unbalanced == [], f"exchanges whose postings do not sum to 0: {unbalanced}"
            zero = await conn.execute(text("SELECT COUNT(*) FROM postings WHERE minutes = 0"))
            assert zero.scalar_one() == 0, "a zero posting"
            wrong_shape = (
                await conn.execute(
                    text(
                        "SELECT e.id, e.status, COUNT(p.id) FROM exchanges e"
                        " LEFT JOIN postings p ON p.exchange_id = e.id"
                        " GROUP BY e.id, e.status"
                        " HAVING (e.status = 'recorded' AND COUNT(p.id) < 2)"
                        " OR (e.status <> 'recorded' AND COUNT(p.id) > 0)"
                    )
                )
            ).all()
            assert wrong_shape == [], f"exchanges with the wrong postings: {wrong_shape}"
            orphans = (
                await conn.execute(
                    text(
                        "SELECT COUNT(*) FROM postings p"
                        " WHERE NOT EXISTS (SELECT 1 FROM exchanges e WHERE e.id = p.exchange_id)"
                    )
                )
            ).scalar_one()
            assert orphans == 0, f"{orphans} postings without their exchange"
            bank_sums = (
                await conn.execute(
                    text(
                        "SELECT timebank_id, SUM(balance_minutes) FROM accounts"
                        " GROUP BY timebank_id HAVING SUM(balance_minutes) <> 0"
                    )
                )
            ).all()
            assert bank_sums == [], f"time banks whose balances do not sum to 0: {bank_sums}"

            stored = {
                row.id: (row.balance_minutes, row.earned_minutes, row.spent_minutes)
                for row in await conn.execute(
                    select(
                        Account.id,
                        Account.balance_minutes,
                        Account.earned_minutes,
                        Account.spent_minutes,
                    )
                )
            }
            running: dict[uuid.UUID, list[int]] = defaultdict(lambda: [0, 0, 0])
            lines = await conn.execute(
                select(Posting.account_id, Posting.minutes, Posting.balance_after_minutes).order_by(
                    Posting.id
                )
            )
            n_postings = 0
            for account_id, minutes, balance_after in lines:
                n_postings += 1
                acc = running[account_id]
                acc[0] += minutes
                acc[1 if minutes > 0 else 2] += abs(minutes)
                assert balance_after == acc[0], ("balance_after", account_id, balance_after, acc)
            for account_id, values in stored.items():
                assert values == tuple(running[account_id]), (
                    "stored balance, earned, spent differ from the postings",
                    account_id,
                    values,
                    running[account_id],
                )
            by_bank: dict[str, set[uuid.UUID]] = defaultdict(set)
            for exchange_id, slug in await conn.execute(
                select(Exchange.id, TimeBank.slug).join(
                    TimeBank, TimeBank.id == Exchange.timebank_id
                )
            ):
                by_bank[slug].add(exchange_id)
            ids = set().union(*by_bank.values())
        return LedgerFacts(len(ids), n_postings, ids, dict(by_bank))
    finally:
        await engine.dispose()
