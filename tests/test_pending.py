"""The pending flow (SPEC §3.5): a member key proposes, the counterparty member (or a broker)
confirms or rejects, the proposer may cancel, stale proposals expire; a decision happens
once, and a confirmation re-checks limits, party status and category (SPEC §2 invariant 5)."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Api, gather, party, simple
from tests.test_concurrency import TIMEBANK_CLI, _assert_ledger_consistent
from tests.test_errors import assert_problem
from timebank.app import create_app
from timebank.config import Settings
from timebank.db import utcnow
from timebank.ledger.models import Exchange, ExchangeStatus

Maker = async_sessionmaker[AsyncSession]


@pytest.fixture
async def live_api(settings: Settings, admin_secret: str) -> AsyncIterator[Api]:
    """Like ``api``, but gathered requests really overlap (see tests/test_concurrency.py)."""
    app = create_app(settings)
    started, stop = asyncio.Event(), asyncio.Event()

    async def run_lifespan() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    lifespan = asyncio.create_task(run_lifespan())
    await asyncio.wait(
        [lifespan, asyncio.create_task(started.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    if lifespan.done():
        lifespan.result()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", timeout=60
        ) as c:
            yield Api(c, admin_secret)  # type: ignore[arg-type]
    finally:
        stop.set()
        await lifespan


@dataclass
class Key:
    """A member's (or broker's) key: an API client and the key id that decisions record."""

    api: Api
    id: str


@dataclass
class Bank:
    slug: str
    tb: dict[str, Any]
    ann: dict[str, Any]
    bob: dict[str, Any]
    ann_key: Key
    bob_key: Key
    broker: Key

    def path(self, suffix: str = "") -> str:
        return f"/v1/timebanks/{self.slug}{suffix}"


async def new_key(api: Api, slug: str, role: str, **fields: Any) -> Key:
    body = await api.ok("post", f"/v1/timebanks/{slug}/api-keys", {"role": role, **fields})
    return Key(api.as_key(body["secret"]), body["id"])


async def member_key(api: Api, slug: str, member: dict[str, Any]) -> Key:
    return await new_key(api, slug, "member", member_id=member["id"])


async def bank(api: Api, **settings: Any) -> Bank:
    tb = await api.timebank(**settings)
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    return Bank(
        slug,
        tb,
        ann,
        bob,
        await member_key(api, slug, ann),
        await member_key(api, slug, bob),
        await new_key(api, slug, "broker"),
    )


async def propose(key: Key, slug: str, body: dict[str, Any]) -> dict[str, Any]:
    return await key.api.ok("post", f"/v1/timebanks/{slug}/exchanges", body)  # type: ignore[no-any-return]


async def decide(
    key: Key | Api, slug: str, exchange_id: str, decision: str, json: Any = None
) -> Any:
    client = key.api if isinstance(key, Key) else key
    return await client.post(f"/v1/timebanks/{slug}/exchanges/{exchange_id}/{decision}", json=json)


async def fetch(api: Api, slug: str, exchange_id: str) -> dict[str, Any]:
    return await api.ok("get", f"/v1/timebanks/{slug}/exchanges/{exchange_id}")  # type: ignore[no-any-return]


async def balance_of(api: Api, slug: str, member: dict[str, Any]) -> dict[str, Any]:
    return await api.ok("get", f"/v1/timebanks/{slug}/members/{member['id']}/balance")  # type: ignore[no-any-return]


def pending_view(b: dict[str, Any]) -> tuple[int, int, int]:
    return b["balance_minutes"], b["pending_in_minutes"], b["pending_out_minutes"]


async def listed_ids(api: Api, path: str) -> set[str]:
    body = await api.ok("get", path)
    assert body["next_cursor"] is None
    return {e["id"] for e in body["items"]}


async def backdate(session_maker: Maker, exchange_id: str, days: float) -> None:
    """Move a pending proposal's ``recorded_at`` into the past (the database allows this for
    pending rows only)."""
    async with session_maker() as s:
        result = await s.execute(
            update(Exchange)
            .where(Exchange.id == uuid.UUID(exchange_id))
            .values(recorded_at=utcnow() - timedelta(days=days))
        )
        assert result.rowcount == 1  # type: ignore[attr-defined]
        await s.commit()


async def stored_status(session_maker: Maker, exchange_id: str) -> ExchangeStatus:
    async with session_maker() as s:
        status: ExchangeStatus = (
            await s.execute(select(Exchange.status).where(Exchange.id == uuid.UUID(exchange_id)))
        ).scalar_one()
    return status


# --- proposing --------------------------------------------------------------------------------


async def test_member_proposal_is_pending_moves_no_balance_and_shows_on_both_balances(
    api: Api,
) -> None:
    b = await bank(api)
    body = simple(b.ann, b.bob, 90, description="Lift to the surgery")

    ex = await propose(b.ann_key, b.slug, body)

    assert ex["status"] == "pending"
    assert ex["kind"] == "p2p"
    assert ex["minutes"] == 90
    assert ex["category"] == "transport"
    assert ex["description"] == "Lift to the surgery"
    assert ex["postings"] == []
    assert ex["proposed_by"] == b.ann["id"]
    assert ex["logged_by"] == {"key_id": b.ann_key.id, "user_id": None, "role": "member"}
    assert ex["decided_by"] is None and ex["decided_at"] is None
    # a proposal is not recorded yet; it says when it was made and when it expires
    assert "recorded_at" not in ex and ex["created_at"] == ex["updated_at"]
    made = datetime.fromisoformat(ex["created_at"])
    assert datetime.fromisoformat(ex["expires_at"]) - made == timedelta(
        days=b.tb["settings"]["pending_expiry_days"]
    )
    assert await fetch(api, b.slug, ex["id"]) == ex
    # no balance moved; the provider expects 90 in, the recipient 90 out
    assert pending_view(await balance_of(b.ann_key.api, b.slug, b.ann)) == (0, 90, 0)
    assert pending_view(await balance_of(b.bob_key.api, b.slug, b.bob)) == (0, 0, 90)
    ann_bal = await balance_of(api, b.slug, b.ann)
    assert (ann_bal["earned_minutes"], ann_bal["spent_minutes"]) == (0, 0)
    statement = await api.ok("get", b.path(f"/members/{b.ann['id']}/statement"))
    assert statement["items"] == []
    assert statement["closing_balance_minutes"] == 0


async def test_member_key_cannot_propose_between_other_parties_or_in_group_form(
    api: Api,
) -> None:
    b = await bank(api)
    cat = await api.member(b.slug, "Cat")
    r = await b.ann_key.api.exchange(b.slug, simple(b.bob, cat, 30))
    assert_problem(r, 403, "forbidden")
    group = {
        "providers": [{"party": party(b.ann), "minutes": 30}],
        "recipients": [{"party": party(b.bob), "minutes": 30}],
        "category": "transport",
    }
    assert_problem(await b.ann_key.api.exchange(b.slug, group), 403, "forbidden")
    override = simple(b.ann, b.bob, 30, override_limits=True, override_reason="please")
    assert_problem(await b.ann_key.api.exchange(b.slug, override), 403, "forbidden")
    assert await listed_ids(api, b.path("/exchanges")) == set()


# --- deciding ---------------------------------------------------------------------------------


async def test_proposer_cannot_confirm_or_reject_own_proposal_but_may_cancel_it(
    api: Api,
) -> None:
    b = await bank(api)
    ex = await propose(b.ann_key, b.slug, simple(b.ann, b.bob, 45))

    assert_problem(await decide(b.ann_key, b.slug, ex["id"], "confirm"), 403, "forbidden")
    assert_problem(await decide(b.ann_key, b.slug, ex["id"], "reject"), 403, "forbidden")
    # the counterparty may not cancel someone else's proposal
    assert_problem(await decide(b.bob_key, b.slug, ex["id"], "cancel"), 403, "forbidden")
    assert (await fetch(api, b.slug, ex["id"]))["status"] == "pending"

    r = await decide(b.ann_key, b.slug, ex["id"], "cancel")
    assert r.status_code == 200, r.text
    cancelled = r.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["postings"] == []
    assert cancelled["decided_by"] == {"type": "member", "id": b.ann["id"], "name": "Ann"}
    assert cancelled["decided_at"] is not None
    assert await fetch(api, b.slug, ex["id"]) == cancelled
    assert pending_view(await balance_of(api, b.slug, b.ann)) == (0, 0, 0)
    assert pending_view(await balance_of(api, b.slug, b.bob)) == (0, 0, 0)
    # once decided, nobody can decide it again
    assert_problem(await decide(b.bob_key, b.slug, ex["id"], "confirm"), 409, "not_pending")
    assert_problem(await decide(b.ann_key, b.slug, ex["id"], "cancel"), 409, "not_pending")


async def test_counterparty_sees_proposal_awaiting_them_and_confirming_records_it(
    api: Api, session_maker: Maker
) -> None:
    b = await bank(api)
    ex = await propose(b.ann_key, b.slug, simple(b.ann, b.bob, 90, description="Lift"))
    awaiting = b.path("/exchanges?awaiting=me")
    assert await listed_ids(b.bob_key.api, awaiting) == {ex["id"]}
    assert await listed_ids(b.ann_key.api, awaiting) == set()  # the proposer waits for nobody

    r = await decide(b.bob_key, b.slug, ex["id"], "confirm")

    assert r.status_code == 200, r.text
    confirmed = r.json()
    assert confirmed["status"] == "recorded"
    assert confirmed["decided_by"] == {"type": "member", "id": b.bob["id"], "name": "Bob"}
    # recorded now: recorded_at appears, expires_at goes; created_at stays the proposal's
    assert confirmed["recorded_at"] == confirmed["decided_at"] == confirmed["updated_at"]
    assert confirmed["created_at"] == ex["created_at"] and "expires_at" not in confirmed
    assert confirmed["decided_at"] is not None
    assert confirmed["proposed_by"] == b.ann["id"]
    assert sorted((p["account_id"], p["minutes"]) for p in confirmed["postings"]) == sorted(
        [(b.ann["account_id"], 90), (b.bob["account_id"], -90)]
    )
    assert (confirmed["id"], confirmed["minutes"], confirmed["description"]) == (
        ex["id"],
        90,
        "Lift",
    )
    assert await fetch(b.ann_key.api, b.slug, ex["id"]) == confirmed
    assert pending_view(await balance_of(api, b.slug, b.ann)) == (90, 0, 0)
    assert pending_view(await balance_of(api, b.slug, b.bob)) == (-90, 0, 0)
    assert await listed_ids(b.bob_key.api, awaiting) == set()
    statement = await b.bob_key.api.ok("get", b.path(f"/members/{b.bob['id']}/statement"))
    assert [(e["exchange_id"], e["minutes"]) for e in statement["items"]] == [(ex["id"], -90)]

    # a second decision, by anyone, is refused and changes nothing
    for key, decision in [
        (b.bob_key, "confirm"),
        (b.bob_key, "reject"),
        (b.ann_key, "cancel"),
        (b.broker, "confirm"),
    ]:
        assert_problem(await decide(key, b.slug, ex["id"], decision), 409, "not_pending")
    assert await fetch(api, b.slug, ex["id"]) == confirmed
    assert await api.balance(b.slug, b.ann["id"]) == 90
    await _assert_ledger_consistent(session_maker)


async def test_counterparty_rejects_with_a_reason_and_no_balance_moves(api: Api) -> None:
    b = await bank(api)
    ex = await propose(b.bob_key, b.slug, simple(b.bob, b.ann, 120, category="home-garden"))

    r = await decide(b.ann_key, b.slug, ex["id"], "reject", {"reason": "It took one hour"})

    assert r.status_code == 200, r.text
    rejected = r.json()
    assert rejected["status"] == "rejected"
    assert rejected["reason"] == "It took one hour"
    assert rejected["decided_by"] == {"type": "member", "id": b.ann["id"], "name": "Ann"}
    assert "recorded_at" not in rejected and "expires_at" not in rejected
    assert rejected["decided_at"] is not None
    assert rejected["postings"] == []
    assert pending_view(await balance_of(api, b.slug, b.ann)) == (0, 0, 0)
    assert pending_view(await balance_of(api, b.slug, b.bob)) == (0, 0, 0)
    assert_problem(await decide(b.ann_key, b.slug, ex["id"], "confirm"), 409, "not_pending")
    assert (await fetch(api, b.slug, ex["id"]))["status"] == "rejected"
    events = await api.ok("get", b.path(f"/audit-events?target={ex['id']}"))
    assert [(e["action"], e["reason"]) for e in events["items"]] == [
        ("exchange.propose", None),
        ("exchange.reject", "It took one hour"),
    ]


async def test_member_who_is_not_a_party_can_neither_see_nor_decide_a_proposal(
    api: Api,
) -> None:
    b = await bank(api)
    cat = await api.member(b.slug, "Cat")
    cat_key = await member_key(api, b.slug, cat)
    ex = await propose(b.ann_key, b.slug, simple(b.ann, b.bob, 30))

    assert_problem(await cat_key.api.get(b.path(f"/exchanges/{ex['id']}")), 404, "not_found")
    for decision in ("confirm", "reject", "cancel"):
        r = await decide(cat_key, b.slug, ex["id"], decision)
        assert r.status_code in (403, 404), r.text
    assert (await fetch(api, b.slug, ex["id"]))["status"] == "pending"


async def test_broker_decides_when_the_counterparty_is_an_organisation_or_the_pool(
    api: Api,
) -> None:
    b = await bank(api)
    org = await api.organisation(b.slug, "Food Bank")
    volunteering = await propose(
        b.ann_key, b.slug, simple(b.ann, org, 120, category="community-events")
    )
    assert volunteering["kind"] == "p2o"
    grant = await propose(
        b.ann_key,
        b.slug,
        {"provider": party(b.ann), "recipient": party(b.tb), "minutes": 60},
    )
    assert grant["kind"] == "pool_grant"

    for ex in (volunteering, grant):
        # the proposer cannot, nor can another member; the organisation/pool has no member
        assert_problem(await decide(b.ann_key, b.slug, ex["id"], "confirm"), 403, "forbidden")
        r = await decide(b.bob_key, b.slug, ex["id"], "confirm")
        assert r.status_code in (403, 404), r.text
        assert (await fetch(api, b.slug, ex["id"]))["status"] == "pending"

    r = await decide(b.broker, b.slug, volunteering["id"], "confirm")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "recorded"
    assert r.json()["decided_by"] == {"type": "key", "id": b.broker.id, "name": "broker"}
    # a member reading it sees a broker decided, not which key
    seen = await b.ann_key.api.ok("get", b.path(f"/exchanges/{volunteering['id']}"))
    assert seen["decided_by"] == {"type": "key", "name": "broker"}
    r = await decide(b.broker, b.slug, grant["id"], "reject", {"reason": "No hardship case"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "rejected"

    assert await api.balance(b.slug, b.ann["id"]) == 120
    org_bal = await api.ok("get", b.path(f"/organisations/{org['id']}/balance"))
    assert org_bal["balance_minutes"] == -120
    pool = await api.ok("get", b.path(f"/accounts/{b.tb['pool_account_id']}"))
    assert pool["balance_minutes"] == 0


async def test_broker_may_decide_a_proposal_between_two_members(api: Api) -> None:
    b = await bank(api)
    ex = await propose(b.ann_key, b.slug, simple(b.ann, b.bob, 75))
    r = await decide(b.broker, b.slug, ex["id"], "confirm")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["decided_by"]["id"]) == ("recorded", b.broker.id)
    assert await api.balance(b.slug, b.bob["id"]) == -75


# --- a member's figures are theirs ------------------------------------------------------------


async def test_a_proposal_past_the_proposers_own_limit_is_refused_when_proposed(
    api: Api,
) -> None:
    b = await bank(api)  # member minimum -600
    await api.ok("post", b.path("/exchanges"), simple(b.ann, b.bob, 195))
    body = assert_problem(
        await b.ann_key.api.post(b.path("/exchanges"), json=simple(b.bob, b.ann, 1000)),
        409,
        "balance_limit_exceeded",
    )
    # her own figures, so she may read them
    assert body["detail"].startswith("Your account (member ")
    assert body["balance_minutes"] == 195 and body["min_balance_minutes"] == -600
    listed = await api.ok("get", b.path(f"/exchanges?member_id={b.ann['id']}&status=pending"))
    assert listed["items"] == []


async def test_no_refusal_to_a_member_names_another_members_figures(api: Api) -> None:
    b = await bank(api)  # member minimum -600
    chloe = await api.member(b.slug, "Chloe")
    chloe_key = await member_key(api, b.slug, chloe)
    await api.ok("post", b.path("/exchanges"), simple(chloe, b.bob, 195))
    ex = await propose(chloe_key, b.slug, simple(b.ann, chloe, 500))
    # Chloe then receives 400 elsewhere: confirming would take her to -705
    await api.ok("post", b.path("/exchanges"), simple(b.bob, chloe, 400))

    body = assert_problem(
        await decide(b.ann_key, b.slug, ex["id"], "confirm"), 409, "balance_limit_exceeded"
    )
    assert body["detail"].startswith("The other member's balance limit would be passed")
    text_ = str(body)
    for secret in ("Chloe", chloe["id"], chloe["account_id"], "195", "-205", "205", "600"):
        assert secret not in text_, (secret, body)
    for field in ("balance_minutes", "change_minutes", "min_balance_minutes", "account_id"):
        assert field not in body
    # a broker may read everything
    staff = assert_problem(
        await decide(b.broker, b.slug, ex["id"], "confirm"), 409, "balance_limit_exceeded"
    )
    assert staff["detail"].startswith(f"Chloe (member {chloe['id']})")
    assert staff["balance_minutes"] == -205
    assert (await fetch(api, b.slug, ex["id"]))["status"] == "pending"


# --- confirmation re-checks -------------------------------------------------------------------


async def test_confirmation_rechecks_the_limit_and_a_refused_confirmation_stays_pending(
    api: Api, session_maker: Maker
) -> None:
    b = await bank(api)  # member minimum -600
    cat = await api.member(b.slug, "Cat")
    ex = await propose(b.ann_key, b.slug, simple(b.ann, b.bob, 60))
    # after the proposal Bob spends 580 elsewhere: confirming would leave him at -640
    await api.ok("post", b.path("/exchanges"), simple(cat, b.bob, 580))

    for key in (b.bob_key, b.broker):
        body = assert_problem(
            await decide(key, b.slug, ex["id"], "confirm"), 409, "balance_limit_exceeded"
        )
        # the refusal names the party, by name and id, and says why in hours and minutes
        assert body["detail"].startswith(f"Bob (member {b.bob['id']}) would go to −10 h 40 min")
        assert body["account_id"] == b.bob["account_id"]
        assert body["party"] == {"type": "member", "id": b.bob["id"]}
    still = await fetch(api, b.slug, ex["id"])
    assert (still["status"], still["postings"], still["decided_by"]) == ("pending", [], None)
    assert pending_view(await balance_of(api, b.slug, b.bob)) == (-580, 0, 60)
    assert pending_view(await balance_of(api, b.slug, b.ann)) == (0, 60, 0)

    await api.ok(
        "patch", b.path(f"/accounts/{b.bob['account_id']}"), {"min_balance_minutes": -1000}
    )
    r = await decide(b.bob_key, b.slug, ex["id"], "confirm")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "recorded"
    assert pending_view(await balance_of(api, b.slug, b.bob)) == (-640, 0, 0)
    assert await api.balance(b.slug, b.ann["id"]) == 60
    await _assert_ledger_consistent(session_maker)


async def test_confirmation_rechecks_party_status_and_a_suspended_proposer_leaves_it_pending(
    api: Api,
) -> None:
    b = await bank(api)
    ex = await propose(b.ann_key, b.slug, simple(b.ann, b.bob, 60))
    await api.ok("patch", b.path(f"/members/{b.ann['id']}"), {"status": "suspended"})

    for key in (b.bob_key, b.broker):
        assert_problem(await decide(key, b.slug, ex["id"], "confirm"), 409, "party_inactive")
    still = await fetch(api, b.slug, ex["id"])
    assert (still["status"], still["postings"]) == ("pending", [])
    assert await api.balance(b.slug, b.ann["id"]) == 0

    await api.ok("patch", b.path(f"/members/{b.ann['id']}"), {"status": "active"})
    r = await decide(b.bob_key, b.slug, ex["id"], "confirm")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "recorded"
    assert await api.balance(b.slug, b.ann["id"]) == 60


async def test_confirmation_rechecks_the_category_and_a_missing_category_leaves_it_pending(
    api: Api, engine_name: str, db_url: str, session_maker: Maker
) -> None:
    """The API cannot delete a category; an operator removing one from the database by hand
    (foreign keys bypassed) is the only way a proposal's category can vanish."""
    b = await bank(api)
    await api.ok("post", b.path("/categories"), {"slug": "bike-repair", "name": "Bike repair"})
    ex = await propose(b.ann_key, b.slug, simple(b.ann, b.bob, 60, category="bike-repair"))
    delete = "DELETE FROM categories WHERE slug = 'bike-repair'"
    if engine_name == "sqlite":
        path = db_url.split(":///", 1)[1]

        def drop() -> None:
            con = sqlite3.connect(path, isolation_level=None)  # foreign keys off by default
            try:
                assert con.execute(delete).rowcount == 1
            finally:
                con.close()

        await asyncio.to_thread(drop)
    else:
        async with session_maker() as s:
            await s.execute(text("SET LOCAL session_replication_role = replica"))
            assert (await s.execute(text(delete))).rowcount == 1  # type: ignore[attr-defined]
            await s.commit()

    r = await decide(b.bob_key, b.slug, ex["id"], "confirm")

    assert_problem(r, 422, "validation_error")
    assert any(e["field"] == "category" for e in r.json()["errors"]), r.json()
    assert (await fetch(api, b.slug, ex["id"]))["status"] == "pending"
    assert await api.balance(b.slug, b.ann["id"]) == 0


