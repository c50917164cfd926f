"""API keys (SPEC §3.6, §4) and the HTTP surface around them: secrets are long, prefixed,
stored hashed and shown once; expired and revoked keys get 401 at once in every worker;
funder keys span time banks for reports only; brokers create member keys only; CORS is off
unless configured; security headers on API responses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import inspect, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Api, gather
from tests.test_concurrency import TIMEBANK_CLI, _free_port, _wait_healthy
from tests.test_errors import assert_problem
from timebank.app import create_app
from timebank.auth.models import ApiKey
from timebank.config import Settings

Maker = async_sessionmaker[AsyncSession]
ORIGIN = "https://app.example"


async def create_key(api: Api, slug: str, role: str, **fields: Any) -> dict[str, Any]:
    return await api.ok("post", f"/v1/timebanks/{slug}/api-keys", {"role": role, **fields})  # type: ignore[no-any-return]


async def api_key_rows(session_maker: Maker) -> list[tuple[Any, ...]]:
    async with session_maker() as s:
        return [tuple(row) for row in await s.execute(select(ApiKey.__table__))]


async def whole_database(session_maker: Maker) -> str:
    """Every row of every table, as text."""
    async with session_maker() as s:
        conn = await s.connection()
        tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        rows = [
            repr(tuple(row))
            for table in tables
            for row in await s.execute(text(f'SELECT * FROM "{table}"'))
        ]
    return "\n".join(rows)


# --- the secret -------------------------------------------------------------------------------


async def test_new_secret_is_long_and_starts_with_the_recognisable_prefix(api: Api) -> None:
    tb = await api.timebank()
    ann = await api.member(tb["slug"], "Ann")
    secrets = [
        (await create_key(api, tb["slug"], "broker"))["secret"],
        (await create_key(api, tb["slug"], "member", member_id=ann["id"]))["secret"],
        (await api.ok("post", "/v1/api-keys", {"role": "admin"}))["secret"],
    ]
    for secret in secrets:
        assert secret.startswith("tbk_"), secret
        assert len(secret) >= 40, secret
        assert secret.isascii() and secret.isprintable() and " " not in secret
    assert len(set(secrets)) == len(secrets)


async def test_database_stores_only_a_hash_of_the_secret(api: Api, session_maker: Maker) -> None:
    tb = await api.timebank()
    created = await create_key(api, tb["slug"], "broker", label="console")
    secret = created["secret"]
    broker = api.as_key(secret)
    assert (await broker.get(f"/v1/timebanks/{tb['slug']}/members")).status_code == 200

    rows = await api_key_rows(session_maker)

    assert len(rows) == 2  # the test's admin key and this one
    stored = repr(rows)
    assert secret not in stored
    assert secret[len("tbk_") :] not in stored
    # what is kept to tell keys apart is a short prefix, not the secret
    assert created["prefix"] == secret[: len(created["prefix"])]
    assert len(created["prefix"]) <= 16
    assert secret not in await whole_database(session_maker)


async def test_secret_of_a_key_created_with_an_idempotency_key_is_not_stored_in_plain_text(
    api: Api, session_maker: Maker
) -> None:
    tb = await api.timebank()
    r = await api.post(
        f"/v1/timebanks/{tb['slug']}/api-keys",
        json={"role": "broker"},
        headers={"Idempotency-Key": "console-key-1"},
    )
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]

    assert secret not in await whole_database(session_maker)


async def test_key_listing_never_shows_a_secret(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    member = await create_key(api, slug, "member", member_id=ann["id"])
    broker = await create_key(api, slug, "broker")
    secrets = [member["secret"], broker["secret"]]

    for lister in (api, api.as_key(broker["secret"])):
        r = await lister.get(f"/v1/timebanks/{slug}/api-keys")
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert items
        for item in items:
            assert "secret" not in item
            assert "secret_hash" not in item
        for secret in secrets:
            assert secret not in r.text
    # a broker lists member keys only
    as_broker = await api.as_key(broker["secret"]).ok("get", f"/v1/timebanks/{slug}/api-keys")
    assert [k["id"] for k in as_broker["items"]] == [member["id"]]
    as_admin = await api.ok("get", f"/v1/timebanks/{slug}/api-keys")
    assert {k["id"] for k in as_admin["items"]} == {member["id"], broker["id"]}


async def test_last_used_at_is_set_once_the_key_is_used(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    created = await create_key(api, slug, "member", member_id=ann["id"])
    assert created["last_used_at"] is None

    def listed(body: dict[str, Any]) -> dict[str, Any]:
        return next(k for k in body["items"] if k["id"] == created["id"])

    assert listed(await api.ok("get", f"/v1/timebanks/{slug}/api-keys"))["last_used_at"] is None

    member = api.as_key(created["secret"])
    await member.ok("get", f"/v1/timebanks/{slug}/members/{ann['id']}/balance")

    used = listed(await api.ok("get", f"/v1/timebanks/{slug}/api-keys"))["last_used_at"]
    assert used is not None
    assert datetime.fromisoformat(used.replace("Z", "+00:00")) >= datetime.fromisoformat(
        created["created_at"].replace("Z", "+00:00")
    )


async def test_expired_member_key_is_refused_with_401(api: Api, session_maker: Maker) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    future = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    created = await create_key(api, slug, "member", member_id=ann["id"], expires_at=future)
    assert created["expires_at"] is not None
    member = api.as_key(created["secret"])
    balance = f"/v1/timebanks/{slug}/members/{ann['id']}/balance"
    assert (await member.get(balance)).status_code == 200

    async with session_maker() as s:
        await s.execute(
            update(ApiKey)
            .where(ApiKey.id == uuid.UUID(created["id"]))
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
        await s.commit()

    assert_problem(await member.get(balance), 401, "unauthorized")
    assert_problem(await member.get(f"/v1/timebanks/{slug}/exchanges"), 401, "unauthorized")


async def test_revoked_member_key_is_refused_with_401_at_once(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    created = await create_key(api, slug, "member", member_id=ann["id"])
    member = api.as_key(created["secret"])
    balance = f"/v1/timebanks/{slug}/members/{ann['id']}/balance"
    assert (await member.get(balance)).status_code == 200

    revoked = await api.ok("delete", f"/v1/timebanks/{slug}/api-keys/{created['id']}")

    assert revoked["revoked_at"] is not None
    assert "secret" not in revoked
    assert_problem(await member.get(balance), 401, "unauthorized")
    # revoking again changes nothing
    again = await api.ok("delete", f"/v1/timebanks/{slug}/api-keys/{created['id']}")
    assert again["revoked_at"] == revoked["revoked_at"]


@pytest.mark.slow
@pytest.mark.postgres_only
async def test_revocation_takes_effect_at_once_in_every_worker_of_a_two_worker_server(
    db_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "TIMEBANK_DATABASE_URL": db_url, "TIMEBANK_LOG_LEVEL": "INFO"}
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
        admin = {"Authorization": f"Bearer {created.stdout.strip()}"}

        # no keep-alive: every request opens a fresh connection, so both workers serve them
        fresh = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=fresh) as c:

            async def ok(method: str, path: str, json: Any = None, status: int = 201) -> Any:
                r = await c.request(method, path, json=json, headers=admin)
                assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
                return r.json()

            slug = (await ok("POST", "/v1/timebanks", {"slug": "revoke", "name": "Revoke"}))["slug"]
            ann = await ok("POST", f"/v1/timebanks/{slug}/members", {"display_name": "Ann"})
            key = await ok(
                "POST", f"/v1/timebanks/{slug}/api-keys", {"role": "member", "member_id": ann["id"]}
            )
            member = {"Authorization": f"Bearer {key['secret']}"}
            balance = f"/v1/timebanks/{slug}/members/{ann['id']}/balance"

            before = await gather(*(c.get(balance, headers=member) for _ in range(8)))
            assert [r.status_code for r in before] == [200] * 8, [r.text for r in before]

            await ok("DELETE", f"/v1/timebanks/{slug}/api-keys/{key['id']}", status=200)

            after = []
            for _ in range(6):  # one after another, each on its own connection
                after.append(await c.get(balance, headers=member))
            after += await gather(*(c.get(balance, headers=member) for _ in range(12)))
            assert [r.status_code for r in after] == [401] * 18, [r.text for r in after]
            assert {r.json()["code"] for r in after} == {"unauthorized"}
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 30)
    logged = log.read_text(errors="replace")
    assert "/balance" in logged  # the requests were logged...
    assert key["secret"] not in logged  # ...but never the secret


# --- roles --------------------------------------------------------------------------------------


async def funder_over_two_banks(api: Api) -> tuple[Api, list[str], dict[str, Any]]:
    """Banks north and south in the funder key's scope, east outside it; Ann is in north."""
    a = (await api.timebank("north-bank"))["slug"]
    b = (await api.timebank("south-bank"))["slug"]
    c = (await api.timebank("east-bank"))["slug"]
    ann = await api.member(a, "Ann")
    created = await api.ok("post", "/v1/api-keys", {"role": "funder", "timebanks": [a, b]})
    assert created["role"] == "funder"
    assert created["timebank"] is None
    assert created["timebanks"] == [a, b]
    return api.as_key(created["secret"]), [a, b, c], ann


