"""Right to erasure (SPEC §3.2): personal data goes, the accounting record stays.

``POST .../members/{id}/erase`` nulls personal and demographic fields, replaces the display
name and sets status ``erased``; postings and balances are untouched; the free text of the
member's exchanges is redacted; the member's keys stop working; stored idempotency responses
for the member are purged; audit events hold ids and field names, never personal values."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Api, simple
from tests.test_concurrency import _assert_ledger_consistent
from tests.test_errors import assert_problem
from timebank.idempotency import IdempotencyRecord
from timebank.ledger.models import Posting

Maker = async_sessionmaker[AsyncSession]

ZOE = {
    "display_name": "Zoe Quinnell",
    "email": "zoe.quinnell@example.org",
    "phone": "07700 900123",
    "locality": "Kilwinning",
    "postcode": "KA13 6AA",
    "birth_year": 1948,
    "gender": "female",
    "disability": "yes",
    "ethnicity": "mixed",
    "statistics_consent": True,
    "external_ref": "paper-form-0017",
}
PERSONAL = (
    "email",
    "phone",
    "locality",
    "postcode",
    "birth_year",
    "gender",
    "disability",
    "ethnicity",
    "external_ref",
)
# values that identify Zoe and must not survive anywhere a client or an operator can read
IDENTIFYING = ("Zoe Quinnell", "zoe.quinnell@example.org", "07700 900123", "KA13 6AA")


@dataclass
class World:
    slug: str
    zoe: dict[str, Any]
    bob: dict[str, Any]
    cat: dict[str, Any]
    zoe_secret: str
    lift: dict[str, Any]  # Zoe -> Bob, recorded, with a description naming her
    override: dict[str, Any]  # Bob -> Zoe, an audited override with a reason naming her
    rejected: dict[str, Any]  # Zoe's proposal, rejected by Bob with a reason
    offer: dict[str, Any]  # Bob's proposal to Zoe, still pending
    others: dict[str, Any]  # Bob -> Cat, nothing to do with Zoe

    def path(self, suffix: str = "") -> str:
        return f"/v1/timebanks/{self.slug}{suffix}"


def idem(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def created(r: Any) -> dict[str, Any]:
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def world(api: Api) -> World:
    """A time bank in which Zoe has traded, proposed, been refused and been overridden; every
    create went through an Idempotency-Key, so the stored responses hold her data."""
    tb = await api.timebank(member_min_balance_minutes=-60)
    slug = tb["slug"]
    path = f"/v1/timebanks/{slug}"
    zoe = created(await api.post(f"{path}/members", json=ZOE, headers=idem("zoe")))
    bob = created(
        await api.post(f"{path}/members", json={"display_name": "Bob"}, headers=idem("bob"))
    )
    cat = await api.member(slug, "Cat")
    zoe_key = created(
        await api.post(
            f"{path}/api-keys",
            json={"role": "member", "member_id": zoe["id"]},
            headers=idem("zoe-key"),
        )
    )
    bob_key = api.as_key(await api.key(slug, "member", member_id=bob["id"]))
    zoe_api = api.as_key(zoe_key["secret"])

    lift = created(
        await api.exchange(
            slug,
            simple(zoe, bob, 60, description="Lift for Zoe Quinnell to Crosshouse"),
            headers=idem("lift"),
        )
    )
    override = created(
        await api.exchange(
            slug,
            simple(
                bob,
                zoe,
                90,
                category="care-support",
                description="Shopping for Zoe Quinnell",
                override_limits=True,
                override_reason="Zoe Quinnell is in hospital, coordinator agreed",
            ),
            headers=idem("override"),
        )
    )
    proposal = created(
        await zoe_api.exchange(
            slug,
            simple(zoe, bob, 30, category="home-garden", description="Zoe's hedge for Bob"),
            headers=idem("zoe-proposal"),
        )
    )
    r = await bob_key.post(
        f"{path}/exchanges/{proposal['id']}/reject",
        json={"reason": "Zoe Quinnell was not at home"},
    )
    assert r.status_code == 200, r.text
    rejected = r.json()
    offer = created(
        await bob_key.exchange(
            slug,
            simple(bob, zoe, 20, description="Reading to Zoe Quinnell"),
            headers=idem("bob-offer"),
        )
    )
    others = created(
        await api.exchange(
            slug,
            simple(bob, cat, 45, description="Bike repair for Cat", category="diy-repairs"),
            headers=idem("others"),
        )
    )
    return World(slug, zoe, bob, cat, zoe_key["secret"], lift, override, rejected, offer, others)


async def erase(api: Api, w: World) -> dict[str, Any]:
    return await api.ok("post", w.path(f"/members/{w.zoe['id']}/erase"), status=200)  # type: ignore[no-any-return]


async def exchange(api: Api, w: World, ex: dict[str, Any]) -> dict[str, Any]:
    return await api.ok("get", w.path(f"/exchanges/{ex['id']}"))  # type: ignore[no-any-return]


async def postings_of(session_maker: Maker, account_id: str) -> list[tuple[Any, ...]]:
    async with session_maker() as s:
        rows = await s.execute(
            select(Posting.id, Posting.exchange_id, Posting.minutes, Posting.balance_after_minutes)
            .where(Posting.account_id == uuid.UUID(account_id))
            .order_by(Posting.id)
        )
        return [tuple(row) for row in rows]


async def all_audit_events(api: Api, w: World) -> list[dict[str, Any]]:
    body = await api.ok("get", w.path("/audit-events?limit=500"))
    assert body["next_cursor"] is None
    return body["items"]  # type: ignore[no-any-return]


# --- the member record ------------------------------------------------------------------------


async def test_erase_nulls_personal_and_demographic_fields_and_marks_the_member_erased(
    api: Api,
) -> None:
    w = await world(api)
    assert all(w.zoe[f] is not None for f in PERSONAL)

    erased = await erase(api, w)

    assert erased["id"] == w.zoe["id"]
    assert erased["account_id"] == w.zoe["account_id"]
    assert erased["display_name"] == "Erased member"
    assert erased["status"] == "erased"
    assert {f: erased[f] for f in PERSONAL} == dict.fromkeys(PERSONAL)
    assert erased["statistics_consent"] is False
    assert await api.ok("get", w.path(f"/members/{w.zoe['id']}")) == erased
    for value in IDENTIFYING:
        assert value not in json.dumps(erased)


async def test_erase_leaves_balance_postings_and_statement_figures_unchanged(
    api: Api, session_maker: Maker
) -> None:
    w = await world(api)
    balance_path = w.path(f"/members/{w.zoe['id']}/balance")
    before_balance = await api.ok("get", balance_path)
    before_postings = await postings_of(session_maker, w.zoe["account_id"])
    before_statement = await api.ok("get", w.path(f"/members/{w.zoe['id']}/statement"))
    assert before_balance["balance_minutes"] == 60 - 90
    assert len(before_postings) == 2

    await erase(api, w)

    after_balance = await api.ok("get", balance_path)
    keep = ("balance_minutes", "earned_minutes", "spent_minutes", "pending_in_minutes")
    assert {k: after_balance[k] for k in keep} == {k: before_balance[k] for k in keep}
    assert await postings_of(session_maker, w.zoe["account_id"]) == before_postings
    after_statement = await api.ok("get", w.path(f"/members/{w.zoe['id']}/statement"))
    figures = ("entry_id", "exchange_id", "minutes", "balance_after_minutes", "occurred_on")
    assert [{k: e[k] for k in figures} for e in after_statement["items"]] == [
        {k: e[k] for k in figures} for e in before_statement["items"]
    ]
    assert after_statement["closing_balance_minutes"] == before_statement["closing_balance_minutes"]
    # the counterparty's statement now names her as erased
    bob_statement = await api.ok("get", w.path(f"/members/{w.bob['id']}/statement"))
    names = {
        c["display_name"]
        for e in bob_statement["items"]
        for c in e["counterparties"]
        if c["id"] == w.zoe["id"]
    }
    assert names == {"Erased member"}
    await _assert_ledger_consistent(session_maker)


# --- her exchanges ------------------------------------------------------------------------------


async def test_erase_redacts_free_text_of_the_members_exchanges_and_no_one_elses(
    api: Api,
) -> None:
    w = await world(api)

    await erase(api, w)

    for original in (w.lift, w.override, w.rejected, w.offer):
        got = await exchange(api, w, original)
        for field in ("description", "reason", "override_reason"):
            if original[field] is not None:
                assert got[field] != original[field], (field, got)
                assert "Zoe" not in (got[field] or ""), (field, got)
        # amounts, parties and status stay: they are the accounting record
        for field in ("status", "kind", "minutes", "postings", "category", "occurred_on"):
            assert got[field] == original[field], (field, got)
    assert await exchange(api, w, w.others) == w.others
    bob_statement = await api.ok("get", w.path(f"/members/{w.bob['id']}/statement"))
    descriptions = [e["description"] for e in bob_statement["items"]]
    assert "Bike repair for Cat" in descriptions
    assert not any("Zoe" in (d or "") for d in descriptions), descriptions


async def test_erased_member_cannot_join_new_exchanges_but_her_old_exchange_can_be_reversed(
    api: Api, session_maker: Maker
) -> None:
    w = await world(api)
    await erase(api, w)

    r = await api.exchange(w.slug, simple(w.bob, w.zoe, 30))
    assert_problem(r, 409, "party_inactive")
    # her counterparty's pending offer can no longer be confirmed either
    r = await api.post(w.path(f"/exchanges/{w.offer['id']}/confirm"))
    assert_problem(r, 409, "party_inactive")
    assert (await exchange(api, w, w.offer))["status"] == "pending"
    r = await api.post(w.path("/api-keys"), json={"role": "member", "member_id": w.zoe["id"]})
    assert_problem(r, 422, "validation_error")

    reversal = await api.ok(
        "post", w.path(f"/exchanges/{w.lift['id']}/reverse"), {"reason": "wrong member"}
    )

    assert reversal["kind"] == "reversal"
    assert reversal["reverses"] == w.lift["id"]
    assert (await exchange(api, w, w.lift))["reversed_by"] == reversal["id"]
    assert await api.balance(w.slug, w.zoe["id"]) == -90
    assert await api.balance(w.slug, w.bob["id"]) == 90 + 45
    await _assert_ledger_consistent(session_maker)


# --- what else remembered her ---------------------------------------------------------------


async def test_erased_members_api_key_stops_working(api: Api) -> None:
    w = await world(api)
    zoe_api = api.as_key(w.zoe_secret)
    assert (await zoe_api.get(w.path(f"/members/{w.zoe['id']}/balance"))).status_code == 200

    await erase(api, w)

    for r in (
        await zoe_api.get(w.path(f"/members/{w.zoe['id']}/balance")),
        await zoe_api.get(w.path("/exchanges")),
        await zoe_api.exchange(w.slug, simple(w.zoe, w.bob, 10)),
    ):
        assert_problem(r, 401, "unauthorized")
    keys = await api.ok("get", w.path("/api-keys"))
    zoe_keys = [k for k in keys["items"] if k["member_id"] == w.zoe["id"]]
    assert len(zoe_keys) == 1
    assert zoe_keys[0]["revoked_at"] is not None


async def _stored_responses(session_maker: Maker) -> dict[str, str]:
    async with session_maker() as s:
        rows = await s.execute(select(IdempotencyRecord.key, IdempotencyRecord.response_body))
        return {key: body or "" for key, body in rows}


async def test_erase_purges_every_stored_idempotency_response_that_holds_her_data(
    api: Api, session_maker: Maker
) -> None:
    w = await world(api)
    before = await _stored_responses(session_maker)
    assert any("Zoe Quinnell" in body for body in before.values())

    await erase(api, w)

    after = await _stored_responses(session_maker)
    identifying = (w.zoe["id"], w.zoe["account_id"], *IDENTIFYING)
    leaks = {k: v for k, v in after.items() for value in identifying if value in v}
    assert leaks == {}
    # records that never mentioned her are kept
    assert {"bob", "others"} <= set(after)


async def test_erase_purges_stored_idempotency_responses_holding_her_id_name_or_email(
    api: Api, session_maker: Maker
) -> None:
    """Her registration, her key, her exchanges and her own proposal were stored with her id
    (or account id) in the response: all of those responses go, the others stay. (The records
    made with other keys keep their fingerprint, so a retry is refused, not carried out again:
    see tests/test_state_machine.py.)"""
    w = await world(api)
    before = await _stored_responses(session_maker)
    assert {"zoe", "zoe-key", "lift", "override", "zoe-proposal"} <= set(before)

    await erase(api, w)

    after = await _stored_responses(session_maker)
    assert all(
        after.get(k, "") == "" for k in ("zoe", "zoe-key", "lift", "override", "zoe-proposal")
    )
    her = (w.zoe["id"], w.zoe["account_id"], ZOE["display_name"], ZOE["email"])
    # "bob-offer" (Bob's pending proposal to her) is the xfailed case above
    leaks = [(k, v) for k, body in after.items() if k != "bob-offer" for v in her if v in body]
    assert leaks == []
    assert {"bob", "others"} <= set(after)


async def test_erasing_twice_is_harmless(api: Api, session_maker: Maker) -> None:
    w = await world(api)
    first = await erase(api, w)
    redacted = await exchange(api, w, w.lift)
    events = await all_audit_events(api, w)

    second = await erase(api, w)

    assert second == first
    assert await exchange(api, w, w.lift) == redacted
    assert await api.balance(w.slug, w.zoe["id"]) == -30
    erase_events = [e for e in await all_audit_events(api, w) if e["action"] == "member.erase"]
    assert len(erase_events) == 1
    assert len(await all_audit_events(api, w)) == len(events)
    await _assert_ledger_consistent(session_maker)


async def test_erased_member_is_gone_from_the_directory_and_from_name_search(api: Api) -> None:
    w = await world(api)
    bob_api = api.as_key(await api.key(w.slug, "member", member_id=w.bob["id"]))
    directory = await bob_api.ok("get", w.path("/directory"))
    assert w.zoe["id"] in {e["id"] for e in directory["items"]}

    await erase(api, w)

    directory = await bob_api.ok("get", w.path("/directory"))
    assert w.zoe["id"] not in {e["id"] for e in directory["items"]}
    assert {e["display_name"] for e in directory["items"]} == {"Bob", "Cat"}
    assert (await bob_api.ok("get", w.path("/directory?q=Zoe")))["items"] == []
    assert (await api.ok("get", w.path("/members?q=Zoe")))["items"] == []
    erased = await api.ok("get", w.path("/members?status=erased"))
    assert [m["id"] for m in erased["items"]] == [w.zoe["id"]]


async def test_erase_audit_event_names_the_fields_but_holds_no_personal_value(api: Api) -> None:
    w = await world(api)

    await erase(api, w)

    events = await all_audit_events(api, w)
    erase_events = [e for e in events if e["action"] == "member.erase"]
    assert len(erase_events) == 1
    event = erase_events[0]
    assert event["target_type"] == "member"
    assert event["target_id"] == w.zoe["id"]
    assert event["role"] == "admin"
    fields = set(event["details"]["fields"])
    assert set(PERSONAL) <= fields
    assert "display_name" in fields
    dumped = json.dumps(event)
    for value in (*IDENTIFYING, ZOE["locality"], ZOE["external_ref"]):
        assert value not in dumped
    # no other event names her by value either: they hold ids and field names
    for e in events:
        for value in ("zoe.quinnell@example.org", "07700 900123", "KA13 6AA"):
            assert value not in json.dumps(e), e


async def test_audit_trail_keeps_no_free_text_reason_naming_the_erased_member(
    api: Api,
) -> None:
    w = await world(api)

    await erase(api, w)

    events = await all_audit_events(api, w)
    leaking = [e for e in events if "Zoe Quinnell" in json.dumps(e)]
    assert leaking == []


async def test_only_staff_may_erase_a_member(api: Api) -> None:
    w = await world(api)
    bob_api = api.as_key(await api.key(w.slug, "member", member_id=w.bob["id"]))
    funder = api.as_key(await api.key(w.slug, "funder"))
    for client in (bob_api, funder, api.as_key(w.zoe_secret)):
        r = await client.post(w.path(f"/members/{w.zoe['id']}/erase"))
        assert_problem(r, 403, "forbidden")
    assert_problem(await api.post(w.path(f"/members/{uuid.uuid4()}/erase")), 404, "not_found")
    assert (await api.ok("get", w.path(f"/members/{w.zoe['id']}")))["status"] == "active"
    broker = api.as_key(await api.key(w.slug, "broker"))
    r = await broker.post(w.path(f"/members/{w.zoe['id']}/erase"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "erased"