# --- one decision under concurrency -----------------------------------------------------------


async def test_concurrent_confirm_reject_and_cancel_of_one_proposal_decide_it_exactly_once(
    live_api: Api, session_maker: Maker
) -> None:
    api = live_api
    b = await bank(api)
    proposals = [await propose(b.ann_key, b.slug, simple(b.ann, b.bob, 10 + i)) for i in range(6)]
    attempts = [
        (b.bob_key, "confirm"),
        (b.bob_key, "reject"),
        (b.ann_key, "cancel"),
        (b.broker, "confirm"),
        (b.broker, "reject"),
    ]

    responses = await gather(
        *(decide(k, b.slug, ex["id"], d) for ex in proposals for k, d in attempts)
    )

    assert [r for r in responses if r.status_code >= 500] == []
    expected_ann = 0
    for i, ex in enumerate(proposals):
        mine = responses[i * len(attempts) : (i + 1) * len(attempts)]
        won = [(r, d) for r, (_, d) in zip(mine, attempts, strict=True) if r.status_code == 200]
        assert len(won) == 1, [(r.status_code, r.text) for r in mine]
        for r in mine:
            if r.status_code != 200:
                assert_problem(r, 409, "not_pending")
        winner, decision = won[0]
        final = await fetch(api, b.slug, ex["id"])
        assert final == winner.json()
        assert (
            final["status"]
            == {
                "confirm": "recorded",
                "reject": "rejected",
                "cancel": "cancelled",
            }[decision]
        )
        if decision == "confirm":
            expected_ann += ex["minutes"]
            assert len(final["postings"]) == 2
        else:
            assert final["postings"] == []
        events = await api.ok("get", b.path(f"/audit-events?target={ex['id']}"))
        assert [e["action"] for e in events["items"]] == [
            "exchange.propose",
            f"exchange.{decision}",
        ]
    assert pending_view(await balance_of(api, b.slug, b.ann)) == (expected_ann, 0, 0)
    assert pending_view(await balance_of(api, b.slug, b.bob)) == (-expected_ann, 0, 0)
    await _assert_ledger_consistent(session_maker)