async def test_funder_key_over_two_banks_reads_the_summary_of_each_and_of_both(
    api: Api,
) -> None:
    funder, (a, b, _), _ = await funder_over_two_banks(api)

    both = await funder.ok("get", f"/v1/reports/summary?timebank={a}&timebank={b}")

    assert both["report"] == "summary"
    assert both["timebanks"] == [a, b]
    for slug in (a, b):
        one = await funder.ok("get", f"/v1/timebanks/{slug}/reports/summary")
        assert one["timebanks"] == [slug]


async def test_funder_key_over_two_banks_is_refused_other_banks_and_everything_but_reports(
    api: Api,
) -> None:
    funder, (a, b, c), ann = await funder_over_two_banks(api)

    for path in (  # bank c is outside the key's scope: as if unknown (SPEC §7.1)
        f"/v1/timebanks/{c}/reports/summary",
        f"/v1/reports/summary?timebank={a}&timebank={c}",
        f"/v1/reports/summary?timebank={c}",
        f"/v1/timebanks/{c}/members",
        f"/v1/timebanks/{c}/exchanges",
    ):
        assert_problem(await funder.get(path), 404, "not_found")
    for path in (
        f"/v1/timebanks/{a}/members",
        f"/v1/timebanks/{a}/members/{ann['id']}",
        f"/v1/timebanks/{a}/members/{ann['id']}/balance",
        f"/v1/timebanks/{a}/members/{ann['id']}/statement",
        f"/v1/timebanks/{a}/exchanges",
        f"/v1/timebanks/{b}/exchanges",
        f"/v1/timebanks/{a}/directory",
        f"/v1/timebanks/{a}/audit-events",
        f"/v1/timebanks/{a}/api-keys",
    ):
        assert_problem(await funder.get(path), 403, "forbidden")
    for path, body in (
        (f"/v1/timebanks/{a}/members", {"display_name": "Funded"}),
        (f"/v1/timebanks/{a}/api-keys", {"role": "funder"}),
        ("/v1/api-keys", {"role": "funder", "timebanks": [a, b, c]}),
    ):
        assert_problem(await funder.post(path, json=body), 403, "forbidden")
    assert (await api.ok("get", f"/v1/timebanks/{a}/members"))["items"] == [
        {k: v for k, v in ann.items() if k != "warnings"}
    ]


