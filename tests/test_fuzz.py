"""Fuzz every operation of the API against its own OpenAPI document (schemathesis).

Schemathesis reads the document the service serves at ``/schema/openapi.json`` and, for each
operation, sends positive and negative requests (its examples, coverage and fuzzing phases)
to the ASGI app in-process, on a fresh database of each engine. Every response must be:

* not a server error (no 5xx, whatever the input);
* of a documented status code, with a documented content type;
* a body that conforms to the documented schema (errors: problem+json with ``code``);
* for positive data, accepted (2xx) or refused for a documented reason that the document
  cannot express (see ``POSITIVE_REFUSALS``); for negative data, refused.

Requests are authenticated with real keys of a real time bank (global admin, bank admin,
broker, member, funder, and now and then none or a revoked one), and path parameters, ids
in bodies and queries, categories and report names are replaced — most of the time — by
ones that exist, so the fuzzer gets past the 404s into the ledger. The replacement is a
function of the generated case, so Hypothesis can replay and shrink a failure.

The CI budget is small (``TIMEBANK_FUZZ_EXAMPLES``, default below); ``make fuzz`` runs a
deeper search.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from litestar import Litestar
from litestar.testing import TestClient
from schemathesis.config import HealthCheck
from schemathesis.core.parameters import ParameterLocation
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import negative_data_rejection
from sqlalchemy.ext.asyncio import async_sessionmaker

from tests.pg import Cluster
from timebank.access import SYSTEM, Role
from timebank.app import create_app
from timebank.auth.service import create_key
from timebank.config import Settings
from timebank.db import create_engine
from timebank.reports.service import REPORTS

EXAMPLES = int(os.environ.get("TIMEBANK_FUZZ_EXAMPLES", "10"))


def served_openapi() -> dict[str, Any]:
    """The document exactly as a partner app downloads it."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/unused.db"  # never connected: the document is static
        app = create_app(Settings(database_url=url, log_json=False, log_level="ERROR"))
        with TestClient(app) as client:
            r = client.get("/schema/openapi.json")
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


class CurrentApp:
    """The ASGI app schemathesis talks to: it hands each request to the app of the running
    test (a fresh one per test, on its own database), so that schemathesis' own requests —
    the probes of `ignored_auth` too — reach it in-process. The real app's lifespan is run by
    the `world` fixture."""

    def __init__(self) -> None:
        self.app: Litestar | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert self.app is not None, "no test is running"
        await self.app(scope, receive, send)


CURRENT_APP = CurrentApp()
schema = schemathesis.openapi.from_dict(served_openapi())
schema.app = CURRENT_APP
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=EXAMPLES,
    # The API ignores query parameters it does not know, as HTTP APIs conventionally do (cache
    # busters, tracing); the document does not forbid them, so they are not negative data.
    allow_extra_parameters=False,
    # Keys are chosen by `choose_key` (every role, none, a revoked one); schemathesis would
    # otherwise generate an Authorization header of its own that the real key then replaces,
    # and report the "missing credentials" negative cases as wrongly accepted. The
    # `ignored_auth` check still probes every operation without and with a wrong key.
    with_security_parameters=False,
)
schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])
# Schemathesis' `positive_data_acceptance` expects every schema-valid request to be accepted.
# This API refuses some schema-valid requests by design (SPEC §3: 422 `validation_error` for a
# leg over the bank's `max_exchange_minutes`, an unknown category, a party of another bank,
# `from` after `to`, an unknown time zone, an opaque cursor it never gave out; 422
# `idempotency_key_reused`; 409 for the ledger's state), which no JSON Schema can state. It is
# replaced by `positive_data_is_refused_only_by_rules_beyond_the_schema` below, which still
# fails when a schema-valid request is refused for a reason the schema could state.
schema.config.checks.update(excluded_check_names=["positive_data_acceptance"])

