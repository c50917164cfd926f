"""SPEC §3 error table: every refusal is RFC 9457 ``application/problem+json`` with a stable
``code``, never a 500 for bad input, never a traceback, and a refused request leaves nothing
behind."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Api, gather, party, simple
from timebank.app import create_app
from timebank.auth.models import ApiKey
from timebank.auth.service import hash_secret
from timebank.config import Settings
from timebank.idempotency import IdempotencyRecord, fingerprint

PROBLEM_KEYS = ("type", "title", "status", "detail", "code")
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/', "site-packages", '.py", line')


def assert_no_traceback(r: Any) -> None:
    for marker in TRACEBACK_MARKERS:
        assert marker not in r.text, f"response leaks a stack trace: {r.text[:2000]}"


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    """The response is a problem+json document with the given status and stable code."""
    assert r.status_code == status, (
        f"expected {status} {code}, got {r.status_code}: {r.text[:2000]}"
    )
    ctype = r.headers.get("content-type", "")
    assert ctype.split(";")[0].strip() == "application/problem+json", ctype
    body = r.json()
    assert isinstance(body, dict), body
    for key in PROBLEM_KEYS:
        assert key in body, f"problem body lacks {key!r}: {body}"
    assert body["status"] == status
    assert body["code"] == code
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert_no_traceback(r)
    return body


def assert_validation(r: Any, field: str | None = None) -> list[dict[str, str]]:
    """422 validation_error with ``errors: [{field, message}]``; when ``field`` is given, one
    of the errors names it (exactly, or as the leading part of a nested path)."""
    body = assert_problem(r, 422, "validation_error")
    errors = body.get("errors")
    assert isinstance(errors, list) and errors, body
    for e in errors:
        assert set(e) >= {"field", "message"}, e
        assert isinstance(e["field"], str) and e["field"]
        assert isinstance(e["message"], str) and e["message"]
    if field is not None:
        fields = [e["field"] for e in errors]
        assert any(
            f == field or f.startswith(field + ".") or f.startswith(field + "[") for f in fields
        ), f"no error names {field!r}: {errors}"
    return errors


async def snapshot(api: Api, slug: str, *members: dict[str, Any]) -> tuple[list[Any], list[int]]:
    """What a refused request must not change: the exchange list and the members' balances."""
    ex = await api.ok("get", f"/v1/timebanks/{slug}/exchanges?limit=500")
    balances = [await api.balance(slug, m["id"]) for m in members]
    return sorted(e["id"] for e in ex["items"]), balances


async def key_id(session_maker: async_sessionmaker[AsyncSession], secret: str) -> uuid.UUID:
    async with session_maker() as s:
        kid = (
            await s.execute(select(ApiKey.id).where(ApiKey.secret_hash == hash_secret(secret)))
        ).scalar_one()
    return kid


