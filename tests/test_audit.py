"""Audit completeness (SPEC §3.8): every write leaves exactly one audit event, in the same
transaction — who (key id and role), what (action), target, when, request id, and the reason
for overrides and reversals. Refused writes leave none. ``GET .../audit-events`` (admin)
filters by action, target, from and to, and paginates. Erasure's events hold ids and field
names, never personal values (§3.2)."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Api, party, simple
from timebank.audit.models import AuditEvent
from timebank.timebanks.models import Category, TimeBank

Maker = async_sessionmaker[AsyncSession]


# --- the world ----------------------------------------------------------------------------


@dataclass
class World:
    maker: Maker
    root: Api  # a global admin key whose id we know
    root_id: str
    slug: str
    tb_id: str
    pool_account_id: str
    ann: dict[str, Any]
    bob: dict[str, Any]
    org: dict[str, Any]
    recorded: dict[str, Any]  # Bob → Ann, recorded by the broker
    keys: dict[str, tuple[str, str]]  # "root", "admin", "broker", "ann", "bob" → (id, secret)

    def path(self, rest: str = "") -> str:
        return f"/v1/timebanks/{self.slug}{rest}"

    def api(self, who: str) -> Api:
        return self.root.as_key(self.keys[who][1])

    async def propose(self, who: str, body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = await self.api(who).ok("post", self.path("/exchanges"), body)
        assert out["status"] == "pending"
        return out


@pytest.fixture
async def world(api: Api, session_maker: Maker) -> World:
    made = await api.ok("post", "/v1/api-keys", {"role": "admin", "label": "audit tests"})
    root = api.as_key(made["secret"])
    tb = await root.timebank("audited")
    slug = tb["slug"]
    ann = await root.member(slug, "Ann")
    bob = await root.member(slug, "Bob")
    org = await root.organisation(slug)
    keys = {"root": (made["id"], made["secret"])}
    for name, role, extra in (
        ("admin", "admin", {}),
        ("broker", "broker", {}),
        ("funder", "funder", {}),
        ("ann", "member", {"member_id": ann["id"]}),
        ("bob", "member", {"member_id": bob["id"]}),
    ):
        body = await root.ok("post", f"/v1/timebanks/{slug}/api-keys", {"role": role, **extra})
        keys[name] = (body["id"], body["secret"])
    broker = root.as_key(keys["broker"][1])
    recorded = await broker.ok("post", f"/v1/timebanks/{slug}/exchanges", simple(bob, ann, 60))
    return World(
        maker=session_maker,
        root=root,
        root_id=made["id"],
        slug=slug,
        tb_id=tb["id"],
        pool_account_id=tb["pool_account_id"],
        ann=ann,
        bob=bob,
        org=org,
        recorded=recorded,
        keys=keys,
    )


# --- reading the audit table directly -----------------------------------------------------


async def last_event_id(maker: Maker) -> int:
    async with maker() as s:
        return int(await s.scalar(select(func.coalesce(func.max(AuditEvent.id), 0))) or 0)


async def events_after(maker: Maker, after: int) -> list[AuditEvent]:
    async with maker() as s:
        rows = await s.execute(
            select(AuditEvent).where(AuditEvent.id > after).order_by(AuditEvent.id)
        )
        return list(rows.scalars())


def request_id() -> str:
    return f"req-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    json: Any = None


async def send(api: Api, req: Req, rid: str | None) -> Any:
    headers = {"X-Request-ID": rid} if rid else {}
    if req.method == "delete":
        return await api.delete(req.path, headers=headers)
    return await getattr(api, req.method)(req.path, json=req.json, headers=headers)


async def resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def audited(w: World, who: str, req: Req) -> tuple[Any, list[AuditEvent], str]:
    """Send a write with a fresh X-Request-ID; the response and the events it left."""
    before = await last_event_id(w.maker)
    rid = request_id()
    r = await send(w.api(who), req, rid)
    return r, await events_after(w.maker, before), rid


# --- every write endpoint: exactly one event ----------------------------------------------

MakeReq = Callable[[World], Any]  # → Req, or an awaitable of one (after preparing a target)
Target = Callable[[World, Any], Any]  # (world, response body) → the target id, maybe awaited


@dataclass(frozen=True)
class Case:
    name: str
    who: str  # whose key writes
    make: MakeReq
    status: int
    action: str
    target_type: str
    target: Target
    reason: str | None = None
    in_bank: bool = True  # the event belongs to the time bank (GET /audit-events shows it)

    def __str__(self) -> str:
        return self.name


def body_id(w: World, body: Any) -> str:
    return str(body["id"])


async def category_id(w: World, body: Any) -> str:
    async with w.maker() as s:
        found = await s.scalar(
            select(Category.id)
            .join(TimeBank, TimeBank.id == Category.timebank_id)
            .where(TimeBank.slug == w.slug, Category.slug == body["slug"])
        )
    return str(found)


def decide(decision: str, proposer: str) -> MakeReq:
    """``decision`` on a fresh proposal by ``proposer`` (Ann or Bob) to the other one."""

    async def make(w: World) -> Req:
        me, other = (w.ann, w.bob) if proposer == "ann" else (w.bob, w.ann)
        ex = await w.propose(proposer, simple(me, other, 30))
        body = None if decision == "confirm" else {"reason": "not this week"}
        return Req("post", w.path(f"/exchanges/{ex['id']}/{decision}"), body)

    return make


async def revoke_member_key(w: World) -> Req:
    key = await w.root.ok("post", w.path("/api-keys"), {"role": "member", "member_id": w.bob["id"]})
    return Req("delete", w.path(f"/api-keys/{key['id']}"))


def override(w: World) -> Req:
    body = simple(w.bob, w.ann, 700, override_limits=True, override_reason="agreed by phone")
    return Req("post", w.path("/exchanges"), body)


def group(w: World) -> Req:
    legs = [{"party": party(w.ann), "minutes": 20}, {"party": party(w.bob), "minutes": 20}]
    recipients = [{"party": party(w.org), "minutes": 40}]
    body = {"providers": legs, "recipients": recipients, "category": "community-events"}
    return Req("post", w.path("/exchanges"), body)


def new_slug() -> str:
    return f"tb-{uuid.uuid4().hex[:8]}"


# fmt: off
CASES = [
    Case("create a time bank", "root",
         lambda w: Req("post", "/v1/timebanks", {"slug": new_slug(), "name": "New"}),
         201, "timebank.create", "timebank", body_id, in_bank=False),
    Case("change the time bank", "admin",
         lambda w: Req("patch", w.path(), {"settings": {"pending_expiry_days": 14}}),
         200, "timebank.update", "timebank", lambda w, b: w.tb_id),
    Case("add a category", "broker",
         lambda w: Req("post", w.path("/categories"), {"slug": "dog-walks", "name": "Dogs"}),
         201, "category.create", "category", category_id),
    Case("set an account's limits", "broker",
         lambda w: Req("patch", w.path(f"/accounts/{w.bob['account_id']}"),
                       {"min_balance_minutes": -120}),
         200, "account.limits", "account", lambda w, b: w.bob["account_id"]),
    Case("register a member", "broker",
         lambda w: Req("post", w.path("/members"), {"display_name": "Dee"}),
         201, "member.create", "member", body_id),
    Case("edit a member", "broker",
         lambda w: Req("patch", w.path(f"/members/{w.bob['id']}"), {"status": "suspended"}),
         200, "member.update", "member", lambda w, b: w.bob["id"]),
    Case("a member edits own contact details", "ann",
         lambda w: Req("patch", w.path(f"/members/{w.ann['id']}"), {"phone": "01294 000"}),
         200, "member.update", "member", lambda w, b: w.ann["id"]),
    Case("erase a member", "broker",
         lambda w: Req("post", w.path(f"/members/{w.bob['id']}/erase")),
         200, "member.erase", "member", lambda w, b: w.bob["id"]),
    Case("register an organisation", "broker",
         lambda w: Req("post", w.path("/organisations"), {"name": "Choir", "kind": "charity"}),
         201, "organisation.create", "organisation", body_id),
    Case("edit an organisation", "broker",
         lambda w: Req("patch", w.path(f"/organisations/{w.org['id']}"), {"locality": "Ayr"}),
         200, "organisation.update", "organisation", lambda w, b: w.org["id"]),
    Case("record an exchange", "broker",
         lambda w: Req("post", w.path("/exchanges"), simple(w.ann, w.bob, 45)),
         201, "exchange.record", "exchange", body_id),
    Case("record a group exchange", "broker", group,
         201, "exchange.record", "exchange", body_id),
    Case("record a pool grant", "broker",
         lambda w: Req("post", w.path("/exchanges"),
                       {"provider": party(w.ann), "recipient": {"account_id": w.pool_account_id},
                        "minutes": 60}),
         201, "exchange.record", "exchange", body_id),
    Case("a member proposes an exchange", "ann",
         lambda w: Req("post", w.path("/exchanges"), simple(w.ann, w.bob, 45)),
         201, "exchange.propose", "exchange", body_id),
    Case("record an exchange overriding limits", "broker", override,
         201, "exchange.override", "exchange", body_id, reason="agreed by phone"),
    Case("reverse an exchange", "broker",
         lambda w: Req("post", w.path(f"/exchanges/{w.recorded['id']}/reverse"),
                       {"reason": "typed twice"}),
         201, "exchange.reverse", "exchange", lambda w, b: w.recorded["id"],
         reason="typed twice"),
    Case("the counterparty confirms a proposal", "ann", decide("confirm", "bob"),
         200, "exchange.confirm", "exchange", body_id),
    Case("a broker confirms a proposal", "broker", decide("confirm", "bob"),
         200, "exchange.confirm", "exchange", body_id),
    Case("the counterparty rejects a proposal", "ann", decide("reject", "bob"),
         200, "exchange.reject", "exchange", body_id),
    Case("the proposer cancels a proposal", "ann", decide("cancel", "ann"),
         200, "exchange.cancel", "exchange", body_id),
    Case("a broker creates a member key", "broker",
         lambda w: Req("post", w.path("/api-keys"), {"role": "member", "member_id": w.ann["id"]}),
         201, "api_key.create", "api_key", body_id),
    Case("an admin creates a broker key", "admin",
         lambda w: Req("post", w.path("/api-keys"), {"role": "broker"}),
         201, "api_key.create", "api_key", body_id),
    Case("a global admin creates a multi-bank funder key", "root",
         lambda w: Req("post", "/v1/api-keys", {"role": "funder", "timebanks": [w.slug]}),
         201, "api_key.create", "api_key", body_id, in_bank=False),
    Case("revoke an api key", "broker", revoke_member_key,
         200, "api_key.revoke", "api_key", body_id),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_write_leaves_exactly_one_audit_event_naming_who_what_target_and_request(
    world: World, case: Case
) -> None:
    w = world
    req = await resolve(case.make(w))
    r, events, rid = await audited(w, case.who, req)
    assert r.status_code == case.status, r.text
    body = r.json()
    assert len(events) == 1, [(e.action, e.target_id) for e in events]
    event = events[0]
    key_id, _ = w.keys[case.who]
    role = {"root": "admin", "ann": "member", "bob": "member"}.get(case.who, case.who)
    assert event.action == case.action
    assert str(event.key_id) == key_id
    assert event.role == role
    assert event.target_type == case.target_type
    assert event.target_id == str(await resolve(case.target(w, body)))
    assert event.request_id == rid
    assert r.headers["x-request-id"] == rid
    if case.reason is not None:
        assert event.reason == case.reason
    if case.in_bank:
        assert str(event.timebank_id) == w.tb_id
        # …and the admin's endpoint shows the same event.
        listed = await w.api("admin").ok("get", w.path(f"/audit-events?target={event.target_id}"))
        mine = [e for e in listed["items"] if e["id"] == event.id]
        assert len(mine) == 1
        assert mine[0]["action"] == case.action and mine[0]["request_id"] == rid
        assert mine[0]["key_id"] == key_id and mine[0]["role"] == role


async def test_override_and_reversal_events_keep_their_reason(world: World) -> None:
    w = world
    r, events, _ = await audited(w, "broker", override(w))
    assert r.status_code == 201, r.text
    assert [(e.action, e.reason) for e in events] == [("exchange.override", "agreed by phone")]
    original = r.json()["id"]
    r, events, _ = await audited(
        w, "admin", Req("post", w.path(f"/exchanges/{original}/reverse"), {"reason": "wrong"})
    )
    assert r.status_code == 201, r.text
    assert [(e.action, e.target_id, e.reason) for e in events] == [
        ("exchange.reverse", original, "wrong")
    ]
    assert events[0].details and events[0].details.get("reversal_id") == r.json()["id"]


async def test_write_without_x_request_id_records_the_id_the_response_echoes(
    world: World,
) -> None:
    w = world
    before = await last_event_id(w.maker)
    r = await w.api("broker").post(w.path("/members"), json={"display_name": "Eve"})
    assert r.status_code == 201, r.text
    events = await events_after(w.maker, before)
    assert len(events) == 1
    assert events[0].request_id and events[0].request_id == r.headers["x-request-id"]


async def test_member_with_starting_grant_leaves_one_event_that_names_the_grant(
    world: World,
) -> None:
    w = world
    r = await w.api("admin").patch(w.path(), json={"settings": {"starting_grant_minutes": 120}})
    assert r.status_code == 200, r.text
    r, events, rid = await audited(
        w, "broker", Req("post", w.path("/members"), {"display_name": "Fay"})
    )
    assert r.status_code == 201, r.text
    assert [(e.action, e.target_id, e.request_id) for e in events] == [
        ("member.create", r.json()["id"], rid)
    ]
    grants = await w.api("broker").ok(
        "get", w.path(f"/exchanges?member_id={r.json()['id']}&kind=pool_grant")
    )
    assert len(grants["items"]) == 1
    assert grants["items"][0]["id"] in str(events[0].details)


async def test_batch_leaves_one_event_per_recorded_item_and_none_for_refused_items(
    world: World,
) -> None:
    w = world
    items = [
        simple(w.ann, w.bob, 30, external_ref="sheet-1"),
        simple(w.ann, w.bob, 0, external_ref="sheet-2"),  # refused: minutes must be > 0
        simple(w.bob, w.ann, 15, external_ref="sheet-3"),
    ]
    r, events, rid = await audited(
        w, "broker", Req("post", w.path("/exchanges/batch"), {"exchanges": items})
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == [201, 422, 201]
    recorded = [x["exchange"]["id"] for x in results if x["status"] == 201]
    assert [(e.action, e.target_id) for e in events] == [("exchange.record", i) for i in recorded]
    assert {e.request_id for e in events} == {rid}
    assert {str(e.key_id) for e in events} == {w.keys["broker"][0]}


async def test_atomic_batch_with_a_refused_item_leaves_no_event(world: World) -> None:
    w = world
    items = [simple(w.ann, w.bob, 30), simple(w.ann, w.bob, 30, category="no-such-category")]
    r, events, _ = await audited(
        w, "broker", Req("post", w.path("/exchanges/batch"), {"exchanges": items, "atomic": True})
    )
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["results"]] == [424, 422]
    assert events == []


async def test_idempotent_replay_leaves_no_second_event(world: World) -> None:
    w = world
    body = simple(w.ann, w.bob, 30)
    headers = {"Idempotency-Key": "sheet-7-line-3"}
    before = await last_event_id(w.maker)
    first = await w.api("broker").post(w.path("/exchanges"), json=body, headers=headers)
    again = await w.api("broker").post(w.path("/exchanges"), json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    events = await events_after(w.maker, before)
    assert [(e.action, e.target_id) for e in events] == [("exchange.record", first.json()["id"])]


# --- refused writes leave nothing ---------------------------------------------------------


async def reverse_a_reversal(w: World) -> Req:
    rev = await w.api("broker").ok(
        "post", w.path(f"/exchanges/{w.recorded['id']}/reverse"), {"reason": "x"}
    )
    return Req("post", w.path(f"/exchanges/{rev['id']}/reverse"), {"reason": "again"})


async def confirm_own_proposal(w: World) -> Req:
    ex = await w.propose("ann", simple(w.ann, w.bob, 10))
    return Req("post", w.path(f"/exchanges/{ex['id']}/confirm"))


# fmt: off
REFUSED = [
    ("a member registers a member", "ann",
     lambda w: Req("post", w.path("/members"), {"display_name": "Gus"}), 403),
    ("a member renames herself", "ann",
     lambda w: Req("patch", w.path(f"/members/{w.ann['id']}"), {"display_name": "Annie"}), 403),
    ("a funder erases a member", "funder",
     lambda w: Req("post", w.path(f"/members/{w.bob['id']}/erase")), 403),
    ("a broker changes the time bank", "broker",
     lambda w: Req("patch", w.path(), {"name": "Mine"}), 403),
    ("a broker creates a broker key", "broker",
     lambda w: Req("post", w.path("/api-keys"), {"role": "broker"}), 403),
    ("an admin of the bank creates a global key", "admin",
     lambda w: Req("post", "/v1/api-keys", {"role": "admin"}), 403),
    ("a member names two other parties", "ann",
     lambda w: Req("post", w.path("/exchanges"), simple(w.bob, w.org, 10)), 403),
    ("a member overrides limits", "ann",
     lambda w: Req("post", w.path("/exchanges"),
                   simple(w.ann, w.bob, 10, override_limits=True, override_reason="x")), 403),
    ("an exchange over the member limit", "broker",
     lambda w: Req("post", w.path("/exchanges"), simple(w.bob, w.ann, 700)), 409),
    ("an exchange with an unknown category", "broker",
     lambda w: Req("post", w.path("/exchanges"), simple(w.bob, w.ann, 10, category="nope")), 422),
    ("a duplicate time-bank slug", "root",
     lambda w: Req("post", "/v1/timebanks", {"slug": w.slug, "name": "Again"}), 409),
    ("reversing a reversal", "broker", reverse_a_reversal, 409),
    ("the proposer confirms her own proposal", "ann", confirm_own_proposal, 403),
    ("a member edits another member", "ann",
     lambda w: Req("patch", w.path(f"/members/{w.bob['id']}"), {"email": "b@example.org"}), 403),
    ("account limits with min above max", "broker",
     lambda w: Req("patch", w.path(f"/accounts/{w.bob['account_id']}"),
                   {"min_balance_minutes": 10, "max_balance_minutes": 5}), 422),
    ("a broker revokes an admin key", "broker",
     lambda w: Req("delete", w.path(f"/api-keys/{w.keys['admin'][0]}")), 403),
]
# fmt: on


@pytest.mark.parametrize(
    ("who", "make", "status"), [pytest.param(*row[1:], id=row[0]) for row in REFUSED]
)
async def test_refused_write_leaves_no_audit_event(
    world: World, who: str, make: MakeReq, status: int
) -> None:
    w = world
    req = await resolve(make(w))
    r, events, _ = await audited(w, who, req)
    assert r.status_code == status, r.text
    assert events == [], [(e.action, e.target_id) for e in events]


# --- GET /audit-events: filters and pagination --------------------------------------------


async def bank_events(w: World, **where: Any) -> list[AuditEvent]:
    """The time bank's events straight from the table, in the order written."""
    async with w.maker() as s:
        stmt = select(AuditEvent).where(AuditEvent.timebank_id == uuid.UUID(w.tb_id))
        for column, value in where.items():
            stmt = stmt.where(getattr(AuditEvent, column) == value)
        return list((await s.execute(stmt.order_by(AuditEvent.id))).scalars())


