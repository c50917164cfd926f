"""PostgreSQL streaming replication on this machine, for the failover and replica tests:
a primary on 127.0.0.1, standbys made with ``pg_basebackup``, promoted by hand; and (in
tests/test_failover.py) the same managed by Patroni and etcd.

Every server runs as the ``postgres`` user (runuser, as tests/pg.py) and is stopped — and
its directory removed — however a test ends (``Node.stop`` is idempotent; ``nodes`` is a
context manager that stops them all)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import text

from tests.conftest import simple
from tests.pg import Cluster, _as_postgres, _run_as_owner, find_pg_bin, start_cluster
from tests.servers import Bank, check_ledger, free_port
from timebank.config import Settings
from timebank.db import create_engine

T = TypeVar("T")

# fsync off: only processes are killed here, never the machine. synchronous_commit on: a
# commit is acknowledged only once its WAL is written (and, with a synchronous standby,
# flushed there too) — what "nothing acknowledged is lost" rests on.
REPLICATION_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "on",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "hot_standby": "on",
    "wal_keep_size": "256MB",
    "max_connections": "200",
    "shared_buffers": "64MB",
}


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll ``check`` until it returns something truthy (bounded: fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # not there yet
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")


@dataclass
class Node:
    """One PostgreSQL server listening on 127.0.0.1:``port`` (and a socket of its own)."""

    cluster: Cluster
    name: str
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.cluster.port

    @property
    def data(self) -> Path:
        return self.cluster.root / "data"

    def url(self, dbname: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        return self.cluster.psql(sql, dbname).strip()

    def in_recovery(self) -> bool:
        return self.psql("SELECT pg_is_in_recovery()") == "t"

    def _opts(self) -> str:
        server = {
            **REPLICATION_SETTINGS,
            "port": str(self.port),
            "unix_socket_directories": str(self.cluster.socket_dir),
            **self.settings,
        }
        return " ".join(f"-c {k}={v}" for k, v in server.items())

    def start(self) -> None:
        _run_as_owner(
            [
                str(self.cluster.bin / "pg_ctl"),
                *("-D", str(self.data), "-o", self._opts()),
                *("-l", str(self.cluster.root / "log"), "-w", "-t", "60", "start"),
            ]
        )
        wait_for(f"{self.name} to answer", lambda: self.psql("SELECT 1") == "1")

    def kill9(self) -> None:
        """``kill -9`` of the postmaster (its backends end as they notice it is gone)."""
        with suppress(ProcessLookupError, FileNotFoundError):
            os.kill(self.cluster.postmaster_pid(), signal.SIGKILL)

    def promote(self) -> None:
        _run_as_owner([str(self.cluster.bin / "pg_ctl"), "-D", str(self.data), "-w", "promote"])
        wait_for(f"{self.name} to leave recovery", lambda: not self.in_recovery())

    def log(self) -> str:
        path = self.cluster.root / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        self.cluster.stop()  # immediate, then the directory removed; idempotent


def start_primary(name: str = "primary", **settings: str) -> Node:
    port = free_port()
    cluster = start_cluster(
        prefix=f"timebank-{name}-",
        port=port,
        settings={**REPLICATION_SETTINGS, **settings},
    )
    return Node(cluster, name, dict(settings))


def start_standby(primary: Node, name: str = "standby", **settings: str) -> Node:
    """A hot standby of ``primary``: ``pg_basebackup -R`` and streaming under
    ``application_name`` = ``name`` (what ``synchronous_standby_names`` refers to)."""
    pg_bin = find_pg_bin()
    assert pg_bin is not None
    root = Path(tempfile.mkdtemp(prefix=f"timebank-{name}-"))
    socket_dir = root / "sock"
    socket_dir.mkdir()
    if _as_postgres():
        for path in (root, socket_dir):
            shutil.chown(path, "postgres", "postgres")
        os.chmod(root, 0o755)  # noqa: S103 - the postgres user must reach its socket
    cluster = Cluster(pg_bin, root, socket_dir, free_port(), primary.cluster.user)
    node = Node(cluster, name, {**primary.settings, **settings})
    try:
        _run_as_owner(
            [
                str(pg_bin / "pg_basebackup"),
                *primary.cluster.conn_args(),
                *("-D", str(node.data), "-X", "stream", "-c", "fast", "--no-sync"),
            ]
        )
        conninfo = (
            f"host={primary.cluster.socket_dir} port={primary.port} "
            f"user={primary.cluster.user} application_name={name}"
        )
        _run_as_owner(["touch", str(node.data / "standby.signal")])
        with (node.data / "postgresql.auto.conf").open("a") as conf:
            conf.write(f"primary_conninfo = '{conninfo}'\n")
        node.start()
    except BaseException:
        node.stop()
        raise
    return node


def make_synchronous(primary: Node, standby: Node) -> None:
    """Every commit on ``primary`` waits until ``standby`` has flushed it."""
    primary.psql(f"ALTER SYSTEM SET synchronous_standby_names = '{standby.name}'")
    primary.psql("SELECT pg_reload_conf()")
    wait_for(
        f"{standby.name} to be the synchronous standby",
        lambda: (
            primary.psql(
                f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{standby.name}'"
            )
            == "sync"
        ),
    )


def caught_up(primary: Node, standby: Node) -> bool:
    """The standby has replayed everything the primary has written so far."""
    target = primary.psql("SELECT pg_current_wal_lsn()")
    return standby.psql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn", "postgres") == "t"


@contextmanager
def stopping(*nodes: Node) -> Iterator[list[Node]]:
    """Stop every node however the block ends."""
    live = list(nodes)
    try:
        yield live
    finally:
        for node in live:
            with suppress(Exception):
                node.stop()


def run_as_owner(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return _run_as_owner(cmd)


# --- clients that retry a 503 with the same Idempotency-Key ------------------------------------


@dataclass
class Sent:
    key: str
    body: dict[str, Any]
    first_sent: float
    answered: float = 0.0
    attempts: int = 0
    response: httpx.Response | None = None


class RetryingLoad:
    """Clients recording exchanges, each with its own Idempotency-Key, as a partner app
    should: a 503 ``unavailable`` (which must carry Retry-After) or a lost connection is sent
    again with the same key until it is answered; anything else is final. No body has an
    external reference, so an exchange recorded twice would show as two."""

    RETRY_PAUSE = 0.25  # seconds between retries (a real client waits Retry-After: 2 s)

    def __init__(self, bank: Bank) -> None:
        self.bank = bank
        self.sent: dict[str, Sent] = {}
        self.refused: list[tuple[str, int, str]] = []
        self.retried = 0  # requests sent again after a 503 or a lost connection
        self.unavailable = 0  # 503 answers
        self.no_retry_after = 0  # 503 answers without Retry-After
        self.stopping = False
        self.tasks: list[asyncio.Task[None]] = []

    def body(self, client: int, n: int) -> dict[str, Any]:
        people = self.bank.members
        a = people[(client + n) % len(people)]
        b = people[(client + 2 * n + 1) % len(people)]
        if a is b:
            b = people[(people.index(a) + 1) % len(people)]
        return simple(a, b, 5 + (client * 7 + n) % 50, description=f"ha c{client} n{n}")

    def start(self, c: httpx.AsyncClient, clients: int) -> None:
        self.tasks = [asyncio.create_task(self._run(c, i)) for i in range(clients)]

    async def _run(self, c: httpx.AsyncClient, client: int) -> None:
        n = 0
        while not self.stopping:
            sent = Sent(f"ha-{client}-{n}", self.body(client, n), time.monotonic())
            self.sent[sent.key] = sent
            n += 1
            await self._settle(c, sent)

    async def _settle(self, c: httpx.AsyncClient, sent: Sent) -> None:
        deadline = sent.first_sent + 120
        while time.monotonic() < deadline:
            sent.attempts += 1
            if sent.attempts > 1:
                self.retried += 1
            try:
                r = await c.post(
                    self.bank.exchanges,
                    json=sent.body,
                    headers={"Idempotency-Key": sent.key},
                    timeout=30,
                )
            except httpx.TransportError:
                await asyncio.sleep(self.RETRY_PAUSE)
                continue
            if r.status_code == 503 and r.json().get("code") == "unavailable":
                self.unavailable += 1
                if "retry-after" not in r.headers:
                    self.no_retry_after += 1
                await asyncio.sleep(self.RETRY_PAUSE)
                continue
            if r.status_code == 409 and r.json().get("code") == "idempotency_in_flight":
                await asyncio.sleep(self.RETRY_PAUSE)
                continue
            sent.answered, sent.response = time.monotonic(), r
            if r.status_code != 201:
                self.refused.append((sent.key, r.status_code, r.text))
            return
        self.refused.append((sent.key, 0, "never answered within 120 s"))

    def acked(self) -> dict[str, Sent]:
        return {k: s for k, s in self.sent.items() if s.response and s.response.status_code == 201}

    async def until_acked(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.acked()) >= n:
                return
            if self.refused or all(t.done() for t in self.tasks):
                break
            await asyncio.sleep(0.02)
        raise AssertionError(f"{len(self.acked())} acknowledged, refused {self.refused[:3]}")

    def first_write_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` to the first 201 of a request first sent after it."""
        times = [s.answered for s in self.acked().values() if s.first_sent > moment]
        return min(times) - moment if times else None

    async def stop(self) -> None:
        self.stopping = True
        await asyncio.wait_for(asyncio.gather(*self.tasks), 180)

    def expected_balances(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for sent in self.acked().values():
            for side, sign in (("provider", 1), ("recipient", -1)):
                member = sent.body[side]["member_id"]
                out[member] = out.get(member, 0) + sign * sent.body["minutes"]
        return out


async def assert_nothing_lost(
    load: RetryingLoad, db_url: str, before: frozenset[uuid.UUID] = frozenset()
) -> None:
    """Every exchange answered 201 is in the database once (by id and by its description),
    nothing else is (but the bank's exchanges ``before`` the load), the ledger's invariants hold (balances = the sums of the postings), and
    each member's balance is what the acknowledged exchanges make it."""
    acked = load.acked()
    assert load.refused == [], load.refused[:5]
    assert len(acked) == len(load.sent)
    facts = await check_ledger(db_url)
    ids = {uuid.UUID(s.response.json()["id"]) for s in acked.values() if s.response}
    assert len(ids) == len(acked), "two keys answered with the same exchange"
    found = facts.by_bank[load.bank.slug] - before
    assert found == ids, (ids - found, found - ids)
    engine = create_engine(Settings(database_url=db_url, db_pool_size=1, log_json=False))
    try:
        async with engine.connect() as conn:
            twice = (
                await conn.execute(
                    text(
                        "SELECT description, COUNT(*) FROM exchanges e"
                        " JOIN timebanks t ON t.id = e.timebank_id WHERE t.slug = :slug"
                        " GROUP BY description HAVING COUNT(*) > 1"
                    ),
                    {"slug": load.bank.slug},
                )
            ).all()
            assert twice == [], f"recorded twice: {twice}"
            balances = dict(
                (
                    await conn.execute(
                        text(
                            "SELECT m.id, a.balance_minutes FROM members m"
                            " JOIN accounts a ON a.owner_id = m.id"
                            " JOIN timebanks t ON t.id = m.timebank_id WHERE t.slug = :slug"
                        ),
                        {"slug": load.bank.slug},
                    )
                ).all()
            )
    finally:
        await engine.dispose()
    expected = load.expected_balances()
    for member in load.bank.members:
        assert balances[uuid.UUID(member["id"])] == expected.get(member["id"], 0), member["id"]