# --- expiry -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first_touch", ["get", "list", "awaiting", "balance", "confirm", "reject", "cancel"]
)
async def test_proposal_older_than_pending_expiry_days_is_expired_by_the_next_read_or_decision(
    api: Api, session_maker: Maker, first_touch: str
) -> None:
    b = await bank(api, pending_expiry_days=7)
    stale = await propose(b.ann_key, b.slug, simple(b.ann, b.bob, 30))
    fresh = await propose(b.ann_key, b.slug, simple(b.ann, b.bob, 20))
    await backdate(session_maker, stale["id"], days=8)
    await backdate(session_maker, fresh["id"], days=6)  # inside the 7 days: still pending

    if first_touch == "get":
        assert (await fetch(b.bob_key.api, b.slug, stale["id"]))["status"] == "expired"
    elif first_touch in ("list", "awaiting"):
        query = "?awaiting=me" if first_touch == "awaiting" else ""
        body = await b.bob_key.api.ok("get", b.path(f"/exchanges{query}"))
        statuses = {e["id"]: e["status"] for e in body["items"]}
        if first_touch == "list":
            assert statuses == {stale["id"]: "expired", fresh["id"]: "pending"}
        else:
            assert statuses == {fresh["id"]: "pending"}
    elif first_touch == "balance":
        assert pending_view(await balance_of(b.bob_key.api, b.slug, b.bob)) == (0, 0, 20)
    else:
        key = b.ann_key if first_touch == "cancel" else b.bob_key
        r = await decide(key, b.slug, stale["id"], first_touch)
        assert_problem(r, 409, "not_pending")

    expired = await fetch(api, b.slug, stale["id"])
    assert expired["status"] == "expired"
    assert expired["postings"] == []
    assert expired["decided_at"] is not None
    assert expired["decided_by"] is None
    assert_problem(await decide(b.bob_key, b.slug, stale["id"], "confirm"), 409, "not_pending")
    assert (await fetch(api, b.slug, stale["id"]))["status"] == "expired"
    # the younger proposal was not touched and can still be confirmed
    assert (await fetch(api, b.slug, fresh["id"]))["status"] == "pending"
    r = await decide(b.bob_key, b.slug, fresh["id"], "confirm")
    assert r.status_code == 200, r.text
    assert pending_view(await balance_of(api, b.slug, b.bob)) == (-20, 0, 0)