# Messages of pydantic's and Litestar's own type and constraint checks: a schema-valid
# request refused with one of these means the document and the validator disagree.
SCHEMA_LEVEL_MESSAGE = re.compile(
    r"^(Input should|String should|List should|Dictionary should|Value should|Extra inputs"
    r"|Field required|Expected `|Invalid JSON|Object has"
    # the same checks in the service's words (timebank.errors.field_error)
    r"|unknown field|required: this field is missing|must be a date|must be an id"
    r"|value is not a valid email address(?!: The part after the @-sign is a special-use))"
)
POSITIVE_REFUSALS = {401, 403, 404, 409, 422}


def positive_data_is_refused_only_by_rules_beyond_the_schema(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """Schema-valid data is accepted, or refused with a documented status; a 422 only for a
    rule the schema cannot state (the service's own messages, never a type or bound)."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code < 400:
        return None
    if response.status_code not in POSITIVE_REFUSALS:
        raise AssertionError(f"Schema-valid request refused with {response.status_code}")
    if response.status_code == 422:
        for error in response.json().get("errors") or []:
            if SCHEMA_LEVEL_MESSAGE.match(error.get("message", "")):
                raise AssertionError(
                    f"Schema-valid request refused by a check the schema could state: {error}"
                )
    return None


# Requests go through a real database: "too slow" and friends say nothing about the API, and
# the fixtures (one world per operation and engine) are meant to outlive each example.
schema.config.update(suppress_health_check=[HealthCheck.all])


@dataclass
class World:
    """Real resources of a real time bank, and keys of every role."""

    slug: str
    other_slug: str
    keys: dict[str, str] = field(default_factory=dict)
    key_ids: list[str] = field(default_factory=list)
    member_ids: list[str] = field(default_factory=list)
    organisation_ids: list[str] = field(default_factory=list)
    account_ids: list[str] = field(default_factory=list)
    exchange_ids: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    own_member_id: str = ""
    pool_account_id: str = ""


def _ok(client: Any, method: str, path: str, secret: str, body: Any = None) -> Any:
    r = client.request(method, path, json=body, headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code in (200, 201), f"{method} {path}: {r.status_code} {r.text}"
    return r.json()


def build_world(app: Litestar, global_admin: str) -> World:
    """A time bank with members, an organisation, recorded, pending and reversed exchanges,
    and one key of each role, made through the API itself."""
    slug = f"fuzz-{uuid.uuid4().hex[:6]}"
    other = f"other-{uuid.uuid4().hex[:6]}"
    with asgi.get_client(app) as c:
        bank = _ok(
            c,
            "POST",
            "/v1/timebanks",
            global_admin,
            {"slug": slug, "name": "Fuzz Bank", "settings": {"starting_grant_minutes": 600}},
        )
        _ok(c, "POST", "/v1/timebanks", global_admin, {"slug": other, "name": "Other Bank"})
        tb = f"/v1/timebanks/{slug}"
        w = World(slug=slug, other_slug=other)
        w.keys["global_admin"] = global_admin
        admin = _ok(c, "POST", f"{tb}/api-keys", global_admin, {"role": "admin"})
        w.keys["admin"] = admin["secret"]
        members = [
            _ok(
                c,
                "POST",
                f"{tb}/members",
                admin["secret"],
                {
                    "display_name": name,
                    "statistics_consent": True,
                    "birth_year": 1950 + i * 10,
                    "gender": "female" if i % 2 else "male",
                    "locality": "Irvine",
                },
            )
            for i, name in enumerate(["May Reid", "Raj Singh", "Ann Lee"])
        ]
        org = _ok(
            c, "POST", f"{tb}/organisations", admin["secret"], {"name": "Shed", "kind": "charity"}
        )
        w.member_ids = [m["id"] for m in members]
        w.organisation_ids = [org["id"]]
        w.account_ids = [bank["pool_account_id"], org["account_id"]] + [
            m["account_id"] for m in members
        ]
        w.own_member_id = members[0]["id"]
        w.pool_account_id = bank["pool_account_id"]
        for role, extra in (
            ("broker", {}),
            ("member", {"member_id": members[0]["id"]}),
            ("funder", {}),
        ):
            made = _ok(c, "POST", f"{tb}/api-keys", admin["secret"], {"role": role, **extra})
            w.keys[role] = made["secret"]
            w.key_ids.append(made["id"])
        revoked = _ok(c, "POST", f"{tb}/api-keys", admin["secret"], {"role": "broker"})
        _ok(c, "DELETE", f"{tb}/api-keys/{revoked['id']}", admin["secret"])
        w.keys["revoked"] = revoked["secret"]
        w.categories = [
            cat["slug"]
            for cat in _ok(c, "GET", f"{tb}/categories?limit=500", admin["secret"])["items"]
        ]

        def party(i: int) -> dict[str, str]:
            return {"member_id": members[i]["id"]}

        def exchange(secret: str, body: dict[str, Any]) -> str:
            return str(_ok(c, "POST", f"{tb}/exchanges", secret, body)["id"])

        recorded = exchange(
            admin["secret"],
            {"provider": party(0), "recipient": party(1), "minutes": 90, "category": "transport"},
        )
        reversed_ = exchange(
            admin["secret"],
            {"provider": party(1), "recipient": party(2), "minutes": 30, "category": "admin-it"},
        )
        reversal = _ok(
            c, "POST", f"{tb}/exchanges/{reversed_}/reverse", admin["secret"], {"reason": "typo"}
        )["id"]
        group = exchange(
            admin["secret"],
            {
                "providers": [{"party": party(0), "minutes": 60}],
                "recipients": [
                    {"party": party(1), "minutes": 30},
                    {"party": party(2), "minutes": 30},
                ],
                "category": "learning-teaching",
            },
        )
        donation = exchange(
            admin["secret"],
            {
                "provider": {"account_id": bank["pool_account_id"]},
                "recipient": {"organisation_id": org["id"]},
                "minutes": 45,
            },
        )
        pending = [
            exchange(
                w.keys["member"],
                {
                    "provider": party(1),
                    "recipient": party(0),
                    "minutes": 20 + i,
                    "category": "companionship",
                },
            )
            for i in range(3)
        ]
        w.exchange_ids = [recorded, reversed_, reversal, group, donation, *pending]
    return w


def fuzz_settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, log_json=False, log_level="ERROR", rate_limit_per_minute=0)


async def _global_admin_key(db_url: str) -> str:
    engine = create_engine(fuzz_settings(db_url))
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            created = await create_key(session, SYSTEM, role=Role.admin, timebank_id=None)
            await session.commit()
            return created.secret
    finally:
        await engine.dispose()


# The world is built once per engine, through the API, into a template database that every
# test copies (as conftest copies the migrated template): the same ids and keys each time,
# and a copy costs a fraction of a build.
_templates: dict[str, tuple[str, World]] = {}
_copies = itertools.count()


def _world_template(engine_name: str, request: pytest.FixtureRequest) -> tuple[str, World]:
    if engine_name not in _templates:
        if engine_name == "sqlite":
            root = request.getfixturevalue("tmp_path_factory").mktemp("fuzz")
            path = root / "world.db"
            shutil.copy(request.getfixturevalue("sqlite_template"), path)
            url, template = f"sqlite+aiosqlite:///{path}", str(path)
        else:
            cluster: Cluster = request.getfixturevalue("pg_cluster")
            request.getfixturevalue("pg_template")
            cluster.psql("CREATE DATABASE fuzz_world TEMPLATE tb_template")
            url, template = cluster.url("fuzz_world"), "fuzz_world"
        app = create_app(fuzz_settings(url))
        try:
            _templates[engine_name] = (
                template,
                build_world(app, asyncio.run(_global_admin_key(url))),
            )
        finally:
            asgi.shutdown_lifespans()  # a template database must have no connections
        if engine_name == "sqlite":
            db = sqlite3.connect(template)
            try:  # fold the WAL in: only the file is copied
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                db.close()
    return _templates[engine_name]


def _copy_database(cluster: Cluster, template: str, name: str) -> None:
    """CREATE DATABASE … TEMPLATE, which PostgreSQL refuses while anyone is connected to the
    template: the connections of the app that built it end a moment after it closes them."""
    for _ in range(100):
        try:
            cluster.psql(f"CREATE DATABASE {name} TEMPLATE {template}")
            return
        except subprocess.CalledProcessError:
            cluster.psql(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{template}'"
            )
            time.sleep(0.05)
    cluster.psql(f"CREATE DATABASE {name} TEMPLATE {template}")


@pytest.fixture
def world(
    engine_name: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    """A fresh copy of the world on the engine of the test, served by a fresh app."""
    if engine_name == "postgresql" and request.getfixturevalue("pg_cluster") is None:
        pytest.skip(
            "!!! PostgreSQL binaries not found: PostgreSQL tests SKIPPED (they fail with CI=true)"
        )
    template, world = _world_template(engine_name, request)
    cluster: Cluster | None = None
    if engine_name == "sqlite":
        shutil.copy(template, tmp_path / "test.db")
        db_url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    else:
        cluster = request.getfixturevalue("pg_cluster")
        assert cluster is not None
        name = f"fuzz_{os.getpid()}_{next(_copies)}"
        _copy_database(cluster, template, name)
        db_url = cluster.url(name)
    # The per-key rate limit would turn a deep run into a stream of 429s: off (0).
    monkeypatch.setenv("TIMEBANK_RATE_LIMIT_PER_MINUTE", "0")
    app = create_app(fuzz_settings(db_url))
    try:
        with asgi.get_client(app) as c:  # runs the app's lifespan until shutdown_lifespans()
            # The copy holds the world (else the fuzz would meet nothing but 404s).
            members = _ok(c, "GET", f"/v1/timebanks/{world.slug}/members", world.keys["admin"])
            assert [m["id"] for m in members["items"]] == world.member_ids
        CURRENT_APP.app = app
        yield world
    finally:
        CURRENT_APP.app = None
        # Schemathesis keeps each app's lifespan running until asked: end this one's, so
        # its database connections close before the database is dropped.
        asgi.shutdown_lifespans()
        if cluster is not None:
            cluster.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _draw(digest: bytes, i: int, options: list[Any]) -> Any:
    return options[digest[i % len(digest)] % len(options)]


def _digest(case: schemathesis.Case) -> bytes:
    seed = repr((case.operation.label, case.path_parameters, case.query, case.body, case.headers))
    return hashlib.sha256(seed.encode()).digest()


def _positive_at(case: schemathesis.Case, location: ParameterLocation) -> bool:
    return case.meta is None or not case.meta.is_negative_at(location)


def choose_key(case: schemathesis.Case, w: World, digest: bytes) -> str | None:
    """Mostly staff keys (they reach most code); members, funders, none and revoked ones too."""
    weights = (
        ["admin"] * 8
        + ["global_admin"] * 4
        + ["broker"] * 4
        + ["member"] * 3
        + ["funder"] * 2
        + ["none", "revoked"]
    )
    role = _draw(digest, 0, weights)
    if role == "none":
        return None
    return w.keys[role]


MAX_MINUTES = 1440  # the fuzz bank's max_exchange_minutes (the default)
PATH_ONLY = {"tb", "name"}  # a time bank's or a report's name, not a body's `name`
ID_POOLS = {
    "member_id": "member_ids",
    "organisation_id": "organisation_ids",
    "account_id": "account_ids",
    "exchange_id": "exchange_ids",
    "key_id": "key_ids",
}


def real_value(name: str, w: World, digest: bytes, salt: int) -> Any:
    """An existing value for a parameter or body field called ``name``, or ``None``."""
    if name == "tb":
        return _draw(digest, salt, [w.slug] * 6 + [w.other_slug])
    if name == "name":
        return _draw(digest, salt, list(REPORTS))
    if name == "category":
        return _draw(digest, salt, w.categories)
    if name in ID_POOLS:
        return _draw(digest, salt, getattr(w, ID_POOLS[name]))
    return None


def _often(digest: bytes, i: int) -> bool:
    """True about four times in five."""
    return digest[(i * 7 + 3) % len(digest)] % 5 != 0


def ground(case: schemathesis.Case, w: World) -> str | None:
    """Point the case at real resources (most of the time) and pick the key it is sent with."""
    digest = _digest(case)
    if case.path_parameters and _positive_at(case, ParameterLocation.PATH):
        params = dict(case.path_parameters)
        for i, name in enumerate(sorted(params)):
            value = real_value(name, w, digest, i + 1)
            if value is not None and _often(digest, i + 1):
                params[name] = value
        case.path_parameters = params
    if case.query and _positive_at(case, ParameterLocation.QUERY):
        query = dict(case.query)
        for i, name in enumerate(sorted(query)):
            if name == "timebank":
                query[name] = [w.slug] if _often(digest, 11) else [w.slug, w.other_slug]
                continue
            value = real_value(name, w, digest, i + 11)
            if value is not None and _often(digest, i + 11):
                query[name] = value
        case.query = query
    if (
        case.headers
        and "Idempotency-Key" in case.headers
        and _positive_at(case, ParameterLocation.HEADER)
        and _often(digest, 9)
    ):
        # Generated keys repeat ("0"), so most requests would replay or clash.
        case.headers["Idempotency-Key"] = digest.hex()
    if isinstance(case.body, dict) and _positive_at(case, ParameterLocation.BODY):
        case.body = _ground_body(case.body, w, digest, [20])
    return choose_key(case, w, digest)


def _ground_body(node: Any, w: World, digest: bytes, counter: list[int]) -> Any:
    if isinstance(node, list):
        return [_ground_body(v, w, digest, counter) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for name, value in node.items():
        counter[0] += 1
        in_body = isinstance(value, str) and name not in PATH_ONLY
        real = real_value(name, w, digest, counter[0]) if in_body else None
        if name == "account_id" and isinstance(value, str):
            real = w.pool_account_id  # the only account a party may name
        if name == "timebanks" and isinstance(value, list):
            real = [w.slug]
        if name == "minutes" and isinstance(value, int) and value > MAX_MINUTES:
            real = value % MAX_MINUTES + 1  # within the bank's max_exchange_minutes
        if real is not None and _often(digest, counter[0]):
            out[name] = real
        else:
            out[name] = _ground_body(value, w, digest, counter)
    return out


BATCH = "POST /v1/timebanks/{tb}/exchanges/batch"


def batch_items_are_refused_one_by_one(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """A batch judges each item on its own (a mistyped sheet line must not stop the rest):
    a body made invalid inside an item is refused as a whole (4xx) or in that item's result
    — never recorded whole as if it were valid."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative or response.status_code >= 400:
        return None
    if response.status_code != 200:
        return None  # e.g. 204 to OPTIONS: not a batch verdict
    results = response.json().get("results") or []
    if not any(r.get("status", 0) >= 400 for r in results):
        raise AssertionError(
            f"An invalid batch was accepted with every item recorded: {response.status_code} "
            f"{response.content[:300]!r}"
        )
    return None


@schema.parametrize()
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case, world: World) -> None:
    """One operation, on one engine: every response as documented (see the module)."""
    secret = ground(case, world)
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    checks: list[Any] = [positive_data_is_refused_only_by_rules_beyond_the_schema]
    excluded: list[Any] = []
    if case.operation.label == BATCH:
        # items are documented as ExchangeCreate (for generators) but judged one by one
        checks.append(batch_items_are_refused_one_by_one)
        excluded.append(negative_data_rejection)
    case.call_and_validate(headers=headers, additional_checks=checks, excluded_checks=excluded)