async def listed(w: World, query: str = "", limit: int = 500) -> list[dict[str, Any]]:
    """Every page of GET /audit-events?<query>, following next_cursor."""
    items: list[dict[str, Any]] = []
    cursor = None
    admin = w.api("admin")
    for _ in range(1000):
        params = [*parse_qsl(query), ("limit", str(limit))]
        if cursor:
            params.append(("cursor", cursor))
        r = await admin.get(w.path("/audit-events"), params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination does not end")


async def some_writes(w: World) -> None:
    broker = w.api("broker")
    await broker.ok("patch", w.path(f"/members/{w.bob['id']}"), {"locality": "Ayr"})
    await broker.ok("patch", w.path(f"/members/{w.bob['id']}"), {"phone": "01292"})
    await broker.ok("post", w.path("/members"), {"display_name": "Dee"})
    await broker.ok("post", w.path("/exchanges"), simple(w.ann, w.bob, 20))
    other = await w.root.timebank("elsewhere")  # another bank's events must not show
    await w.root.member(other["slug"], "Olly")


async def test_audit_events_filter_by_action(world: World) -> None:
    w = world
    await some_writes(w)
    for action in ("member.update", "member.create", "exchange.record", "api_key.create"):
        got = await listed(w, f"action={action}")
        want = await bank_events(w, action=action)
        assert want, action
        assert [e["id"] for e in got] == [e.id for e in want]
        assert {e["action"] for e in got} == {action}
    assert await listed(w, "action=no.such.action") == []


async def test_audit_events_filter_by_target(world: World) -> None:
    w = world
    await some_writes(w)
    got = await listed(w, f"target={w.bob['id']}")
    assert [(e["action"], e["target_type"]) for e in got] == [
        ("member.create", "member"),
        ("member.update", "member"),
        ("member.update", "member"),
    ]
    assert {e["target_id"] for e in got} == {w.bob["id"]}
    got = await listed(w, f"target={w.recorded['id']}")
    assert [e["action"] for e in got] == ["exchange.record"]
    assert await listed(w, f"target={uuid.uuid4()}") == []


async def test_audit_events_filter_by_from_and_to_dates_inclusive(world: World) -> None:
    w = world
    await some_writes(w)
    events = await bank_events(w)
    day = events[-1].created_at.date()  # UTC, like the filter

    def on_or_after(d: Any) -> list[int]:
        return [e.id for e in events if e.created_at.date() >= d]

    def on_or_before(d: Any) -> list[int]:
        return [e.id for e in events if e.created_at.date() <= d]

    async def ids(query: str) -> list[int]:
        return [e["id"] for e in await listed(w, query)]

    assert await ids(f"from={day}") == on_or_after(day) != []
    assert await ids(f"from={day + timedelta(days=1)}") == []
    assert await ids(f"to={day}") == [e.id for e in events]
    assert await ids(f"to={day - timedelta(days=1)}") == on_or_before(day - timedelta(days=1))
    assert await ids(f"from={day}&to={day}") == on_or_after(day)
    assert await ids(f"from={day}&action=member.update") == [
        e.id for e in events if e.action == "member.update"
    ]


async def test_audit_events_paginate_in_order_without_gaps_or_repeats(world: World) -> None:
    w = world
    await some_writes(w)
    everything = [e.id for e in await bank_events(w)]
    assert len(everything) > 7
    for limit in (1, 2, 3):
        assert [e["id"] for e in await listed(w, limit=limit)] == everything
    # Keyset pagination is stable under inserts: a write between pages appears once, last.
    admin = w.api("admin")
    first = await admin.ok("get", w.path("/audit-events?limit=3"))
    await w.api("broker").ok("post", w.path("/members"), {"display_name": "Late"})
    rest, cursor = [], first["next_cursor"]
    while cursor:
        page = await admin.ok("get", w.path(f"/audit-events?limit=3&cursor={cursor}"))
        rest += page["items"]
        cursor = page["next_cursor"]
    walked = [e["id"] for e in first["items"] + rest]
    assert walked == [e.id for e in await bank_events(w)]
    assert len(walked) == len(everything) + 1


async def test_audit_events_show_only_this_bank_and_no_global_key_events(world: World) -> None:
    w = world
    await some_writes(w)
    got = await listed(w)
    assert [e["id"] for e in got] == [e.id for e in await bank_events(w)]
    assert all(
        set(e) >= {"id", "key_id", "role", "action", "target_type", "target_id", "request_id"}
        for e in got
    )


# --- erasure: audit events hold ids and field names, never personal values ----------------

ERIN = {
    "display_name": "Erin Quartermaine",
    "email": "erin.quartermaine@example.org",
    "phone": "07700 900555",
    "postcode": "KA12 8ZZ",
    "locality": "Quartermaine Row",
    "birth_year": 1961,
    "gender": "female",
    "statistics_consent": True,
    "external_ref": "form-erin-77",
}
ERIN_VALUES = [
    "Erin Quartermaine",
    "Quartermaine",
    "erin.quartermaine@example.org",
    "erin.q.new@example.org",
    "07700 900555",
    "07700 900556",
    "KA12 8ZZ",
    "form-erin-77",
]


async def audit_table_text(maker: Maker) -> str:
    """Every column of every audit event, as text."""
    async with maker() as s:
        rows = (await s.execute(text("SELECT * FROM audit_events"))).all()
    return "\n".join(repr(tuple(row)) for row in rows)


def found_in(haystack: str) -> list[str]:
    return [v for v in ERIN_VALUES if v.lower() in haystack.lower()]


async def test_erasure_audit_events_hold_ids_and_field_names_never_personal_values(
    world: World,
) -> None:
    w = world
    broker = w.api("broker")
    erin = await broker.ok("post", w.path("/members"), ERIN)
    await broker.ok("patch", w.path(f"/members/{erin['id']}"), {"email": "erin.q.new@example.org"})
    await broker.ok("patch", w.path(f"/members/{erin['id']}"), {"phone": "07700 900556"})
    await broker.ok(
        "post",
        w.path("/exchanges"),
        simple(erin, w.bob, 60, description="Lift for Erin Quartermaine, KA12 8ZZ"),
    )
    r, events, _ = await audited(w, "broker", Req("post", w.path(f"/members/{erin['id']}/erase")))
    assert r.status_code == 200, r.text
    assert [(e.action, e.target_type, e.target_id) for e in events] == [
        ("member.erase", "member", erin["id"])
    ]
    assert events[0].details is not None
    assert {"email", "phone", "postcode", "display_name"} <= set(events[0].details["fields"])
    trail = await listed(w, f"target={erin['id']}")
    assert [e["action"] for e in trail] == [
        "member.create",
        "member.update",
        "member.update",
        "member.erase",
    ]
    assert found_in(await audit_table_text(w.maker)) == []


async def test_erasure_leaves_no_personal_value_in_audit_reasons_that_quoted_the_member(
    world: World,
) -> None:
    """Override, reversal and reject reasons are copied into audit events; when they quote
    the member, erasure must redact those copies too (§3.2: never personal values)."""
    w = world
    broker = w.api("broker")
    erin = await broker.ok("post", w.path("/members"), ERIN)
    erin_key = await w.root.ok(
        "post", w.path("/api-keys"), {"role": "member", "member_id": erin["id"]}
    )
    quoted = "Erin Quartermaine (erin.quartermaine@example.org)"
    ex = await broker.ok(
        "post",
        w.path("/exchanges"),
        simple(w.bob, erin, 700, override_limits=True, override_reason=f"{quoted} agreed"),
    )
    await broker.ok(
        "post", w.path(f"/exchanges/{ex['id']}/reverse"), {"reason": f"{quoted} typed twice"}
    )
    offer = await w.propose("bob", simple(w.bob, erin, 30))
    await w.root.as_key(erin_key["secret"]).ok(
        "post", w.path(f"/exchanges/{offer['id']}/reject"), {"reason": f"{quoted} is away"}, 200
    )
    assert "Erin Quartermaine" in found_in(await audit_table_text(w.maker))  # quoted, so far
    await broker.ok("post", w.path(f"/members/{erin['id']}/erase"), status=200)
    leftovers = found_in(await audit_table_text(w.maker))
    assert leftovers == [], f"the audit trail still holds {leftovers} after erasure"