# --- 400 malformed_request ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"display_name": "Ann",}', b'{"display_name": "Ann"', b"\xff\xfe\x00garbage"],
    ids=["bare-word", "trailing-comma", "unterminated", "not-utf8"],
)
async def test_body_that_is_not_json_is_refused_with_400_malformed_request(
    api: Api, raw: bytes
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    r = await api.client.post(
        f"/v1/timebanks/{slug}/members",
        content=raw,
        headers=api.headers({"Content-Type": "application/json"}),
    )
    assert_problem(r, 400, "malformed_request")
    members = await api.ok("get", f"/v1/timebanks/{slug}/members")
    assert members["items"] == []


async def test_exchange_body_that_is_not_json_is_refused_with_400_malformed_request(
    api: Api,
) -> None:
    tb = await api.timebank()
    r = await api.client.post(
        f"/v1/timebanks/{tb['slug']}/exchanges",
        content=b'{"minutes": 60, provider}',
        headers=api.headers({"Content-Type": "application/json", "Idempotency-Key": "k1"}),
    )
    assert_problem(r, 400, "malformed_request")


# --- 401 unauthorized -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "tbk_no_scheme",
        "Bearer not-a-key",
        "Bearer tbk_" + "x" * 43,
        "Bearer tbk_" + "y" * 500,
    ],
    ids=[
        "no-header",
        "empty",
        "bearer-only",
        "bearer-blank",
        "basic",
        "no-scheme",
        "no-prefix",
        "unknown-key",
        "overlong-key",
    ],
)
async def test_missing_or_unknown_key_is_refused_with_401(
    api: Api, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in [("get", "/v1/timebanks"), ("post", "/v1/timebanks")]:
        if method == "get":
            r = await api.client.get(path, headers=headers)
        else:
            r = await api.client.post(
                path, json={"slug": "sneaky", "name": "Sneaky"}, headers=headers
            )
        assert_problem(r, 401, "unauthorized")
    # nothing was created by the refused POST
    listed = await api.ok("get", "/v1/timebanks")
    assert all(t["slug"] != "sneaky" for t in listed["items"])


async def test_revoked_key_is_refused_with_401_at_once(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    created = await api.ok("post", f"/v1/timebanks/{slug}/api-keys", {"role": "broker"})
    broker = api.as_key(created["secret"])
    assert (await broker.get(f"/v1/timebanks/{slug}")).status_code == 200
    await api.ok("delete", f"/v1/timebanks/{slug}/api-keys/{created['id']}")
    assert_problem(await broker.get(f"/v1/timebanks/{slug}"), 401, "unauthorized")
    assert_problem(
        await broker.post(f"/v1/timebanks/{slug}/members", json={"display_name": "X"}),
        401,
        "unauthorized",
    )
    assert (await api.ok("get", f"/v1/timebanks/{slug}/members"))["items"] == []


async def test_creating_a_key_that_already_expired_is_refused_with_422(api: Api) -> None:
    tb = await api.timebank()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    r = await api.post(
        f"/v1/timebanks/{tb['slug']}/api-keys", json={"role": "broker", "expires_at": past}
    )
    assert_validation(r, "expires_at")


async def test_expired_key_is_refused_with_401(
    api: Api, session_maker: async_sessionmaker[AsyncSession]
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    created = await api.ok(
        "post", f"/v1/timebanks/{slug}/api-keys", {"role": "broker", "expires_at": future}
    )
    broker = api.as_key(created["secret"])
    assert (await broker.get(f"/v1/timebanks/{slug}")).status_code == 200
    async with session_maker() as s:
        await s.execute(
            update(ApiKey)
            .where(ApiKey.id == uuid.UUID(created["id"]))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await s.commit()
    assert_problem(await broker.get(f"/v1/timebanks/{slug}"), 401, "unauthorized")
    assert_problem(
        await broker.post(f"/v1/timebanks/{slug}/members", json={"display_name": "X"}),
        401,
        "unauthorized",
    )


async def test_401_comes_before_404_for_an_unknown_time_bank(api: Api) -> None:
    r = await api.client.get("/v1/timebanks/no-such-bank/members")
    assert_problem(r, 401, "unauthorized")


# --- 403 forbidden --------------------------------------------------------------------------


async def test_broker_key_creating_a_time_bank_is_refused_with_403(api: Api) -> None:
    tb = await api.timebank()
    broker = api.as_key(await api.key(tb["slug"], "broker"))
    r = await broker.post("/v1/timebanks", json={"slug": "broker-made", "name": "Nope"})
    assert_problem(r, 403, "forbidden")
    assert_problem(await api.get("/v1/timebanks/broker-made"), 404, "not_found")


async def test_broker_key_creating_a_broker_key_is_refused_with_403(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    broker = api.as_key(await api.key(slug, "broker"))
    for role in ("broker", "admin", "funder"):
        r = await broker.post(f"/v1/timebanks/{slug}/api-keys", json={"role": role})
        assert_problem(r, 403, "forbidden")
    keys = await api.ok("get", f"/v1/timebanks/{slug}/api-keys")
    assert len(keys["items"]) == 1  # only the broker key itself


async def test_a_time_bank_outside_the_keys_scope_is_404_as_an_unknown_one(api: Api) -> None:
    """SPEC §7.1: the same status and code for an unknown bank and one outside the scope,
    so a key cannot list which bank slugs exist."""
    a = await api.timebank()
    b = await api.timebank()
    b_ann = await api.member(b["slug"], "Ann")
    b_bob = await api.member(b["slug"], "Bob")
    before = await snapshot(api, b["slug"], b_ann, b_bob)
    for role in ("broker", "admin"):
        key = api.as_key(await api.key(a["slug"], role))
        assert_problem(await key.get(f"/v1/timebanks/{b['slug']}"), 404, "not_found")
        assert_problem(await key.get(f"/v1/timebanks/{b['slug']}/members"), 404, "not_found")
        assert_problem(
            await key.get(f"/v1/timebanks/{b['slug']}/members/{b_ann['id']}"), 404, "not_found"
        )
        assert_problem(
            await key.post(f"/v1/timebanks/{b['slug']}/members", json={"display_name": "Intruder"}),
            404,
            "not_found",
        )
        r = await key.exchange(b["slug"], simple(b_ann, b_bob, 60))
        assert_problem(r, 404, "not_found")
    assert await snapshot(api, b["slug"], b_ann, b_bob) == before
    members = await api.ok("get", f"/v1/timebanks/{b['slug']}/members")
    assert len(members["items"]) == 2


# --- 404 not_found --------------------------------------------------------------------------


async def test_unknown_time_bank_slug_is_404(api: Api) -> None:
    for path in [
        "/v1/timebanks/no-such-bank",
        "/v1/timebanks/no-such-bank/members",
        "/v1/timebanks/no-such-bank/exchanges",
        "/v1/timebanks/no-such-bank/categories",
    ]:
        assert_problem(await api.get(path), 404, "not_found")
    r = await api.post("/v1/timebanks/no-such-bank/members", json={"display_name": "Ann"})
    assert_problem(r, 404, "not_found")


async def test_unknown_member_id_is_404(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    unknown = uuid.uuid4()
    for suffix in ("", "/balance", "/statement"):
        assert_problem(
            await api.get(f"/v1/timebanks/{slug}/members/{unknown}{suffix}"), 404, "not_found"
        )
    r = await api.patch(f"/v1/timebanks/{slug}/members/{unknown}", json={"status": "suspended"})
    assert_problem(r, 404, "not_found")


async def test_member_of_another_time_bank_in_the_path_is_404(api: Api) -> None:
    a = await api.timebank()
    b = await api.timebank()
    b_ann = await api.member(b["slug"], "Ann")
    r = await api.get(f"/v1/timebanks/{a['slug']}/members/{b_ann['id']}")
    assert_problem(r, 404, "not_found")


async def test_unknown_exchange_id_is_404(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    unknown = uuid.uuid4()
    assert_problem(await api.get(f"/v1/timebanks/{slug}/exchanges/{unknown}"), 404, "not_found")
    r = await api.post(f"/v1/timebanks/{slug}/exchanges/{unknown}/reverse", json={"reason": "x"})
    assert_problem(r, 404, "not_found")


@pytest.mark.parametrize("path", ["/v1/nothing-here", "/nothing", "/v1/timebanks/x/y/z/w"])
async def test_unknown_route_is_404_problem(api: Api, path: str) -> None:
    assert_problem(await api.get(path), 404, "not_found")


# --- 422 validation_error -------------------------------------------------------------------


async def _bank_with_parties(api: Api, **settings: Any) -> dict[str, Any]:
    tb = await api.timebank(**settings)
    slug = tb["slug"]
    other = await api.timebank()
    return {
        "tb": tb,
        "slug": slug,
        "ann": await api.member(slug, "Ann"),
        "bob": await api.member(slug, "Bob"),
        "cat": await api.member(slug, "Cat"),
        "org": await api.organisation(slug),
        "other": other,
        "stranger": await api.member(other["slug"], "Stranger"),
        "stranger_org": await api.organisation(other["slug"], "Elsewhere"),
    }


def _future(days: int = 2) -> str:
    return (date.today() + timedelta(days=days)).isoformat()


def _leg(entity: dict[str, Any], minutes: int) -> dict[str, Any]:
    return {"party": party(entity), "minutes": minutes}


EXCHANGE_422: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], str | None]] = {
    # name: (body from the fixture parties, the field the error should name)
    "minutes-missing": (
        lambda p: {
            "provider": party(p["ann"]),
            "recipient": party(p["bob"]),
            "category": "transport",
        },
        None,
    ),
    "provider-missing": (
        lambda p: {"recipient": party(p["bob"]), "minutes": 60, "category": "transport"},
        None,
    ),
    "category-missing": (lambda p: simple(p["ann"], p["bob"], 60, category=None), "category"),
    "minutes-zero": (lambda p: simple(p["ann"], p["bob"], 0), "minutes"),
    "minutes-negative": (lambda p: simple(p["ann"], p["bob"], -30), "minutes"),
    "minutes-not-integer": (
        lambda p: {**simple(p["ann"], p["bob"], 60), "minutes": 1.5},
        "minutes",
    ),
    "minutes-a-string": (
        lambda p: {**simple(p["ann"], p["bob"], 60), "minutes": "sixty"},
        "minutes",
    ),
    "minutes-over-max-exchange": (lambda p: simple(p["ann"], p["bob"], 121), "minutes"),
    "group-leg-zero": (
        lambda p: {
            "providers": [_leg(p["ann"], 0)],
            "recipients": [_leg(p["bob"], 0)],
            "category": "transport",
        },
        "providers",
    ),
    "group-leg-over-max-exchange": (
        lambda p: {
            "providers": [_leg(p["ann"], 121)],
            "recipients": [_leg(p["bob"], 61), _leg(p["cat"], 60)],
            "category": "transport",
        },
        "providers",
    ),
    "occurred-on-after-today": (
        lambda p: simple(p["ann"], p["bob"], 60, occurred_on=_future()),
        "occurred_on",
    ),
    "occurred-on-not-a-date": (
        lambda p: simple(p["ann"], p["bob"], 60, occurred_on="2026-02-30"),
        "occurred_on",
    ),
    "same-party-twice-simple": (lambda p: simple(p["ann"], p["ann"], 60), None),
    "same-party-twice-group": (
        lambda p: {
            "providers": [_leg(p["ann"], 30), _leg(p["ann"], 30)],
            "recipients": [_leg(p["bob"], 60)],
            "category": "transport",
        },
        "providers",
    ),
    "same-party-both-sides-group": (
        lambda p: {
            "providers": [_leg(p["ann"], 60)],
            "recipients": [_leg(p["bob"], 30), _leg(p["ann"], 30)],
            "category": "transport",
        },
        "recipients",
    ),
    "member-of-another-bank": (lambda p: simple(p["ann"], p["stranger"], 60), "recipient"),
    "organisation-of-another-bank": (lambda p: simple(p["stranger_org"], p["ann"], 60), "provider"),
    "unknown-member-id": (
        lambda p: simple({"display_name": "x", "id": str(uuid.uuid4())}, p["ann"], 60),
        "provider",
    ),
    "unbalanced-group": (
        lambda p: {
            "providers": [_leg(p["ann"], 60)],
            "recipients": [_leg(p["bob"], 30), _leg(p["cat"], 20)],
            "category": "transport",
        },
        None,
    ),
    "mixed-types-one-side": (
        lambda p: {
            "providers": [_leg(p["ann"], 60)],
            "recipients": [_leg(p["bob"], 30), _leg(p["org"], 30)],
            "category": "transport",
        },
        "recipients",
    ),
    "unknown-category": (lambda p: simple(p["ann"], p["bob"], 60, category="juggling"), "category"),
    "account-id-of-a-member-not-the-pool": (
        lambda p: {
            "provider": {"account_id": p["ann"]["account_id"]},
            "recipient": party(p["bob"]),
            "minutes": 60,
        },
        "provider",
    ),
    "account-id-of-another-banks-pool": (
        lambda p: {
            "provider": {"account_id": p["other"]["pool_account_id"]},
            "recipient": party(p["bob"]),
            "minutes": 60,
        },
        "provider",
    ),
    "party-with-two-ids": (
        lambda p: {
            "provider": {"member_id": p["ann"]["id"], "organisation_id": p["org"]["id"]},
            "recipient": party(p["bob"]),
            "minutes": 60,
            "category": "transport",
        },
        "provider",
    ),
    "party-member-id-not-a-uuid": (
        lambda p: {
            "provider": {"member_id": "ann"},
            "recipient": party(p["bob"]),
            "minutes": 60,
            "category": "transport",
        },
        "provider",
    ),
    "unknown-field": (lambda p: {**simple(p["ann"], p["bob"], 60), "hours": 1}, None),
    "category-on-a-pool-grant": (
        lambda p: {
            "provider": party(p["ann"]),
            "recipient": party(p["tb"]),
            "minutes": 60,
            "category": "transport",
        },
        "category",
    ),
    "override-without-reason": (
        lambda p: {**simple(p["ann"], p["bob"], 60), "override_limits": True},
        None,
    ),
}


@pytest.mark.parametrize("case", list(EXCHANGE_422), ids=list(EXCHANGE_422))
async def test_invalid_exchange_is_refused_with_422_and_nothing_is_written(
    api: Api, case: str
) -> None:
    p = await _bank_with_parties(api, max_exchange_minutes=120)
    slug = p["slug"]
    before = await snapshot(api, slug, p["ann"], p["bob"], p["cat"])
    make, field = EXCHANGE_422[case]
    body = make(p)
    if body.get("category", "") is None:
        del body["category"]
    r = await api.exchange(slug, body, headers={"Idempotency-Key": f"k-{case}"})
    assert_validation(r, field)
    assert await snapshot(api, slug, p["ann"], p["bob"], p["cat"]) == before
    # not stored under the Idempotency-Key either: a corrected retry with that key succeeds
    fixed = await api.exchange(
        slug, simple(p["ann"], p["bob"], 60), headers={"Idempotency-Key": f"k-{case}"}
    )
    assert fixed.status_code == 201, fixed.text
    assert fixed.headers.get("Idempotent-Replayed") is None


@pytest.mark.parametrize("missing", ["minutes", "provider", "recipient"])
async def test_exchange_missing_a_required_field_names_that_field_in_the_422(
    api: Api, missing: str
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    body = simple(ann, bob, 60)
    del body[missing]
    assert_validation(await api.exchange(slug, body), missing)


async def test_member_without_display_name_is_refused_with_422_naming_the_field(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    assert_validation(await api.post(f"/v1/timebanks/{slug}/members", json={}), "display_name")
    assert_validation(
        await api.post(f"/v1/timebanks/{slug}/members", json={"display_name": ""}), "display_name"
    )
    assert_validation(
        await api.post(
            f"/v1/timebanks/{slug}/members", json={"display_name": "Ann", "gender": "robot"}
        ),
        "gender",
    )
    assert (await api.ok("get", f"/v1/timebanks/{slug}/members"))["items"] == []


async def test_time_bank_with_invalid_slug_is_refused_with_422(api: Api) -> None:
    for slug in ("A", "Has Spaces", "-leading-dash", "x" * 64):
        r = await api.post("/v1/timebanks", json={"slug": slug, "name": "X"})
        assert_validation(r, "slug")
    assert_validation(await api.post("/v1/timebanks", json={"name": "No slug"}), "slug")


@pytest.mark.parametrize("limit", ["0", "501", "-1", "abc"])
@pytest.mark.parametrize(
    "listing", ["", "/members", "/exchanges", "/categories", "/organisations", "/api-keys"]
)
async def test_list_limit_outside_1_to_500_is_refused_with_422(
    api: Api, listing: str, limit: str
) -> None:
    tb = await api.timebank()
    path = "/v1/timebanks" if listing == "" else f"/v1/timebanks/{tb['slug']}{listing}"
    assert_validation(await api.get(f"{path}?limit={limit}"), "limit")


@pytest.mark.parametrize("limit", ["1", "500"])
async def test_list_limit_at_the_bounds_is_accepted(api: Api, limit: str) -> None:
    tb = await api.timebank()
    r = await api.get(f"/v1/timebanks/{tb['slug']}/members?limit={limit}")
    assert r.status_code == 200, r.text


async def test_garbage_cursor_is_refused_with_422_not_500(api: Api) -> None:
    tb = await api.timebank()
    for listing in ("/members", "/exchanges", "/categories", "/api-keys"):
        r = await api.get(f"/v1/timebanks/{tb['slug']}{listing}?cursor=%%%not-a-cursor")
        assert_validation(r, "cursor")


def b64(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# Cursors this API never gave out: not base64, not ASCII inside ("wrI" is "²", which
# str.isdigit accepts), a number too large for a 64-bit column, negative, an id of the
# wrong shape.
BAD_CURSORS = ["%%%not-a-cursor", "wrI", b64("9" * 30), b64("-5"), b64("12a"), b64("not-a-uuid")]


@pytest.mark.parametrize("cursor", BAD_CURSORS)
async def test_every_listing_refuses_a_malformed_cursor_with_422(api: Api, cursor: str) -> None:
    tb = await api.timebank()
    ann = await api.member(tb["slug"], "Ann")
    org = await api.organisation(tb["slug"], "Food Bank")
    for listing in (
        "/members",
        "/organisations",
        "/directory",
        "/exchanges",
        "/categories",
        "/api-keys",
        "/audit-events",
        f"/members/{ann['id']}/statement",
        f"/organisations/{org['id']}/statement",
    ):
        r = await api.get(f"/v1/timebanks/{tb['slug']}{listing}", params={"cursor": cursor})
        assert_validation(r, "cursor")
    assert_validation(await api.get("/v1/timebanks", params={"cursor": cursor}), "cursor")


async def test_a_member_key_with_a_malformed_cursor_gets_the_403_it_would_get_anyway(
    api: Api,
) -> None:
    tb = await api.timebank()
    ann = await api.member(tb["slug"], "Ann")
    member = api.as_key(await api.key(tb["slug"], "member", member_id=ann["id"]))
    r = await member.get(f"/v1/timebanks/{tb['slug']}/audit-events", params={"cursor": "wrI"})
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "forbidden"


# --- 409 balance_limit_exceeded -------------------------------------------------------------


async def test_exchange_over_member_limit_is_refused_with_409_and_changes_nothing(
    api: Api,
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    assert (await api.exchange(slug, simple(ann, bob, 500))).status_code == 201
    before = await snapshot(api, slug, ann, bob)
    assert before[1] == [500, -500]
    # Bob at -500 with min -600: receiving 101 more would leave him at -601
    r = await api.exchange(slug, simple(ann, bob, 101), headers={"Idempotency-Key": "over"})
    assert_problem(r, 409, "balance_limit_exceeded")
    assert await snapshot(api, slug, ann, bob) == before
    statement = await api.ok("get", f"/v1/timebanks/{slug}/members/{bob['id']}/statement")
    assert len(statement["items"]) == 1
    # exactly at the limit is fine, and the refused Idempotency-Key was not stored
    ok = await api.exchange(slug, simple(ann, bob, 100), headers={"Idempotency-Key": "over"})
    assert ok.status_code == 201, ok.text
    assert await api.balance(slug, bob["id"]) == -600


async def test_group_exchange_with_one_leg_over_limit_is_refused_with_409_all_or_nothing(
    api: Api,
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    cat = await api.member(slug, "Cat")
    assert (await api.exchange(slug, simple(ann, cat, 550))).status_code == 201
    before = await snapshot(api, slug, ann, bob, cat)
    body = {
        "providers": [_leg(ann, 120)],
        "recipients": [_leg(bob, 60), _leg(cat, 60)],
        "category": "learning-teaching",
    }
    assert_problem(await api.exchange(slug, body), 409, "balance_limit_exceeded")
    assert await snapshot(api, slug, ann, bob, cat) == before


async def test_exchange_over_organisation_max_is_refused_with_409(api: Api) -> None:
    tb = await api.timebank(organisation_max_balance_minutes=100)
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    org = await api.organisation(slug)
    r = await api.exchange(slug, simple(org, ann, 101))
    assert_problem(r, 409, "balance_limit_exceeded")
    assert (await api.ok("get", f"/v1/timebanks/{slug}/exchanges"))["items"] == []


# --- 409 party_inactive ---------------------------------------------------------------------


@pytest.mark.parametrize("status", ["suspended", "left"])
@pytest.mark.parametrize("side", ["provider", "recipient"])
async def test_exchange_with_inactive_member_is_refused_with_409_party_inactive(
    api: Api, status: str, side: str
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    await api.ok("patch", f"/v1/timebanks/{slug}/members/{bob['id']}", {"status": status})
    before = await snapshot(api, slug, ann, bob)
    body = simple(bob, ann, 60) if side == "provider" else simple(ann, bob, 60)
    assert_problem(await api.exchange(slug, body), 409, "party_inactive")
    assert await snapshot(api, slug, ann, bob) == before
    # reactivated, the same exchange is accepted
    await api.ok("patch", f"/v1/timebanks/{slug}/members/{bob['id']}", {"status": "active"})
    assert (await api.exchange(slug, body)).status_code == 201


async def test_exchange_with_suspended_organisation_is_refused_with_409_party_inactive(
    api: Api,
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    org = await api.organisation(slug)
    await api.ok(
        "patch", f"/v1/timebanks/{slug}/organisations/{org['id']}", {"status": "suspended"}
    )
    before = await snapshot(api, slug, ann)
    assert_problem(await api.exchange(slug, simple(ann, org, 60)), 409, "party_inactive")
    assert await snapshot(api, slug, ann) == before


async def test_reversal_ignores_party_status_so_is_not_refused_as_inactive(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    ex = await api.ok("post", f"/v1/timebanks/{slug}/exchanges", simple(ann, bob, 60))
    await api.ok("patch", f"/v1/timebanks/{slug}/members/{bob['id']}", {"status": "suspended"})
    r = await api.post(
        f"/v1/timebanks/{slug}/exchanges/{ex['id']}/reverse", json={"reason": "wrong member"}
    )
    assert r.status_code == 201, r.text
    assert await api.balance(slug, bob["id"]) == 0


# --- 409 already_reversed / not_reversible --------------------------------------------------


async def test_second_reversal_is_refused_with_409_already_reversed(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    ex = await api.ok("post", f"/v1/timebanks/{slug}/exchanges", simple(ann, bob, 90))
    await api.ok("post", f"/v1/timebanks/{slug}/exchanges/{ex['id']}/reverse", {"reason": "typo"})
    before = await snapshot(api, slug, ann, bob)
    assert before[1] == [0, 0]
    r = await api.post(
        f"/v1/timebanks/{slug}/exchanges/{ex['id']}/reverse", json={"reason": "again"}
    )
    assert_problem(r, 409, "already_reversed")
    assert await snapshot(api, slug, ann, bob) == before


async def test_reversing_a_reversal_is_refused_with_409_not_reversible(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    ex = await api.ok("post", f"/v1/timebanks/{slug}/exchanges", simple(ann, bob, 90))
    rev = await api.ok(
        "post", f"/v1/timebanks/{slug}/exchanges/{ex['id']}/reverse", {"reason": "typo"}
    )
    before = await snapshot(api, slug, ann, bob)
    r = await api.post(
        f"/v1/timebanks/{slug}/exchanges/{rev['id']}/reverse", json={"reason": "undo the undo"}
    )
    assert_problem(r, 409, "not_reversible")
    assert await snapshot(api, slug, ann, bob) == before


async def test_concurrent_reversals_of_one_exchange_give_one_201_rest_409_already_reversed(
    api: Api,
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    ex = await api.ok("post", f"/v1/timebanks/{slug}/exchanges", simple(ann, bob, 45))
    rs = await gather(
        *[
            api.post(f"/v1/timebanks/{slug}/exchanges/{ex['id']}/reverse", json={"reason": f"r{i}"})
            for i in range(6)
        ]
    )
    assert sorted(r.status_code for r in rs) == [201, 409, 409, 409, 409, 409], [
        (r.status_code, r.text) for r in rs
    ]
    for r in rs:
        if r.status_code == 409:
            assert_problem(r, 409, "already_reversed")
    assert await api.balance(slug, ann["id"]) == 0
    assert await api.balance(slug, bob["id"]) == 0


async def test_reverse_without_reason_is_refused_with_422(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    ex = await api.ok("post", f"/v1/timebanks/{slug}/exchanges", simple(ann, bob, 90))
    for body in ({}, {"reason": ""}):
        r = await api.post(f"/v1/timebanks/{slug}/exchanges/{ex['id']}/reverse", json=body)
        assert_validation(r, "reason")
    assert await api.balance(slug, ann["id"]) == 90


@pytest.mark.parametrize("decision", ["confirm", "reject", "cancel"])
async def test_deciding_an_exchange_that_is_not_pending_is_refused_with_409_not_pending(
    api: Api, decision: str
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    ex = await api.ok("post", f"/v1/timebanks/{slug}/exchanges", simple(ann, bob, 60))
    assert ex["status"] == "recorded"
    r = await api.post(f"/v1/timebanks/{slug}/exchanges/{ex['id']}/{decision}", json={})
    assert_problem(r, 409, "not_pending")
    got = await api.ok("get", f"/v1/timebanks/{slug}/exchanges/{ex['id']}")
    assert got["status"] == "recorded"


# --- 409 duplicate --------------------------------------------------------------------------


async def test_time_bank_slug_taken_is_refused_with_409_duplicate(api: Api) -> None:
    tb = await api.timebank()
    r = await api.post("/v1/timebanks", json={"slug": tb["slug"], "name": "Again"})
    assert_problem(r, 409, "duplicate")
    got = await api.ok("get", f"/v1/timebanks/{tb['slug']}")
    assert got["name"] == tb["name"] and got["id"] == tb["id"]


async def test_exchange_external_ref_taken_is_refused_with_409_duplicate(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    first = simple(ann, bob, 60, external_ref="sheet-2026-11/14")
    assert (await api.exchange(slug, first)).status_code == 201
    before = await snapshot(api, slug, ann, bob)
    # the same paper line entered again, even with other details and a fresh key
    again = simple(bob, ann, 30, external_ref="sheet-2026-11/14")
    r = await api.exchange(slug, again, headers={"Idempotency-Key": "fresh"})
    assert_problem(r, 409, "duplicate")
    assert await snapshot(api, slug, ann, bob) == before
    # the same ref is free in another time bank
    other = await api.timebank()
    x = await api.member(other["slug"], "X")
    y = await api.member(other["slug"], "Y")
    r2 = await api.exchange(other["slug"], simple(x, y, 60, external_ref="sheet-2026-11/14"))
    assert r2.status_code == 201, r2.text


async def test_member_external_ref_taken_is_refused_with_409_duplicate(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    await api.member(slug, "Ann", external_ref="M-001")
    bob = await api.member(slug, "Bob")
    r = await api.post(
        f"/v1/timebanks/{slug}/members", json={"display_name": "Ann Again", "external_ref": "M-001"}
    )
    assert_problem(r, 409, "duplicate")
    r = await api.patch(f"/v1/timebanks/{slug}/members/{bob['id']}", json={"external_ref": "M-001"})
    assert_problem(r, 409, "duplicate")
    members = await api.ok("get", f"/v1/timebanks/{slug}/members")
    assert sorted(m["display_name"] for m in members["items"]) == ["Ann", "Bob"]
    assert (await api.ok("get", f"/v1/timebanks/{slug}/members/{bob['id']}"))[
        "external_ref"
    ] is None


async def test_category_slug_taken_is_refused_with_409_duplicate(api: Api) -> None:
    tb = await api.timebank()
    r = await api.post(
        f"/v1/timebanks/{tb['slug']}/categories",
        json={"slug": "transport", "name": "Transport again"},
    )
    assert_problem(r, 409, "duplicate")


async def test_concurrent_entries_of_one_external_ref_record_once_and_refuse_the_rest_with_409(
    api: Api,
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    rs = await gather(
        *[
            api.exchange(
                slug,
                simple(ann, bob, 10, external_ref="sheet-7/3"),
                headers={"Idempotency-Key": f"clerk-{i}"},
            )
            for i in range(6)
        ]
    )
    assert sorted(r.status_code for r in rs) == [201, 409, 409, 409, 409, 409], [
        (r.status_code, r.text) for r in rs
    ]
    for r in rs:
        if r.status_code == 409:
            assert_problem(r, 409, "duplicate")
    assert await api.balance(slug, ann["id"]) == 10
    assert await api.balance(slug, bob["id"]) == -10


async def test_concurrent_registrations_with_one_member_external_ref_give_one_201_rest_409(
    api: Api,
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    rs = await gather(
        *[
            api.post(
                f"/v1/timebanks/{slug}/members",
                json={"display_name": f"Ann {i}", "external_ref": "M-9"},
            )
            for i in range(6)
        ]
    )
    assert sorted(r.status_code for r in rs) == [201, 409, 409, 409, 409, 409]
    for r in rs:
        if r.status_code == 409:
            assert_problem(r, 409, "duplicate")
    assert len((await api.ok("get", f"/v1/timebanks/{slug}/members"))["items"]) == 1


async def test_concurrent_time_bank_creations_with_one_slug_give_one_201_rest_409(
    api: Api,
) -> None:
    rs = await gather(
        *[
            api.post("/v1/timebanks", json={"slug": "racing-bank", "name": f"R{i}"})
            for i in range(6)
        ]
    )
    assert sorted(r.status_code for r in rs) == [201, 409, 409, 409, 409, 409]
    for r in rs:
        if r.status_code == 409:
            assert_problem(r, 409, "duplicate")


# --- idempotency ----------------------------------------------------------------------------


async def test_idempotency_key_reused_with_a_different_body_is_refused_with_422(
    api: Api,
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    h = {"Idempotency-Key": "member-1"}
    first = await api.post(f"/v1/timebanks/{slug}/members", json={"display_name": "Ann"}, headers=h)
    assert first.status_code == 201, first.text
    r = await api.post(f"/v1/timebanks/{slug}/members", json={"display_name": "Bob"}, headers=h)
    assert_problem(r, 422, "idempotency_key_reused")
    # same key on another path is also a different request
    r = await api.post(
        f"/v1/timebanks/{slug}/organisations", json={"name": "Ann", "kind": "charity"}, headers=h
    )
    assert_problem(r, 422, "idempotency_key_reused")
    members = await api.ok("get", f"/v1/timebanks/{slug}/members")
    assert [m["display_name"] for m in members["items"]] == ["Ann"]
    # the original request still replays
    replay = await api.post(
        f"/v1/timebanks/{slug}/members", json={"display_name": "Ann"}, headers=h
    )
    assert replay.status_code == 201
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json()["id"] == first.json()["id"]


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"], ids=["empty", "256-chars", "control"])
async def test_invalid_idempotency_key_is_refused_with_422(api: Api, key: str) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    r = await api.post(
        f"/v1/timebanks/{slug}/members",
        json={"display_name": "Ann"},
        headers={"Idempotency-Key": key},
    )
    assert_validation(r, "Idempotency-Key")
    assert (await api.ok("get", f"/v1/timebanks/{slug}/members"))["items"] == []


async def test_request_whose_idempotency_key_is_in_flight_is_refused_with_409(
    api: Api, session_maker: async_sessionmaker[AsyncSession], admin_secret: str
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    path = f"/v1/timebanks/{slug}/members"
    body = {"display_name": "Ann"}
    async with session_maker() as s:
        await s.execute(
            insert(IdempotencyRecord).values(
                api_key_id=await key_id(session_maker, admin_secret),
                key="in-flight",
                fingerprint=fingerprint("POST", path, body),
                status_code=None,
                response_body=None,
                created_at=datetime.now(UTC),
            )
        )
        await s.commit()
    r = await api.post(path, json=body, headers={"Idempotency-Key": "in-flight"})
    assert_problem(r, 409, "idempotency_in_flight")
    assert (await api.ok("get", path))["items"] == []
    # another API key's namespace is separate: the same Idempotency-Key is free for it
    other_admin = api.as_key(await api.key(slug, "admin"))
    r2 = await other_admin.post(path, json=body, headers={"Idempotency-Key": "in-flight"})
    assert r2.status_code == 201, r2.text


async def test_idempotency_in_flight_for_an_exchange_moves_no_balance(
    api: Api, session_maker: async_sessionmaker[AsyncSession], admin_secret: str
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    path = f"/v1/timebanks/{slug}/exchanges"
    body = simple(ann, bob, 60)
    async with session_maker() as s:
        await s.execute(
            insert(IdempotencyRecord).values(
                api_key_id=await key_id(session_maker, admin_secret),
                key="ex-in-flight",
                fingerprint=fingerprint("POST", path, body),
                status_code=None,
                response_body=None,
                created_at=datetime.now(UTC),
            )
        )
        await s.commit()
    before = await snapshot(api, slug, ann, bob)
    r = await api.exchange(slug, body, headers={"Idempotency-Key": "ex-in-flight"})
    assert_problem(r, 409, "idempotency_in_flight")
    assert await snapshot(api, slug, ann, bob) == before


async def test_concurrent_duplicates_of_one_idempotent_request_have_exactly_one_effect(
    api: Api,
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    body = simple(ann, bob, 25)
    rs = await gather(
        *[api.exchange(slug, body, headers={"Idempotency-Key": "retry-storm"}) for _ in range(6)]
    )
    created = [r for r in rs if r.status_code == 201]
    assert created, [(r.status_code, r.text) for r in rs]
    for r in rs:
        if r.status_code != 201:
            assert_problem(r, 409, "idempotency_in_flight")
    assert len({r.json()["id"] for r in created}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") != "true" for r in created) == 1
    assert await api.balance(slug, ann["id"]) == 25
    assert len((await api.ok("get", f"/v1/timebanks/{slug}/exchanges"))["items"]) == 1


# --- 413 payload_too_large ------------------------------------------------------------------


async def test_body_over_1_mib_is_refused_with_413(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    big = json.dumps({"display_name": "Ann", "locality": "x" * (1024 * 1024 + 10)}).encode()
    r = await api.client.post(
        f"/v1/timebanks/{slug}/members",
        content=big,
        headers=api.headers({"Content-Type": "application/json"}),
    )
    assert_problem(r, 413, "payload_too_large")
    assert (await api.ok("get", f"/v1/timebanks/{slug}/members"))["items"] == []


async def test_exchange_batch_over_1_mib_is_refused_with_413(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    item = simple(ann, bob, 1, description="d" * 1900)
    body = {"exchanges": [item] * 1000, "atomic": True}
    raw = json.dumps(body).encode()
    assert len(raw) > 1024 * 1024
    r = await api.client.post(
        f"/v1/timebanks/{slug}/exchanges/batch",
        content=raw,
        headers=api.headers({"Content-Type": "application/json"}),
    )
    assert_problem(r, 413, "payload_too_large")
    assert await api.balance(slug, ann["id"]) == 0


async def test_body_just_under_1_mib_is_not_refused_as_too_large(api: Api) -> None:
    tb = await api.timebank()
    raw = json.dumps({"display_name": "Ann", "locality": "x" * (1024 * 1024 - 100)}).encode()
    assert len(raw) <= 1024 * 1024
    r = await api.client.post(
        f"/v1/timebanks/{tb['slug']}/members",
        content=raw,
        headers=api.headers({"Content-Type": "application/json"}),
    )
    # the locality is too long for the schema, so this is a validation error, not a 413
    assert_validation(r, "locality")


# --- 503 unavailable ------------------------------------------------------------------------


def _unreachable_url(engine_name: str, tmp_path: Path) -> str:
    if engine_name == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/no-such-dir/deeper/timebank.db"
    sock = tmp_path / "no-server-here"
    sock.mkdir()
    return f"postgresql+asyncpg://postgres@/timebank?host={sock}&port=1"


async def test_unreachable_database_gives_503_unavailable_never_500(
    engine_name: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=_unreachable_url(engine_name, tmp_path), log_json=False, log_level="CRITICAL"
    )
    secret = {"Authorization": "Bearer tbk_" + "z" * 43}
    async with AsyncTestClient(app=create_app(settings), timeout=60) as c:
        health = await c.get("/health")
        assert health.status_code == 200, health.text
        assert_problem(await c.get("/ready"), 503, "unavailable")
        assert_problem(await c.get("/v1/timebanks", headers=secret), 503, "unavailable")
        assert_problem(
            await c.get("/v1/timebanks/some-bank/members", headers=secret), 503, "unavailable"
        )
        assert_problem(
            await c.post(
                "/v1/timebanks",
                json={"slug": "abc", "name": "A"},
                headers={**secret, "Idempotency-Key": "k"},
            ),
            503,
            "unavailable",
        )


# --- never a 500, never a traceback ---------------------------------------------------------


GARBAGE: list[tuple[str, str, Any]] = [
    ("post", "/exchanges", []),
    ("post", "/exchanges", "a string"),
    ("post", "/exchanges", 42),
    ("post", "/exchanges", None),
    ("post", "/exchanges", {"provider": "ann", "recipient": "bob", "minutes": 60}),
    ("post", "/exchanges", {"provider": {}, "recipient": {}, "minutes": 60}),
    (
        "post",
        "/exchanges",
        {"provider": {"member_id": None}, "recipient": {"member_id": 1}, "minutes": 60},
    ),
    ("post", "/exchanges", {"providers": [], "recipients": [], "category": "transport"}),
    ("post", "/exchanges", {"providers": "x", "recipients": {"a": 1}}),
    ("post", "/exchanges", {"minutes": 10**40}),
    ("post", "/exchanges", {"minutes": True}),
    ("post", "/exchanges", {"description": "\u0000" * 10}),
    ("post", "/exchanges/batch", {"exchanges": "nope"}),
    ("post", "/exchanges/batch", {"exchanges": []}),
    ("post", "/members", {"display_name": {"nested": True}}),
    ("post", "/members", {"display_name": "Ann", "birth_year": "nineteen"}),
    ("post", "/members", {"display_name": "Ann", "email": "not an email"}),
    ("post", "/members", {"display_name": "Ann", "joined_on": "yesterday"}),
    ("post", "/organisations", {"name": "Org", "kind": "cult"}),
    ("post", "/api-keys", {"role": "superuser"}),
    ("post", "/api-keys", {"role": "member"}),
    ("post", "/categories", {"slug": "Bad Slug", "name": "x"}),
    ("patch", "", {"settings": {"time_zone": "Mars/Olympus_Mons"}}),
    ("patch", "", {"settings": {"max_exchange_minutes": -5}}),
    ("get", "/exchanges?from=not-a-date", None),
    ("get", "/exchanges?status=bogus", None),
    ("get", "/exchanges?member_id=not-a-uuid", None),
    ("get", "/members?status=bogus", None),
    ("get", "/members/not-a-uuid", None),
    ("get", "/exchanges/not-a-uuid", None),
    ("get", "/accounts/not-a-uuid", None),
]


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    GARBAGE,
    ids=[f"{m}{s}-{i}" for i, (m, s, _) in enumerate(GARBAGE)],
)
async def test_garbage_input_is_a_4xx_problem_never_500_nor_traceback(
    api: Api, method: str, suffix: str, body: Any
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    path = f"/v1/timebanks/{slug}{suffix}"
    if method == "get":
        r = await api.get(path)
    else:
        r = await getattr(api.client, method)(
            path,
            content=json.dumps(body).encode(),
            headers=api.headers({"Content-Type": "application/json"}),
        )
    assert 400 <= r.status_code < 500, f"{r.status_code}: {r.text[:2000]}"
    body_out = assert_problem(r, r.status_code, r.json().get("code", "?"))
    assert body_out["code"] in {"malformed_request", "validation_error", "not_found"}, body_out
    assert await snapshot(api, slug) == ([], [])


REFUSALS: list[Callable[[Api, dict[str, Any]], Awaitable[Any]]] = [
    lambda api, p: api.client.get("/v1/timebanks"),
    lambda api, p: api.get("/v1/timebanks/nope"),
    lambda api, p: api.exchange(p["slug"], simple(p["ann"], p["ann"], 60)),
    lambda api, p: api.exchange(p["slug"], simple(p["ann"], p["bob"], 1000, category="other")),
    lambda api, p: api.client.post(
        f"/v1/timebanks/{p['slug']}/members",
        content=b"{",
        headers=api.headers({"Content-Type": "application/json"}),
    ),
]


async def test_error_responses_carry_a_request_id_and_no_internals(api: Api) -> None:
    p = await _bank_with_parties(api, max_exchange_minutes=1440)
    for i, call in enumerate(REFUSALS):
        r = await call(api, p)
        assert 400 <= r.status_code < 500, (i, r.status_code, r.text)
        assert_no_traceback(r)
        body = r.json()
        assert body["code"] and body["status"] == r.status_code
        rid = r.headers.get("x-request-id")
        assert rid, r.headers
        if "request_id" in body:
            assert body["request_id"] == rid
        lowered = r.text.lower()
        for leak in (
            "sqlalchemy",
            "asyncpg",
            "sqlite3",
            "psycopg",
            "integrityerror",
            "insert into",
            "select ",
        ):
            assert leak not in lowered, f"response leaks internals ({leak}): {r.text}"


async def test_wrong_method_on_a_known_route_is_a_405_problem(api: Api) -> None:
    r = await api.delete("/v1/timebanks")
    body = assert_problem(r, 405, "method_not_allowed")
    assert body["status"] == 405


async def test_deeply_nested_json_is_refused_with_400_malformed_request(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    raw = b"[" * 100_000 + b"]" * 100_000
    r = await api.client.post(
        f"/v1/timebanks/{slug}/members",
        content=raw,
        headers=api.headers({"Content-Type": "application/json"}),
    )
    assert_problem(r, 400, "malformed_request")


@pytest.mark.parametrize(
    "where", ["exchange-description", "member-display-name", "path-slug", "query-q"]
)
async def test_nul_character_in_text_input_never_gives_a_500(api: Api, where: str) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    if where == "exchange-description":
        r = await api.exchange(slug, simple(ann, bob, 60, description="lift\u0000home"))
    elif where == "member-display-name":
        r = await api.post(f"/v1/timebanks/{slug}/members", json={"display_name": "Nul\u0000"})
    elif where == "path-slug":
        r = await api.get("/v1/timebanks/ab%00cd")
    else:
        r = await api.get(f"/v1/timebanks/{slug}/members?q=a%00b")
    assert r.status_code < 500, f"{r.status_code}: {r.text[:1000]}"
    assert_no_traceback(r)
    if r.status_code >= 400:
        assert_problem(r, r.status_code, r.json()["code"])


async def test_requests_over_the_per_key_rate_limit_get_429_with_retry_after(
    db_url: str, admin_secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIMEBANK_RATE_LIMIT_PER_MINUTE", "3")
    settings = Settings(database_url=db_url, log_json=False, log_level="WARNING")
    headers = {"Authorization": f"Bearer {admin_secret}"}
    async with AsyncTestClient(app=create_app(settings), timeout=60) as c:
        rs = [await c.get("/v1/timebanks", headers=headers) for _ in range(8)]
    limited = [r for r in rs if r.status_code == 429]
    assert limited, [r.status_code for r in rs]
    assert all(r.status_code == 200 for r in rs[:3])
    for r in limited:
        assert_problem(r, 429, "rate_limited")
        assert int(r.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("role", ["funder", "member"])
async def test_funder_and_member_keys_doing_broker_work_are_refused_with_403(
    api: Api, role: str
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    extra = {"member_id": ann["id"]} if role == "member" else {}
    key = api.as_key(await api.key(slug, role, **extra))
    assert_problem(
        await key.post(f"/v1/timebanks/{slug}/members", json={"display_name": "X"}),
        403,
        "forbidden",
    )
    assert_problem(
        await key.post(
            f"/v1/timebanks/{slug}/api-keys", json={"role": "member", "member_id": ann["id"]}
        ),
        403,
        "forbidden",
    )
    assert_problem(
        await key.patch(
            f"/v1/timebanks/{slug}/accounts/{bob['account_id']}",
            json={"min_balance_minutes": -5000},
        ),
        403,
        "forbidden",
    )
    assert_problem(
        await key.get(f"/v1/timebanks/{slug}/members/{bob['id']}/balance"), 403, "forbidden"
    )
    assert len((await api.ok("get", f"/v1/timebanks/{slug}/members"))["items"]) == 2


async def test_an_unknown_query_parameter_is_refused_naming_the_known_ones(api: Api) -> None:
    tb = await api.timebank()
    body = assert_problem(
        await api.get(f"/v1/timebanks/{tb['slug']}/exchanges?limt=5&status=pending"),
        422,
        "validation_error",
    )
    assert body["errors"][0]["field"] == "limt"
    assert "did you mean 'limit'?" in body["errors"][0]["message"]
    assert "cursor" in body["errors"][0]["message"] and "status" in body["known_parameters"]
    body = assert_problem(await api.get("/v1/timebanks?sort=-created_at"), 422, "validation_error")
    assert body["errors"][0]["field"] == "sort"
    body = assert_problem(await api.get(f"/v1/timebanks/{tb['slug']}?x=1"), 422, "validation_error")
    assert body["errors"][0]["message"] == "unknown query parameter; this operation takes none"
    assert body["known_parameters"] == []
    # the known ones still work, and the console's pages are not the API's
    assert (await api.get(f"/v1/timebanks/{tb['slug']}/exchanges?limit=5")).status_code == 200
    assert (await api.client.get("/console/sign-in?utm_source=x")).status_code == 200