async def test_only_a_global_admin_creates_keys_that_span_time_banks(api: Api) -> None:
    a = (await api.timebank())["slug"]
    b = (await api.timebank())["slug"]
    bank_admin = api.as_key((await create_key(api, a, "admin"))["secret"])
    broker = api.as_key((await create_key(api, a, "broker"))["secret"])
    body = {"role": "funder", "timebanks": [a, b]}
    for client in (bank_admin, broker):
        assert_problem(await client.post("/v1/api-keys", json=body), 403, "forbidden")
    r = await api.post("/v1/api-keys", json={"role": "broker", "timebanks": [a]})
    assert_problem(r, 422, "validation_error")


async def test_broker_creates_member_keys_only(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    broker_key = await create_key(api, slug, "broker")
    other_broker = await create_key(api, slug, "broker")
    broker = api.as_key(broker_key["secret"])

    for role in ("admin", "broker", "funder"):
        r = await broker.post(f"/v1/timebanks/{slug}/api-keys", json={"role": role})
        assert_problem(r, 403, "forbidden")
    assert_problem(await broker.post("/v1/api-keys", json={"role": "admin"}), 403, "forbidden")
    assert_problem(
        await broker.delete(f"/v1/timebanks/{slug}/api-keys/{other_broker['id']}"),
        403,
        "forbidden",
    )
    member = await create_key(broker, slug, "member", member_id=ann["id"])
    assert member["role"] == "member"
    assert member["member_id"] == ann["id"]
    member_api = api.as_key(member["secret"])
    r = await member_api.post(
        f"/v1/timebanks/{slug}/api-keys", json={"role": "member", "member_id": ann["id"]}
    )
    assert_problem(r, 403, "forbidden")
    # the broker may revoke the member key it made
    await broker.ok("delete", f"/v1/timebanks/{slug}/api-keys/{member['id']}", status=200)
    assert_problem(
        await member_api.get(f"/v1/timebanks/{slug}/members/{ann['id']}/balance"),
        401,
        "unauthorized",
    )
    admin_view = await api.ok("get", f"/v1/timebanks/{slug}/api-keys")
    roles = sorted(k["role"] for k in admin_view["items"])
    assert roles == ["broker", "broker", "member"]


# --- CORS and security headers --------------------------------------------------------------


async def test_cors_is_off_by_default(api: Api) -> None:
    tb = await api.timebank()
    r = await api.get(f"/v1/timebanks/{tb['slug']}", headers={"Origin": ORIGIN})
    assert r.status_code == 200, r.text
    assert "access-control-allow-origin" not in r.headers
    preflight = await api.client.options(
        "/v1/timebanks",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-methods" not in preflight.headers


async def test_cors_answers_preflight_and_allows_the_configured_origin_only(
    db_url: str, admin_secret: str
) -> None:
    settings = Settings(
        database_url=db_url, log_json=False, log_level="WARNING", cors_origins=ORIGIN
    )
    async with AsyncTestClient(app=create_app(settings), timeout=60) as client:
        preflight = await client.options(
            "/v1/timebanks",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
            },
        )
        assert preflight.status_code in (200, 204), preflight.text
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        methods = {m.strip() for m in preflight.headers["access-control-allow-methods"].split(",")}
        assert {"GET", "POST", "PATCH", "DELETE"} <= methods
        allowed = preflight.headers["access-control-allow-headers"].lower()
        for header in ("authorization", "content-type", "idempotency-key"):
            assert header in allowed

        auth = {"Authorization": f"Bearer {admin_secret}"}
        r = await client.get("/v1/timebanks", headers={**auth, "Origin": ORIGIN})
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == ORIGIN
        assert "idempotent-replayed" in r.headers["access-control-expose-headers"].lower()

        evil = "https://evil.example"
        r = await client.get("/v1/timebanks", headers={**auth, "Origin": evil})
        assert r.headers.get("access-control-allow-origin") not in (evil, "*")
        refused = await client.options(
            "/v1/timebanks",
            headers={"Origin": evil, "Access-Control-Request-Method": "POST"},
        )
        assert refused.headers.get("access-control-allow-origin") not in (evil, "*")


def assert_security_headers(r: Any) -> None:
    assert r.headers.get("x-content-type-options") == "nosniff", dict(r.headers)
    assert r.headers.get("x-frame-options") in ("DENY", "SAMEORIGIN"), dict(r.headers)
    assert "no-store" in r.headers.get("cache-control", ""), dict(r.headers)


async def test_api_responses_carry_security_headers(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    responses = [
        await api.get("/v1/timebanks"),
        await api.get(f"/v1/timebanks/{slug}/members"),
        await api.post(f"/v1/timebanks/{slug}/members", json={"display_name": "Ann"}),
        await api.get("/v1/timebanks/no-such-bank"),  # 404 problem from a handler
        await api.post(f"/v1/timebanks/{slug}/members", json={}),  # 422
        await api.client.get("/v1/timebanks"),  # 401: no key
        await api.as_key("tbk_" + "x" * 43).get("/v1/timebanks"),  # 401: unknown key
    ]
    assert [r.status_code for r in responses] == [200, 200, 201, 404, 422, 401, 401]
    for r in responses:
        assert_security_headers(r)


async def test_unrouted_api_responses_carry_security_headers_too(api: Api) -> None:
    for r in (
        await api.get("/v1/no-such-resource"),
        await api.delete("/v1/timebanks"),
    ):
        assert r.status_code in (404, 405), r.text
        assert_security_headers(r)


async def test_cli_lists_keys_as_a_table_and_revoke_explains_a_bad_id(
    api: Api, db_url: str, session_maker: Maker, tmp_path: Path
) -> None:
    """`timebank keys list`: a header, the bank's slug, role, label and status — `expired`
    for an expired key; `keys revoke` with a bad id: one line, exit 1."""
    tb = await api.timebank()
    slug = tb["slug"]
    member = await api.member(slug, "Ann")
    expiring = await api.ok(
        "post",
        f"/v1/timebanks/{slug}/api-keys",
        {"role": "member", "member_id": member["id"], "label": "Ann's old phone"},
    )
    async with session_maker() as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == uuid.UUID(expiring["id"]))
            .values(expires_at=datetime.now(UTC) - timedelta(days=1))
        )
        await session.commit()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMEBANK_")}
    env["TIMEBANK_DATABASE_URL"] = db_url

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TIMEBANK_CLI, "keys", *args], env=env, cwd=tmp_path, capture_output=True, text=True
        )

    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == [
        "id",
        "prefix",
        "time",
        "bank",
        "role",
        "label",
        "status",
        "last",
        "used",
    ]
    row = next(r for r in rows if expiring["id"] in r)
    assert slug in row and "member" in row and "Ann's old phone" in row and "expired" in row
    bad = cli("revoke", "not-an-id")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "Error: 'not-an-id' is not a key id; ids look like 01937a40-0000-7000-8000-00000000beef "
        "(see `timebank keys list`)"
    ]
    missing = cli("revoke", str(uuid.uuid4()))
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