async def test_stale_proposal_to_an_organisation_no_longer_counts_as_pending_on_its_balance(
    api: Api, session_maker: Maker
) -> None:
    b = await bank(api, pending_expiry_days=7)
    org = await api.organisation(b.slug, "Food Bank")
    stale = await propose(b.ann_key, b.slug, simple(b.ann, org, 90, category="other"))
    await backdate(session_maker, stale["id"], days=8)

    org_bal = await api.ok("get", b.path(f"/organisations/{org['id']}/balance"))

    assert pending_view(org_bal) == (0, 0, 0)
    assert (await fetch(api, b.slug, stale["id"]))["status"] == "expired"


async def _expire_pending_cli(db_url: str, cwd: Path) -> str:
    env = {**os.environ, "TIMEBANK_DATABASE_URL": db_url, "TIMEBANK_LOG_LEVEL": "WARNING"}

    def run() -> tuple[int, str, str]:
        proc = subprocess.Popen(
            [TIMEBANK_CLI, "maintenance", "expire-pending"],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return proc.returncode, out, err

    code, out, err = await asyncio.to_thread(run)
    assert code == 0, f"exit {code}\nstdout: {out}\nstderr: {err}"
    return err


async def test_expire_pending_command_expires_stale_proposals_of_every_bank_and_is_idempotent(
    api: Api, session_maker: Maker, db_url: str, tmp_path: Path
) -> None:
    month = await bank(api)  # pending_expiry_days defaults to 30
    week = await bank(api, pending_expiry_days=7)
    old_month = await propose(month.ann_key, month.slug, simple(month.ann, month.bob, 30))
    young_month = await propose(month.ann_key, month.slug, simple(month.ann, month.bob, 40))
    old_week = await propose(week.bob_key, week.slug, simple(week.bob, week.ann, 50))
    young_week = await propose(week.bob_key, week.slug, simple(week.bob, week.ann, 60))
    recorded = await api.ok("post", week.path("/exchanges"), simple(week.ann, week.bob, 15))
    await backdate(session_maker, old_month["id"], days=31)
    await backdate(session_maker, young_month["id"], days=10)  # old for one bank, not this
    await backdate(session_maker, old_week["id"], days=8)
    await backdate(session_maker, young_week["id"], days=6)

    first = await _expire_pending_cli(db_url, tmp_path)

    assert re.search(r"\bexpired 2 pending exchange", first), first
    # straight from the database: no API read has had a chance to expire anything lazily
    assert {
        ex["id"]: await stored_status(session_maker, ex["id"])
        for ex in (old_month, young_month, old_week, young_week, recorded)
    } == {
        old_month["id"]: ExchangeStatus.expired,
        young_month["id"]: ExchangeStatus.pending,
        old_week["id"]: ExchangeStatus.expired,
        young_week["id"]: ExchangeStatus.pending,
        recorded["id"]: ExchangeStatus.recorded,
    }

    second = await _expire_pending_cli(db_url, tmp_path)

    assert re.search(r"\bexpired 0 pending exchange", second), second
    got = await fetch(api, month.slug, old_month["id"])
    assert (got["status"], got["postings"], got["decided_by"]) == ("expired", [], None)
    assert got["decided_at"] is not None
    assert (await fetch(api, week.slug, young_week["id"]))["status"] == "pending"
    assert_problem(
        await decide(week.ann_key, week.slug, old_week["id"], "confirm"), 409, "not_pending"
    )
    assert pending_view(await balance_of(api, week.slug, week.ann)) == (15, 0, 60)
    assert pending_view(await balance_of(api, month.slug, month.ann)) == (0, 40, 0)


# --- what a member key sees -------------------------------------------------------------------


async def test_member_key_lists_only_its_own_exchanges_and_gets_404_for_anyone_elses(
    api: Api,
) -> None:
    b = await bank(api)
    cat = await api.member(b.slug, "Cat")
    cat_key = await member_key(api, b.slug, cat)
    org = await api.organisation(b.slug)
    ann_bob = await api.ok("post", b.path("/exchanges"), simple(b.ann, b.bob, 60))
    bob_cat = await api.ok("post", b.path("/exchanges"), simple(b.bob, cat, 30))
    cat_org = await api.ok("post", b.path("/exchanges"), simple(cat, org, 90))
    ann_offer = await propose(b.ann_key, b.slug, simple(b.ann, cat, 20))
    cat_offer = await propose(cat_key, b.slug, simple(cat, b.ann, 25))
    bob_offer = await propose(b.bob_key, b.slug, simple(b.bob, cat, 35))

    mine = {ann_bob["id"], ann_offer["id"], cat_offer["id"]}
    assert await listed_ids(b.ann_key.api, b.path("/exchanges")) == mine
    assert await listed_ids(b.ann_key.api, b.path(f"/exchanges?member_id={b.ann['id']}")) == mine
    assert await listed_ids(b.ann_key.api, b.path("/exchanges?status=pending")) == {
        ann_offer["id"],
        cat_offer["id"],
    }
    assert await listed_ids(b.ann_key.api, b.path("/exchanges?awaiting=me")) == {cat_offer["id"]}
    assert await listed_ids(cat_key.api, b.path("/exchanges?awaiting=me")) == {
        ann_offer["id"],
        bob_offer["id"],
    }

    for other in (bob_cat, cat_org, bob_offer):
        r = await b.ann_key.api.get(b.path(f"/exchanges/{other['id']}"))
        assert_problem(r, 404, "not_found")
    for ex_id in mine:
        assert (await fetch(b.ann_key.api, b.slug, ex_id))["id"] == ex_id
    for query in (f"member_id={b.bob['id']}", f"organisation_id={org['id']}"):
        r = await b.ann_key.api.get(b.path(f"/exchanges?{query}"))
        assert_problem(r, 403, "forbidden")
    # staff see them all
    assert await listed_ids(api, b.path("/exchanges")) == mine | {
        bob_cat["id"],
        cat_org["id"],
        bob_offer["id"],
    }


async def test_a_member_key_may_not_set_external_ref(api: Api) -> None:
    """``external_ref`` is the broker's paper-sheet reference (SPEC §3.5): a member could
    otherwise reserve a sheet's line with a proposal it then cancels, and the 409 of a taken
    reference would tell it which lines exist. Refused as 422 on the field, before any
    lookup, whether the reference is free or taken."""
    b = await bank(api)
    taken = simple(b.bob, b.ann, 30, occurred_on="2026-11-02", external_ref="sheet-11/1")
    assert (await b.broker.api.exchange(b.slug, taken)).status_code == 201
    for ref in ("sheet-11/1", "sheet-11/2"):
        body = simple(b.ann, b.bob, 60, occurred_on="2026-11-02", external_ref=ref)
        r = await b.ann_key.api.exchange(b.slug, body)
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "validation_error"
        assert r.json()["errors"][0]["field"] == "external_ref"
    listed = await api.ok("get", b.path("/exchanges"))
    assert [e["external_ref"] for e in listed["items"]] == ["sheet-11/1"]
