"""Worked examples of the ledger over HTTP, with exact figures (SPEC §2, §3.1–3.5).

Conventions: providers are credited (+), recipients debited (−) for every kind; a pool grant
is provider = member, recipient = the pool's account; a donation to the pool is the reverse.
Every scenario ends by checking the ledger invariants directly in the database.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Api, simple
from timebank.audit.models import AuditEvent
from timebank.ledger.models import Account, Exchange, ExchangeStatus, Posting

LONDON = ZoneInfo("Europe/London")
CSV_COLUMNS = [
    "row",
    "entry_id",
    "exchange_id",
    "kind",
    "occurred_on",
    "recorded_at",
    "minutes",
    "hours",
    "balance_after_minutes",
    "balance_after_hours",
    "counterparties",
    "category",
    "description",
    "reverses",
    "reason",
]

Maker = async_sessionmaker[AsyncSession]


# --- helpers ------------------------------------------------------------------------------


def london_today() -> date:
    return datetime.now(LONDON).date()


async def record(api: Api, slug: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.exchange(slug, body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    assert out["status"] == "recorded"
    return out


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert body["code"] == code
    return body


async def refused(
    api: Api, slug: str, body: dict[str, Any], status: int, code: str
) -> dict[str, Any]:
    return assert_problem(await api.exchange(slug, body), status, code)


async def reverse(api: Api, slug: str, exchange_id: str, reason: str = "Entered in error") -> Any:
    return await api.post(
        f"/v1/timebanks/{slug}/exchanges/{exchange_id}/reverse", json={"reason": reason}
    )


async def member_balance(api: Api, slug: str, m: dict[str, Any]) -> dict[str, Any]:
    return await api.ok("get", f"/v1/timebanks/{slug}/members/{m['id']}/balance")  # type: ignore[no-any-return]


async def org_balance(api: Api, slug: str, o: dict[str, Any]) -> dict[str, Any]:
    return await api.ok("get", f"/v1/timebanks/{slug}/organisations/{o['id']}/balance")  # type: ignore[no-any-return]


async def figures(api: Api, slug: str, m: dict[str, Any]) -> tuple[int, int, int]:
    """(balance, earned, spent) of a member."""
    b = await member_balance(api, slug, m)
    return b["balance_minutes"], b["earned_minutes"], b["spent_minutes"]


async def balances(api: Api, slug: str, *members: dict[str, Any]) -> list[int]:
    return [await api.balance(slug, m["id"]) for m in members]


async def statement(api: Api, slug: str, m: dict[str, Any], **params: Any) -> dict[str, Any]:
    r = await api.get(f"/v1/timebanks/{slug}/members/{m['id']}/statement", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def account(api: Api, slug: str, account_id: str) -> dict[str, Any]:
    return await api.ok("get", f"/v1/timebanks/{slug}/accounts/{account_id}")  # type: ignore[no-any-return]


async def set_limits(api: Api, slug: str, account_id: str, **limits: Any) -> dict[str, Any]:
    return await api.ok(  # type: ignore[no-any-return]
        "patch", f"/v1/timebanks/{slug}/accounts/{account_id}", limits
    )


async def list_exchanges(api: Api, slug: str, **params: Any) -> list[dict[str, Any]]:
    r = await api.get(f"/v1/timebanks/{slug}/exchanges", params={"limit": 500, **params})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["next_cursor"] is None
    return body["items"]  # type: ignore[no-any-return]


async def exchange_ids(api: Api, slug: str, **params: Any) -> set[str]:
    return {e["id"] for e in await list_exchanges(api, slug, **params)}


async def batch(
    api: Api, slug: str, items: list[dict[str, Any]], atomic: bool
) -> list[dict[str, Any]]:
    r = await api.post(
        f"/v1/timebanks/{slug}/exchanges/batch", json={"exchanges": items, "atomic": atomic}
    )
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    assert [x["index"] for x in results] == list(range(len(items)))
    return results


def postings(ex: dict[str, Any]) -> dict[str, int]:
    """account id → signed minutes (each account appears once per exchange)."""
    out = {p["account_id"]: p["minutes"] for p in ex["postings"]}
    assert len(out) == len(ex["postings"])
    return out


def pool_grant(tb: dict[str, Any], m: dict[str, Any], minutes: int, **kw: Any) -> dict[str, Any]:
    return {
        "provider": {"member_id": m["id"]},
        "recipient": {"account_id": tb["pool_account_id"]},
        "minutes": minutes,
        **kw,
    }


def pool_donation(tb: dict[str, Any], m: dict[str, Any], minutes: int, **kw: Any) -> dict[str, Any]:
    return {
        "provider": {"account_id": tb["pool_account_id"]},
        "recipient": {"member_id": m["id"]},
        "minutes": minutes,
        **kw,
    }


def cp(entity: dict[str, Any]) -> dict[str, str]:
    """The statement counterparty for a member or an organisation."""
    if "display_name" in entity:
        return {"type": "member", "id": entity["id"], "display_name": entity["display_name"]}
    return {"type": "organisation", "id": entity["id"], "display_name": entity["name"]}


def entry_figures(items: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    return [(e["exchange_id"], e["minutes"], e["balance_after_minutes"]) for e in items]


async def assert_ledger_invariants(session_maker: Maker) -> None:
    """SPEC §2 invariants, straight from the tables."""
    async with session_maker() as s:
        sums = dict(
            (
                await s.execute(
                    select(Posting.account_id, func.sum(Posting.minutes)).group_by(
                        Posting.account_id
                    )
                )
            ).all()
        )
        earned = dict(
            (
                await s.execute(
                    select(Posting.account_id, func.sum(Posting.minutes))
                    .where(Posting.minutes > 0)
                    .group_by(Posting.account_id)
                )
            ).all()
        )
        spent = dict(
            (
                await s.execute(
                    select(Posting.account_id, -func.sum(Posting.minutes))
                    .where(Posting.minutes < 0)
                    .group_by(Posting.account_id)
                )
            ).all()
        )
        accounts = (await s.execute(select(Account))).scalars().all()
        assert accounts
        for acc in accounts:
            assert acc.balance_minutes == int(sums.get(acc.id, 0)), acc.id
            assert acc.earned_minutes == int(earned.get(acc.id, 0)), acc.id
            assert acc.spent_minutes == int(spent.get(acc.id, 0)), acc.id
        unbalanced = (
            await s.execute(
                select(Posting.exchange_id, func.sum(Posting.minutes))
                .group_by(Posting.exchange_id)
                .having(func.sum(Posting.minutes) != 0)
            )
        ).all()
        assert unbalanced == []
        assert (await s.execute(select(func.count()).where(Posting.minutes == 0))).scalar_one() == 0
        lines = dict(
            (
                await s.execute(
                    select(Posting.exchange_id, func.count()).group_by(Posting.exchange_id)
                )
            ).all()
        )
        for ex_id, status in (await s.execute(select(Exchange.id, Exchange.status))).all():
            if status is ExchangeStatus.recorded:
                assert lines.get(ex_id, 0) >= 2, ex_id
            else:
                assert lines.get(ex_id, 0) == 0, ex_id
        per_bank = (
            await s.execute(
                select(Account.timebank_id, func.sum(Account.balance_minutes))
                .group_by(Account.timebank_id)
                .having(func.sum(Account.balance_minutes) != 0)
            )
        ).all()
        assert per_bank == []
        # balance_after_minutes is the running total of the account in ledger order.
        running: dict[Any, int] = {}
        for acc_id, minutes, after in (
            await s.execute(
                select(Posting.account_id, Posting.minutes, Posting.balance_after_minutes).order_by(
                    Posting.id
                )
            )
        ).all():
            running[acc_id] = running.get(acc_id, 0) + minutes
            assert after == running[acc_id], acc_id


async def timebank_balance_sum(session_maker: Maker, tb: dict[str, Any]) -> tuple[int, int]:
    """(Σ balances, number of accounts) of one time bank, by SQL on accounts."""
    async with session_maker() as s:
        total, n = (
            await s.execute(
                select(func.coalesce(func.sum(Account.balance_minutes), 0), func.count()).where(
                    Account.timebank_id == uuid.UUID(tb["id"])
                )
            )
        ).one()
    return int(total), int(n)


# --- 1. a whole scenario ------------------------------------------------------------------


async def test_member_volunteers_3h_spends_2h_on_a_lift_and_the_lift_is_reversed(
    api: Api, session_maker: Maker
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann Jones")
    bob = await api.member(slug, "Bob Smith")
    charity = await api.organisation(slug, "Riverside Food Bank")

    volunteering = await record(
        api,
        slug,
        simple(
            ann,
            charity,
            180,
            category="community-events",
            occurred_on="2025-03-03",
            description="Sorting donations",
        ),
    )
    assert volunteering["kind"] == "p2o"
    assert volunteering["minutes"] == 180
    assert volunteering["category"] == "community-events"
    assert volunteering["occurred_on"] == "2025-03-03"
    assert postings(volunteering) == {ann["account_id"]: 180, charity["account_id"]: -180}
    assert volunteering["reverses"] is None and volunteering["reversed_by"] is None

    lift = await record(
        api,
        slug,
        simple(
            bob,
            ann,
            120,
            category="transport",
            occurred_on="2025-03-10",
            description="Lift to the hospital",
        ),
    )
    assert lift["kind"] == "p2p"
    assert lift["minutes"] == 120
    assert postings(lift) == {bob["account_id"]: 120, ann["account_id"]: -120}
    assert await balances(api, slug, ann, bob) == [60, 120]

    before = london_today()
    r = await reverse(api, slug, lift["id"], "Lift was logged against the wrong member")
    after = london_today()
    assert r.status_code == 201, r.text
    reversal = r.json()
    assert reversal["kind"] == "reversal"
    assert reversal["status"] == "recorded"
    assert reversal["minutes"] == 120
    assert reversal["reverses"] == lift["id"]
    assert reversal["reversed_by"] is None
    assert reversal["occurred_on"] in {before.isoformat(), after.isoformat()}
    assert postings(reversal) == {bob["account_id"]: -120, ann["account_id"]: 120}

    got_lift = await api.ok("get", f"/v1/timebanks/{slug}/exchanges/{lift['id']}")
    assert got_lift["reversed_by"] == reversal["id"]
    assert got_lift["reverses"] is None
    assert postings(got_lift) == {bob["account_id"]: 120, ann["account_id"]: -120}
    got_rev = await api.ok("get", f"/v1/timebanks/{slug}/exchanges/{reversal['id']}")
    assert got_rev["reverses"] == lift["id"]
    assert got_rev["reversed_by"] is None
    got_vol = await api.ok("get", f"/v1/timebanks/{slug}/exchanges/{volunteering['id']}")
    assert got_vol["reversed_by"] is None

    ann_bal = await member_balance(api, slug, ann)
    assert ann_bal["balance_minutes"] == 180
    assert ann_bal["earned_minutes"] == 300  # 180 volunteering + 120 reversal credit
    assert ann_bal["spent_minutes"] == 120
    assert ann_bal["pending_in_minutes"] == 0 and ann_bal["pending_out_minutes"] == 0
    assert ann_bal["min_balance_minutes"] == -600 and ann_bal["max_balance_minutes"] is None
    assert ann_bal["account_id"] == ann["account_id"]
    assert await figures(api, slug, bob) == (0, 120, 120)
    ch = await org_balance(api, slug, charity)
    assert (ch["balance_minutes"], ch["earned_minutes"], ch["spent_minutes"]) == (-180, 0, 180)
    assert ch["min_balance_minutes"] is None and ch["max_balance_minutes"] is None

    st = await statement(api, slug, ann)
    assert st["opening_balance_minutes"] == 0
    assert st["closing_balance_minutes"] == 180
    assert st["next_cursor"] is None
    items = st["items"]
    assert [e["entry_id"] for e in items] == sorted(e["entry_id"] for e in items)
    assert [
        (
            e["exchange_id"],
            e["kind"],
            e["occurred_on"],
            e["minutes"],
            e["balance_after_minutes"],
            e["counterparties"],
            e["category"],
            e["description"],
        )
        for e in items[:2]
    ] == [
        (
            volunteering["id"],
            "p2o",
            "2025-03-03",
            180,
            180,
            [cp(charity)],
            "community-events",
            "Sorting donations",
        ),
        (lift["id"], "p2p", "2025-03-10", -120, 60, [cp(bob)], "transport", "Lift to the hospital"),
    ]
    rev_entry = items[2]
    assert (
        rev_entry["exchange_id"],
        rev_entry["kind"],
        rev_entry["minutes"],
        rev_entry["balance_after_minutes"],
        rev_entry["counterparties"],
    ) == (reversal["id"], "reversal", 120, 180, [cp(bob)])
    assert rev_entry["occurred_on"] == reversal["occurred_on"]

    bob_st = await statement(api, slug, bob)
    assert entry_figures(bob_st["items"]) == [(lift["id"], 120, 120), (reversal["id"], -120, 0)]
    assert [e["counterparties"] for e in bob_st["items"]] == [[cp(ann)], [cp(ann)]]
    assert (bob_st["opening_balance_minutes"], bob_st["closing_balance_minutes"]) == (0, 0)

    march = await statement(api, slug, ann, **{"from": "2025-03-05", "to": "2025-03-31"})
    assert (march["opening_balance_minutes"], march["closing_balance_minutes"]) == (180, 60)
    assert entry_figures(march["items"]) == [(lift["id"], -120, 60)]
    since = await statement(api, slug, ann, **{"from": "2025-03-05"})
    assert (since["opening_balance_minutes"], since["closing_balance_minutes"]) == (180, 180)
    assert entry_figures(since["items"]) == [(lift["id"], -120, 60), (reversal["id"], 120, 180)]

    org_st = await api.ok("get", f"/v1/timebanks/{slug}/organisations/{charity['id']}/statement")
    assert entry_figures(org_st["items"]) == [(volunteering["id"], -180, -180)]
    assert org_st["items"][0]["counterparties"] == [cp(ann)]
    assert org_st["closing_balance_minutes"] == -180

    assert_problem(await reverse(api, slug, lift["id"], "again"), 409, "already_reversed")
    assert_problem(await reverse(api, slug, reversal["id"], "undo"), 409, "not_reversible")
    assert await balances(api, slug, ann, bob) == [180, 0]
    assert len(await list_exchanges(api, slug)) == 3

    async with session_maker() as s:
        events = (
            (await s.execute(select(AuditEvent).where(AuditEvent.action == "exchange.reverse")))
            .scalars()
            .all()
        )
    assert [(e.target_id, e.reason, e.details) for e in events] == [
        (lift["id"], "Lift was logged against the wrong member", {"reversal_id": reversal["id"]})
    ]
    await assert_ledger_invariants(session_maker)


# --- 2. group exchanges --------------------------------------------------------------------


def group(
    provider: dict[str, Any],
    provider_minutes: int,
    recipients: list[tuple[dict[str, Any], int]],
    **kw: Any,
) -> dict[str, Any]:
    return {
        "providers": [{"party": {"member_id": provider["id"]}, "minutes": provider_minutes}],
        "recipients": [{"party": {"member_id": m["id"]}, "minutes": n} for m, n in recipients],
        "category": "learning-teaching",
        **kw,
    }


async def test_class_of_one_tutor_and_five_learners_is_one_p2p_exchange_with_six_postings(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    tutor = await api.member(slug, "Tess Tutor")
    learners = [await api.member(slug, f"Learner {i}") for i in range(1, 6)]

    ex = await record(
        api,
        slug,
        group(
            tutor,
            120,
            [(m, 24) for m in learners],
            occurred_on="2025-05-01",
            description="Spanish class",
        ),
    )
    assert ex["kind"] == "p2p"
    assert ex["minutes"] == 120
    assert ex["category"] == "learning-teaching"
    assert len(ex["postings"]) == 6
    assert sum(p["minutes"] for p in ex["postings"]) == 0
    assert postings(ex) == {tutor["account_id"]: 120, **{m["account_id"]: -24 for m in learners}}

    assert await balances(api, slug, tutor, *learners) == [120, -24, -24, -24, -24, -24]
    assert await figures(api, slug, tutor) == (120, 120, 0)
    assert await figures(api, slug, learners[0]) == (-24, 0, 24)

    tutor_st = await statement(api, slug, tutor)
    assert entry_figures(tutor_st["items"]) == [(ex["id"], 120, 120)]
    assert sorted(tutor_st["items"][0]["counterparties"], key=lambda c: c["display_name"]) == [
        cp(m) for m in learners
    ]
    learner_st = await statement(api, slug, learners[2])
    assert entry_figures(learner_st["items"]) == [(ex["id"], -24, -24)]
    assert learner_st["items"][0]["counterparties"] == [cp(tutor)]
    assert await exchange_ids(api, slug, kind="p2p") == {ex["id"]}

    r = await reverse(api, slug, ex["id"], "Class was cancelled")
    assert r.status_code == 201, r.text
    assert r.json()["minutes"] == 120
    assert postings(r.json()) == {
        tutor["account_id"]: -120,
        **{m["account_id"]: 24 for m in learners},
    }
    assert await balances(api, slug, tutor, *learners) == [0, 0, 0, 0, 0, 0]
    assert await figures(api, slug, tutor) == (0, 120, 120)
    await assert_ledger_invariants(session_maker)


async def test_group_exchange_records_nothing_when_one_learner_would_break_their_limit(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    tutor = await api.member(slug, "Tess Tutor")
    learners = [await api.member(slug, f"Learner {i}") for i in range(1, 6)]
    helper = await api.member(slug, "Hal Helper")
    earlier = await record(api, slug, simple(helper, learners[3], 590, occurred_on="2025-04-01"))

    await refused(
        api, slug, group(tutor, 120, [(m, 24) for m in learners]), 409, "balance_limit_exceeded"
    )
    # All or nothing: the tutor's credit and the other learners' debits were not kept.
    assert await balances(api, slug, tutor, *learners, helper) == [0, 0, 0, 0, -590, 0, 590]
    assert await exchange_ids(api, slug) == {earlier["id"]}
    assert (await statement(api, slug, tutor))["items"] == []

    ok = await record(
        api, slug, group(tutor, 120, [(m, 30) for i, m in enumerate(learners) if i != 3])
    )
    assert ok["minutes"] == 120 and len(ok["postings"]) == 5
    assert await balances(api, slug, tutor, *learners, helper) == [
        120,
        -30,
        -30,
        -30,
        -590,
        -30,
        590,
    ]
    await assert_ledger_invariants(session_maker)


# --- 3. limits -----------------------------------------------------------------------------


async def test_default_member_minimum_is_minus_600_and_a_debit_beyond_it_is_refused(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    acc = await account(api, slug, ann["account_id"])
    assert (acc["min_balance_minutes"], acc["max_balance_minutes"]) == (-600, None)
    assert acc["owner"] == {"type": "member", "id": ann["id"]}

    await record(api, slug, simple(bob, ann, 600))
    await refused(api, slug, simple(bob, ann, 1), 409, "balance_limit_exceeded")
    assert await balances(api, slug, ann, bob) == [-600, 600]
    await record(api, slug, simple(ann, bob, 30))
    await refused(api, slug, simple(bob, ann, 31), 409, "balance_limit_exceeded")
    await record(api, slug, simple(bob, ann, 30))
    assert await balances(api, slug, ann, bob) == [-600, 600]
    assert len(await list_exchanges(api, slug)) == 3
    await assert_ledger_invariants(session_maker)


async def test_account_already_outside_a_tightened_limit_can_only_move_back_towards_its_range(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    await record(api, slug, simple(bob, ann, 300))

    acc = await set_limits(api, slug, ann["account_id"], min_balance_minutes=-200)
    assert acc["id"] == ann["account_id"]
    assert acc["balance_minutes"] == -300
    assert (acc["min_balance_minutes"], acc["max_balance_minutes"]) == (-200, None)
    got = await account(api, slug, ann["account_id"])
    assert (got["balance_minutes"], got["min_balance_minutes"], got["max_balance_minutes"]) == (
        -300,
        -200,
        None,
    )
    b = await member_balance(api, slug, ann)
    assert (b["min_balance_minutes"], b["max_balance_minutes"]) == (-200, None)

    await refused(
        api, slug, simple(bob, ann, 1), 409, "balance_limit_exceeded"
    )  # −301: further out
    await record(api, slug, simple(ann, bob, 60))  # −240: back towards
    await refused(
        api, slug, simple(bob, ann, 10), 409, "balance_limit_exceeded"
    )  # −250: further out again
    await record(api, slug, simple(ann, bob, 100))  # −140: inside
    await record(api, slug, simple(bob, ann, 60))  # −200: on the limit
    await refused(api, slug, simple(bob, ann, 1), 409, "balance_limit_exceeded")  # −201
    assert await balances(api, slug, ann, bob) == [-200, 200]

    # The same on the max side: Bob is above a newly set maximum of 100.
    acc = await set_limits(api, slug, bob["account_id"], max_balance_minutes=100)
    assert (acc["balance_minutes"], acc["min_balance_minutes"], acc["max_balance_minutes"]) == (
        200,
        -600,
        100,
    )
    await refused(api, slug, simple(bob, ann, 1), 409, "balance_limit_exceeded")  # 201: further out
    await record(api, slug, simple(ann, bob, 50))  # 150: back towards
    assert await balances(api, slug, ann, bob) == [-150, 150]
    await refused(api, slug, simple(bob, ann, 1), 409, "balance_limit_exceeded")  # 151 > 150
    await record(api, slug, simple(ann, bob, 50))  # 100: on the limit
    assert await balances(api, slug, ann, bob) == [-100, 100]

    async with session_maker() as s:
        targets = (
            (
                await s.execute(
                    select(AuditEvent.target_id)
                    .where(AuditEvent.action == "account.limits")
                    .order_by(AuditEvent.id)
                )
            )
            .scalars()
            .all()
        )
    assert targets == [ann["account_id"], bob["account_id"]]
    await assert_ledger_invariants(session_maker)


async def test_account_maximum_refuses_a_credit_above_it(api: Api, session_maker: Maker) -> None:
    slug = (await api.timebank())["slug"]
    cat = await api.member(slug, "Cat")
    dan = await api.member(slug, "Dan")
    acc = await set_limits(api, slug, cat["account_id"], max_balance_minutes=120)
    assert (acc["min_balance_minutes"], acc["max_balance_minutes"]) == (-600, 120)

    await record(api, slug, simple(cat, dan, 120))
    await refused(api, slug, simple(cat, dan, 1), 409, "balance_limit_exceeded")
    await record(api, slug, simple(dan, cat, 60))
    await refused(api, slug, simple(cat, dan, 61), 409, "balance_limit_exceeded")
    await record(api, slug, simple(cat, dan, 60))
    assert await balances(api, slug, cat, dan) == [120, -120]
    assert await figures(api, slug, cat) == (120, 180, 60)
    await assert_ledger_invariants(session_maker)


async def test_organisation_accounts_are_unbounded_by_default(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    care = await api.organisation(slug, "Care Home", kind="care_provider")
    members = [await api.member(slug, f"Volunteer {i}") for i in range(3)]
    acc = await account(api, slug, care["account_id"])
    assert acc["owner"] == {"type": "organisation", "id": care["id"]}
    assert (acc["min_balance_minutes"], acc["max_balance_minutes"]) == (None, None)

    for m in members:
        await record(api, slug, simple(m, care, 1440, category="care-support"))
    ob = await org_balance(api, slug, care)
    assert (ob["balance_minutes"], ob["earned_minutes"], ob["spent_minutes"]) == (-4320, 0, 4320)
    assert await balances(api, slug, *members) == [1440, 1440, 1440]
    for m in members[1:]:
        await record(api, slug, simple(care, m, 1440, category="care-support"))
    ob = await org_balance(api, slug, care)
    assert (ob["balance_minutes"], ob["earned_minutes"], ob["spent_minutes"]) == (-1440, 2880, 4320)
    assert await balances(api, slug, *members) == [1440, 0, 0]
    await assert_ledger_invariants(session_maker)


async def test_use_defaults_restores_the_time_bank_default_limits(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    acc = await set_limits(
        api, slug, ann["account_id"], min_balance_minutes=-60, max_balance_minutes=60
    )
    assert (acc["min_balance_minutes"], acc["max_balance_minutes"], acc["custom_limits"]) == (
        -60,
        60,
        True,
    )
    await refused(api, slug, simple(bob, ann, 61), 409, "balance_limit_exceeded")
    await refused(api, slug, simple(ann, bob, 61), 409, "balance_limit_exceeded")

    acc = await set_limits(api, slug, ann["account_id"], use_defaults=True)
    assert (acc["min_balance_minutes"], acc["max_balance_minutes"], acc["custom_limits"]) == (
        -600,
        None,
        False,
    )
    await record(api, slug, simple(bob, ann, 61))
    await record(api, slug, simple(bob, ann, 539))
    await refused(api, slug, simple(bob, ann, 1), 409, "balance_limit_exceeded")
    assert await balances(api, slug, ann, bob) == [-600, 600]

    # An explicit null is an unbounded custom limit; min above max is refused.
    acc = await set_limits(api, slug, ann["account_id"], min_balance_minutes=None)
    assert (acc["min_balance_minutes"], acc["max_balance_minutes"], acc["custom_limits"]) == (
        None,
        None,
        True,
    )
    await record(api, slug, simple(bob, ann, 1400))
    assert await balances(api, slug, ann, bob) == [-2000, 2000]
    r = await api.patch(
        f"/v1/timebanks/{slug}/accounts/{bob['account_id']}",
        json={"min_balance_minutes": 10, "max_balance_minutes": 5},
    )
    assert_problem(r, 422, "validation_error")
    assert (await account(api, slug, bob["account_id"]))["custom_limits"] is False
    await assert_ledger_invariants(session_maker)


async def test_time_bank_limit_settings_changed_by_patch_apply_to_later_exchanges(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    own = await api.member(slug, "Own Limits")
    hall = await api.organisation(slug, "Village Hall", kind="community_group")
    await set_limits(api, slug, own["account_id"], min_balance_minutes=-1000)

    tb = await api.ok(
        "patch",
        f"/v1/timebanks/{slug}",
        {
            "settings": {
                "member_min_balance_minutes": -120,
                "member_max_balance_minutes": 300,
                "organisation_min_balance_minutes": -500,
            }
        },
    )
    assert tb["settings"]["member_min_balance_minutes"] == -120
    assert tb["settings"]["member_max_balance_minutes"] == 300
    assert tb["settings"]["organisation_min_balance_minutes"] == -500
    assert tb["settings"]["organisation_max_balance_minutes"] is None
    b = await member_balance(api, slug, ann)
    assert (b["min_balance_minutes"], b["max_balance_minutes"]) == (-120, 300)
    assert (await account(api, slug, hall["account_id"]))["min_balance_minutes"] == -500
    assert (await account(api, slug, own["account_id"]))["min_balance_minutes"] == -1000

    await refused(api, slug, simple(bob, ann, 121), 409, "balance_limit_exceeded")  # ann −121
    await record(api, slug, simple(bob, ann, 120))  # ann −120, bob 120
    await refused(api, slug, simple(bob, hall, 181), 409, "balance_limit_exceeded")  # bob 301 > 300
    await record(api, slug, simple(bob, hall, 180))  # bob 300, hall −180
    await refused(api, slug, simple(own, hall, 321), 409, "balance_limit_exceeded")  # hall −501
    await record(api, slug, simple(own, hall, 320))  # hall −500, own 320
    await record(api, slug, simple(hall, own, 1000))  # own −680 (own −1000)
    assert await balances(api, slug, ann, bob, own) == [-120, 300, -680]
    assert (await org_balance(api, slug, hall))["balance_minutes"] == 500

    # Back to an unbounded member minimum: null is a valid setting.
    tb = await api.ok(
        "patch", f"/v1/timebanks/{slug}", {"settings": {"member_min_balance_minutes": None}}
    )
    assert tb["settings"]["member_min_balance_minutes"] is None
    await record(api, slug, simple(hall, ann, 1000))
    assert await balances(api, slug, ann, bob, own) == [-1120, 300, -680]
    assert (await org_balance(api, slug, hall))["balance_minutes"] == 1500
    await assert_ledger_invariants(session_maker)


async def test_broker_override_records_beyond_the_limit_and_is_audited_with_its_reason(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    broker = api.as_key(await api.key(slug, "broker"))
    await record(broker, slug, simple(bob, ann, 600))
    await refused(broker, slug, simple(bob, ann, 100), 409, "balance_limit_exceeded")
    body = await refused(
        broker, slug, simple(bob, ann, 100, override_limits=True), 422, "validation_error"
    )
    assert "override_reason" in body["detail"]

    reason = "Hardship: agreed by the coordinator on 3 March"
    ex = await record(
        broker, slug, simple(bob, ann, 100, override_limits=True, override_reason=reason)
    )
    assert ex["override_reason"] == reason
    assert ex["logged_by"]["role"] == "broker"
    assert postings(ex) == {bob["account_id"]: 100, ann["account_id"]: -100}
    assert await balances(api, slug, ann, bob) == [-700, 700]
    # Now outside the range: only moves back towards it are accepted.
    await refused(broker, slug, simple(bob, ann, 1), 409, "balance_limit_exceeded")
    await record(broker, slug, simple(ann, bob, 50))
    assert await balances(api, slug, ann, bob) == [-650, 650]

    async with session_maker() as s:
        events = (
            (await s.execute(select(AuditEvent).where(AuditEvent.action == "exchange.override")))
            .scalars()
            .all()
        )
        records = (
            await s.execute(select(func.count()).where(AuditEvent.action == "exchange.record"))
        ).scalar_one()
    assert len(events) == 1
    assert events[0].reason == reason
    assert events[0].target_type == "exchange"
    assert events[0].target_id == ex["id"]
    assert events[0].role == "broker"
    assert str(events[0].key_id) == ex["logged_by"]["key_id"]
    assert records == 2  # the 600 and the 50; refused requests leave no audit event
    await assert_ledger_invariants(session_maker)


async def test_reversal_ignores_limits(api: Api, session_maker: Maker) -> None:
    slug = (await api.timebank())["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    charity = await api.organisation(slug, "Food Bank")
    volunteering = await record(api, slug, simple(ann, charity, 180, category="community-events"))
    await record(api, slug, simple(bob, ann, 780))
    assert await balances(api, slug, ann, bob) == [-600, 780]

    r = await reverse(api, slug, volunteering["id"], "Session was cancelled")
    assert r.status_code == 201, r.text
    assert postings(r.json()) == {ann["account_id"]: -180, charity["account_id"]: 180}
    assert await figures(api, slug, ann) == (-780, 180, 960)
    assert (await org_balance(api, slug, charity))["balance_minutes"] == 0
    await refused(api, slug, simple(bob, ann, 1), 409, "balance_limit_exceeded")

    # A maximum does not stop a reversal either.
    await set_limits(api, slug, bob["account_id"], max_balance_minutes=0)
    lift = await record(api, slug, simple(ann, bob, 60))  # bob 720: back towards the max
    await api.ok(
        "patch",
        f"/v1/timebanks/{slug}/accounts/{bob['account_id']}",
        {"min_balance_minutes": 700, "max_balance_minutes": 700},
    )
    r = await reverse(api, slug, lift["id"])  # bob 780, ann −780: both further outside
    assert r.status_code == 201, r.text
    assert await balances(api, slug, ann, bob) == [-780, 780]
    await assert_ledger_invariants(session_maker)


# --- 4. the community pool ------------------------------------------------------------------


async def test_starting_grant_gives_each_new_member_a_pool_grant_and_the_bank_sums_to_zero(
    api: Api, session_maker: Maker
) -> None:
    tb = await api.timebank(starting_grant_minutes=120)
    slug = tb["slug"]
    assert tb["settings"]["starting_grant_minutes"] == 120
    members = [await api.member(slug, name) for name in ("Ann", "Bob", "Cat")]
    charity = await api.organisation(slug, "Food Bank")

    for m in members:
        assert await figures(api, slug, m) == (120, 120, 0)
    pool = await account(api, slug, tb["pool_account_id"])
    assert pool["owner"]["type"] == "pool"
    assert pool["balance_minutes"] == -360
    assert (pool["min_balance_minutes"], pool["max_balance_minutes"]) == (None, None)
    assert (await org_balance(api, slug, charity))[
        "balance_minutes"
    ] == 0  # no grant for organisations

    grants = await list_exchanges(api, slug, kind="pool_grant")
    assert len(grants) == 3
    assert await list_exchanges(api, slug) == grants
    for g, m in zip(sorted(grants, key=lambda g: g["id"]), members, strict=True):
        assert (g["kind"], g["minutes"], g["category"], g["status"]) == (
            "pool_grant",
            120,
            None,
            "recorded",
        )
        assert postings(g) == {m["account_id"]: 120, tb["pool_account_id"]: -120}

    st = await statement(api, slug, members[1])
    assert len(st["items"]) == 1
    entry = st["items"][0]
    assert (entry["kind"], entry["minutes"], entry["balance_after_minutes"], entry["category"]) == (
        "pool_grant",
        120,
        120,
        None,
    )
    assert entry["counterparties"] == [
        {"type": "pool", "id": tb["pool_account_id"], "display_name": "Community pool"}
    ]
    assert (st["opening_balance_minutes"], st["closing_balance_minutes"]) == (0, 120)

    await record(api, slug, simple(members[0], members[1], 60))
    await record(api, slug, simple(members[2], charity, 90, category="community-events"))
    assert await timebank_balance_sum(session_maker, tb) == (
        0,
        5,
    )  # pool, 3 members, 1 organisation

    first_grant = min(grants, key=lambda g: g["id"])
    r = await reverse(api, slug, first_grant["id"], "Registered twice")
    assert r.status_code == 201, r.text
    assert postings(r.json()) == {members[0]["account_id"]: -120, tb["pool_account_id"]: 120}
    assert (await account(api, slug, tb["pool_account_id"]))["balance_minutes"] == -240
    assert await balances(api, slug, *members) == [120 + 60 - 120, 120 - 60, 120 + 90]
    assert await timebank_balance_sum(session_maker, tb) == (0, 5)
    await assert_ledger_invariants(session_maker)


async def test_pool_grants_and_donations_have_their_own_kinds_and_no_category(
    api: Api, session_maker: Maker
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    pool_id = tb["pool_account_id"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    charity = await api.organisation(slug, "Food Bank")
    assert await balances(api, slug, ann) == [0]  # starting grant defaults to 0

    grant = await record(api, slug, pool_grant(tb, ann, 300, description="Hardship hours"))
    assert (grant["kind"], grant["minutes"], grant["category"]) == ("pool_grant", 300, None)
    assert postings(grant) == {ann["account_id"]: 300, pool_id: -300}
    donation = await record(api, slug, pool_donation(tb, ann, 90, description="Hours given back"))
    assert (donation["kind"], donation["minutes"], donation["category"]) == (
        "pool_donation",
        90,
        None,
    )
    assert postings(donation) == {pool_id: 90, ann["account_id"]: -90}
    org_donation = await record(
        api,
        slug,
        {
            "provider": {"account_id": pool_id},
            "recipient": {"organisation_id": charity["id"]},
            "minutes": 45,
        },
    )
    assert org_donation["kind"] == "pool_donation"

    assert await figures(api, slug, ann) == (210, 300, 90)
    assert (await account(api, slug, pool_id))["balance_minutes"] == -300 + 90 + 45
    assert (await org_balance(api, slug, charity))["balance_minutes"] == -45

    body = await refused(
        api, slug, pool_grant(tb, bob, 60, category="other"), 422, "validation_error"
    )
    assert body["errors"][0]["field"] == "category"
    body = await refused(
        api,
        slug,
        {
            "provider": {"member_id": ann["id"]},
            "recipient": {"member_id": bob["id"]},
            "minutes": 60,
        },
        422,
        "validation_error",
    )
    assert body["errors"][0]["field"] == "category"
    body = await refused(
        api,
        slug,
        {
            "provider": {"member_id": bob["id"]},
            "recipient": {"account_id": ann["account_id"]},
            "minutes": 60,
        },
        422,
        "validation_error",
    )
    assert body["errors"][0]["field"] == "recipient"
    await refused(
        api,
        slug,
        {
            "providers": [{"party": {"account_id": pool_id}, "minutes": 60}],
            "recipients": [
                {"party": {"member_id": ann["id"]}, "minutes": 30},
                {"party": {"member_id": bob["id"]}, "minutes": 30},
            ],
        },
        422,
        "validation_error",
    )

    assert await exchange_ids(api, slug, kind="pool_grant") == {grant["id"]}
    assert await exchange_ids(api, slug, kind="pool_donation") == {
        donation["id"],
        org_donation["id"],
    }
    assert await timebank_balance_sum(session_maker, tb) == (0, 4)

    # The starting grant is a time-bank setting: changed by PATCH, it applies to new members.
    settings = (
        await api.ok("patch", f"/v1/timebanks/{slug}", {"settings": {"starting_grant_minutes": 30}})
    )["settings"]
    assert settings["starting_grant_minutes"] == 30
    cat = await api.member(slug, "Cat")
    assert await figures(api, slug, cat) == (30, 30, 0)
    assert (await account(api, slug, pool_id))["balance_minutes"] == -165 - 30
    assert await balances(api, slug, ann, bob) == [210, 0]  # existing members get nothing
    assert await timebank_balance_sum(session_maker, tb) == (0, 5)
    await assert_ledger_invariants(session_maker)


# --- 5. statements ---------------------------------------------------------------------------


async def four_entries(
    api: Api, slug: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Ann: +180 (15 Jan), −45 (1 Feb), +60 (20 Feb), −30 (5 Mar) → 180, 135, 195, 165."""
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    charity = await api.organisation(slug, "Hope, Help & Co")
    exs = [
        await record(
            api,
            slug,
            simple(
                ann,
                charity,
                180,
                category="community-events",
                occurred_on="2025-01-15",
                description='Sorting, "packing"',
            ),
        ),
        await record(api, slug, simple(bob, ann, 45, occurred_on="2025-02-01")),
        await record(
            api, slug, simple(ann, bob, 60, category="diy-repairs", occurred_on="2025-02-20")
        ),
        await record(
            api, slug, simple(bob, ann, 30, category="shopping-errands", occurred_on="2025-03-05")
        ),
    ]
    return ann, bob, charity, exs


def parse_csv(text: str) -> list[dict[str, str]]:
    """The table of a statement CSV (after its header rows and the blank row)."""
    assert text.startswith("\ufeff")  # the byte-order mark Excel needs for accents
    head, _, table = text.removeprefix("\ufeff").partition("\r\n\r\n")
    assert [row[0] for row in csv.reader(io.StringIO(head))] == [
        "time_bank",
        "statement_of",
        "period",
        "order",
    ]
    reader = csv.DictReader(io.StringIO(table))
    assert reader.fieldnames == CSV_COLUMNS
    return list(reader)


async def test_statement_as_csv_by_accept_header_and_by_format_param_matches_the_json(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    ann, _bob, _charity, exs = await four_entries(api, slug)
    st = await statement(api, slug, ann)
    assert entry_figures(st["items"]) == [
        (exs[0]["id"], 180, 180),
        (exs[1]["id"], -45, 135),
        (exs[2]["id"], 60, 195),
        (exs[3]["id"], -30, 165),
    ]

    path = f"/v1/timebanks/{slug}/members/{ann['id']}/statement"
    by_accept = await api.get(path, headers={"Accept": "text/csv"})
    by_param = await api.get(path, params={"format": "csv"})
    for r in (by_accept, by_param):
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/csv")
    by_operation = await api.get(path + ".csv")
    assert by_operation.headers["content-type"] == "text/csv; charset=utf-8"
    assert by_accept.text == by_param.text == by_operation.text
    rows = parse_csv(by_param.text)
    opening, *rows, closing = rows
    assert (opening["row"], opening["balance_after_minutes"]) == ("opening_balance", "0")
    assert (closing["row"], closing["balance_after_minutes"]) == ("closing_balance", "165")
    assert {row["row"] for row in rows} == {"entry"}
    assert [
        (
            row["entry_id"],
            row["exchange_id"],
            row["kind"],
            row["occurred_on"],
            row["minutes"],
            row["balance_after_minutes"],
            row["counterparties"],
            row["category"],
            row["description"],
        )
        for row in rows
    ] == [
        (
            str(e["entry_id"]),
            e["exchange_id"],
            e["kind"],
            e["occurred_on"],
            str(e["minutes"]),
            str(e["balance_after_minutes"]),
            "; ".join(c["display_name"] for c in e["counterparties"]),
            e["category"] or "",
            e["description"] or "",
        )
        for e in st["items"]
    ]
    assert [row["counterparties"] for row in rows] == ["Hope, Help & Co", "Bob", "Bob", "Bob"]
    assert rows[0]["description"] == 'Sorting, "packing"'

    feb = await api.get(path, params={"format": "csv", "from": "2025-02-01", "to": "2025-02-28"})
    assert feb.status_code == 200, feb.text
    assert [
        (row["row"], row["exchange_id"], row["minutes"], row["balance_after_minutes"])
        for row in parse_csv(feb.text)
    ] == [
        ("opening_balance", "", "", "180"),
        ("entry", exs[1]["id"], "-45", "135"),
        ("entry", exs[2]["id"], "60", "195"),
        ("closing_balance", "", "", "195"),
    ]
    await assert_ledger_invariants(session_maker)


async def test_statement_from_and_to_are_inclusive_and_set_opening_and_closing_balances(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    ann, _bob, _charity, exs = await four_entries(api, slug)

    one_day = await statement(api, slug, ann, **{"from": "2025-02-01", "to": "2025-02-01"})
    assert entry_figures(one_day["items"]) == [(exs[1]["id"], -45, 135)]
    assert (one_day["opening_balance_minutes"], one_day["closing_balance_minutes"]) == (180, 135)
    assert one_day["period"] == {"from": "2025-02-01", "to": "2025-02-01"}

    feb = await statement(api, slug, ann, **{"from": "2025-02-01", "to": "2025-02-20"})
    assert entry_figures(feb["items"]) == [(exs[1]["id"], -45, 135), (exs[2]["id"], 60, 195)]
    assert (feb["opening_balance_minutes"], feb["closing_balance_minutes"]) == (180, 195)

    until = await statement(api, slug, ann, to="2025-01-31")
    assert entry_figures(until["items"]) == [(exs[0]["id"], 180, 180)]
    assert (until["opening_balance_minutes"], until["closing_balance_minutes"]) == (0, 180)

    after = await statement(api, slug, ann, **{"from": "2025-03-06"})
    assert after["items"] == []
    assert (after["opening_balance_minutes"], after["closing_balance_minutes"]) == (165, 165)

    path = f"/v1/timebanks/{slug}/members/{ann['id']}/statement"
    assert_problem(
        await api.get(path, params={"from": "2025-03-01", "to": "2025-02-01"}),
        422,
        "validation_error",
    )
    assert_problem(await api.get(path, params={"format": "xml"}), 422, "validation_error")
    await assert_ledger_invariants(session_maker)


async def walk_statement(
    api: Api, slug: str, m: dict[str, Any], limit: int, between_pages: Any = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All entries page by page; returns (entries, pages)."""
    pages: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        page = await statement(api, slug, m, **params)
        pages.append(page)
        assert len(page["items"]) <= limit
        if page["next_cursor"] is None:
            break
        if between_pages is not None:
            await between_pages(len(pages))
        params = {"limit": limit, "cursor": page["next_cursor"]}
    return [e for p in pages for e in p["items"]], pages


async def test_statement_keyset_pages_of_two_add_up_to_the_unpaginated_statement(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    ann, bob, _charity, _exs = await four_entries(api, slug)
    await record(api, slug, simple(ann, bob, 15, occurred_on="2025-01-01"))
    await record(api, slug, simple(bob, ann, 20, occurred_on="2025-04-01"))
    await record(api, slug, simple(ann, bob, 25, occurred_on="2025-02-02"))

    full = await statement(api, slug, ann)
    # value-date order: 1 Jan +15, 15 Jan +180, 1 Feb −45, 2 Feb +25, 20 Feb +60, 5 Mar −30,
    # 1 Apr −20 (recorded in another order)
    assert [e["balance_after_minutes"] for e in full["items"]] == [
        15,
        195,
        150,
        175,
        235,
        205,
        185,
    ]
    assert [e["occurred_on"] for e in full["items"]] == sorted(
        e["occurred_on"] for e in full["items"]
    )
    entries, pages = await walk_statement(api, slug, ann, 2)
    assert [len(p["items"]) for p in pages] == [2, 2, 2, 1]
    assert entries == full["items"]
    for p in pages:
        assert (p["opening_balance_minutes"], p["closing_balance_minutes"]) == (0, 185)

    path = f"/v1/timebanks/{slug}/members/{ann['id']}/statement"
    assert_problem(await api.get(path, params={"limit": 0}), 422, "validation_error")
    assert_problem(await api.get(path, params={"limit": 501}), 422, "validation_error")
    assert_problem(await api.get(path, params={"cursor": "not-a-cursor!"}), 422, "validation_error")
    await assert_ledger_invariants(session_maker)


async def test_statement_pages_stay_stable_when_exchanges_are_recorded_between_fetches(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    ann, bob, _charity, exs = await four_entries(api, slug)
    before = await statement(api, slug, ann)
    late: list[dict[str, Any]] = []

    async def insert(pages_seen: int) -> None:
        # A late paper time sheet: occurred before everything else, recorded now.
        late.append(
            await record(
                api, slug, simple(bob, ann, 10 * pages_seen, occurred_on=f"2024-12-0{pages_seen}")
            )
        )

    entries, _pages = await walk_statement(api, slug, ann, 1, between_pages=insert)
    # every entry there was is read once, in order; the late ones are dated before the
    # cursor, so later pages do not show them but their running balances count them
    assert [e["exchange_id"] for e in entries] == [e["id"] for e in exs]
    assert len(late) == 3
    assert entry_figures(entries) == [
        (exs[0]["id"], 180, 180),
        (exs[1]["id"], -45, 135 - 10),
        (exs[2]["id"], 60, 195 - 10 - 20),
        (exs[3]["id"], -30, 165 - 10 - 20 - 30),
    ]
    assert entries[0] == before["items"][0]
    # read afresh, the late sheets come first: they happened first
    after = await statement(api, slug, ann)
    assert entry_figures(after["items"]) == [
        (late[0]["id"], -10, -10),
        (late[1]["id"], -20, -30),
        (late[2]["id"], -30, -60),
        (exs[0]["id"], 180, 120),
        (exs[1]["id"], -45, 75),
        (exs[2]["id"], 60, 135),
        (exs[3]["id"], -30, 105),
    ]
    jan = await statement(api, slug, ann, **{"from": "2025-01-01"})
    assert jan["opening_balance_minutes"] == -60
    assert jan["closing_balance_minutes"] == 105
    await assert_ledger_invariants(session_maker)


# --- 6. exchange list filters ---------------------------------------------------------------


async def test_exchange_list_filters_by_party_category_kind_status_and_dates_and_pages(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    cat = await api.member(slug, "Cat")
    food = await api.organisation(slug, "Food Bank")
    library = await api.organisation(slug, "Library", kind="local_authority")
    e1 = await record(
        api, slug, simple(ann, food, 180, category="community-events", occurred_on="2025-02-01")
    )
    e2 = await record(api, slug, simple(bob, ann, 60, occurred_on="2025-02-10"))
    e3 = await record(
        api, slug, simple(library, cat, 90, category="learning-teaching", occurred_on="2025-03-05")
    )
    e4 = await record(api, slug, simple(cat, bob, 30, occurred_on="2025-03-20"))
    e5 = await record(
        api, slug, simple(food, library, 45, category="admin-it", occurred_on="2025-04-01")
    )
    r = await reverse(api, slug, e4["id"])
    assert r.status_code == 201, r.text
    e6 = r.json()
    assert [e["kind"] for e in (e1, e2, e3, e4, e5, e6)] == [
        "p2o",
        "p2p",
        "o2p",
        "p2p",
        "o2o",
        "reversal",
    ]
    ids = {
        n: e["id"] for n, e in {"e1": e1, "e2": e2, "e3": e3, "e4": e4, "e5": e5, "e6": e6}.items()
    }

    async def names(**params: Any) -> set[str]:
        got = await exchange_ids(api, slug, **params)
        return {n for n, i in ids.items() if i in got} | {i for i in got if i not in ids.values()}

    assert await names() == {"e1", "e2", "e3", "e4", "e5", "e6"}
    assert await names(member_id=ann["id"]) == {"e1", "e2"}
    assert await names(member_id=bob["id"]) == {"e2", "e4", "e6"}
    assert await names(member_id=cat["id"]) == {"e3", "e4", "e6"}
    assert await names(organisation_id=food["id"]) == {"e1", "e5"}
    assert await names(organisation_id=library["id"]) == {"e3", "e5"}
    assert await names(category="transport") == {"e2", "e4"}
    assert await names(category="admin-it") == {"e5"}
    assert await names(category="childcare-family") == set()
    assert await names(kind="p2p") == {"e2", "e4"}
    assert await names(kind="o2o") == {"e5"}
    assert await names(kind="reversal") == {"e6"}
    assert await names(status="recorded") == {"e1", "e2", "e3", "e4", "e5", "e6"}
    assert await names(status="pending") == set()
    assert await names(**{"from": "2025-02-10", "to": "2025-03-20"}) == {"e2", "e3", "e4"}
    assert await names(**{"from": "2025-03-06"}) == {"e4", "e5", "e6"}
    assert await names(to="2025-02-09") == {"e1"}
    assert await names(member_id=bob["id"], category="transport", to="2025-03-19") == {"e2"}
    assert await names(organisation_id=food["id"], kind="o2o") == {"e5"}

    base = f"/v1/timebanks/{slug}/exchanges"
    assert_problem(
        await api.get(base, params={"member_id": ann["id"], "organisation_id": food["id"]}),
        422,
        "validation_error",
    )
    assert_problem(await api.get(base, params={"kind": "gift"}), 422, "validation_error")
    assert_problem(await api.get(base, params={"limit": 0}), 422, "validation_error")
    assert_problem(await api.get(base, params={"limit": 501}), 422, "validation_error")

    full = await list_exchanges(api, slug)
    pages: list[list[dict[str, Any]]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        r = await api.get(base, params=params)
        assert r.status_code == 200, r.text
        pages.append(r.json()["items"])
        if r.json()["next_cursor"] is None:
            break
        params = {"limit": 2, "cursor": r.json()["next_cursor"]}
    assert [len(p) for p in pages] == [2, 2, 2]
    assert [e for p in pages for e in p] == full

    # Stable under inserts: an exchange recorded mid-walk shows up once, at the end.
    r = await api.get(base, params={"limit": 4})
    assert r.status_code == 200, r.text
    head = r.json()
    late = await record(api, slug, simple(ann, cat, 15, occurred_on="2025-01-01"))
    r = await api.get(base, params={"limit": 4, "cursor": head["next_cursor"]})
    tail = r.json()
    assert tail["next_cursor"] is None
    assert [e["id"] for e in head["items"] + tail["items"]] == [e["id"] for e in full] + [
        late["id"]
    ]

    # Filtered pages: the member's exchanges two at a time.
    r = await api.get(base, params={"member_id": bob["id"], "limit": 2})
    first = r.json()
    assert len(first["items"]) == 2 and first["next_cursor"] is not None
    r = await api.get(
        base, params={"member_id": bob["id"], "limit": 2, "cursor": first["next_cursor"]}
    )
    second = r.json()
    assert second["next_cursor"] is None
    assert {e["id"] for e in first["items"] + second["items"]} == {ids["e2"], ids["e4"], ids["e6"]}
    await assert_ledger_invariants(session_maker)


# --- 7. batches -------------------------------------------------------------------------------


async def test_non_atomic_batch_records_the_good_items_and_reports_each_bad_one(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    cat = await api.member(slug, "Cat")
    dan = await api.member(slug, "Dan")
    charity = await api.organisation(slug, "Food Bank")
    await set_limits(api, slug, cat["account_id"], min_balance_minutes=-20)
    class_body = {
        "providers": [{"party": {"member_id": dan["id"]}, "minutes": 60}],
        "recipients": [
            {"party": {"member_id": ann["id"]}, "minutes": 30},
            {"party": {"member_id": cat["id"]}, "minutes": 30},
        ],
        "category": "learning-teaching",
    }
    items = [
        simple(bob, ann, 60, external_ref="sheet-7/1"),  # 201
        simple(bob, ann, 0),  # 422 minutes
        simple(ann, charity, 90, category="community-events"),  # 201
        simple(ann, bob, 30, category="astrology"),  # 422 category
        simple(bob, dan, 700),  # 409 dan −700
        class_body,  # 409 cat −30 < −20
        simple(ann, charity, 15, category="community-events", external_ref="sheet-7/2"),  # 201
    ]
    results = await batch(api, slug, items, atomic=False)
    assert [x["status"] for x in results] == [201, 422, 201, 422, 409, 409, 201]
    assert [x["error"]["code"] if "error" in x else None for x in results] == [
        None,
        "validation_error",
        None,
        "validation_error",
        "balance_limit_exceeded",
        "balance_limit_exceeded",
        None,
    ]
    assert results[3]["error"]["errors"] == [
        {"field": "category", "message": "unknown category 'astrology'"}
    ]
    recorded = [x["exchange"] for x in results if x["status"] == 201]
    assert all("exchange" not in x for x in results if x["status"] != 201)
    assert [(e["kind"], e["minutes"], e["external_ref"]) for e in recorded] == [
        ("p2p", 60, "sheet-7/1"),
        ("p2o", 90, None),
        ("p2o", 15, "sheet-7/2"),
    ]
    assert await exchange_ids(api, slug) == {e["id"] for e in recorded}
    # Ann was debited first inside the refused class; her debit was rolled back with it.
    assert await balances(api, slug, ann, bob, cat, dan) == [-60 + 90 + 15, 60, 0, 0]
    assert (await org_balance(api, slug, charity))["balance_minutes"] == -105
    await assert_ledger_invariants(session_maker)


async def test_atomic_batch_with_one_bad_item_records_nothing_and_aborts_the_others(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    charity = await api.organisation(slug, "Food Bank")
    good = [
        simple(bob, ann, 60, external_ref="sheet-8/1"),
        simple(ann, charity, 30, category="community-events", external_ref="sheet-8/2"),
    ]
    items = [*good, simple(charity, bob, 700, category="other"), simple(ann, bob, 10)]
    results = await batch(api, slug, items, atomic=True)
    assert [x["status"] for x in results] == [424, 424, 409, 424]
    assert [x["error"]["code"] for x in results] == [
        "batch_aborted",
        "batch_aborted",
        "balance_limit_exceeded",
        "batch_aborted",
    ]
    assert all("exchange" not in x for x in results)
    assert await list_exchanges(api, slug) == []
    assert await balances(api, slug, ann, bob) == [0, 0]
    assert (await org_balance(api, slug, charity))["balance_minutes"] == 0

    results = await batch(api, slug, [good[0], {**good[1], "minutes": -5}], atomic=True)
    assert [(x["status"], x["error"]["code"]) for x in results] == [
        (424, "batch_aborted"),
        (422, "validation_error"),
    ]
    assert await list_exchanges(api, slug) == []

    # The refused lines were not stored: the corrected sheet goes in whole.
    results = await batch(api, slug, [*good, simple(ann, bob, 10)], atomic=True)
    assert [x["status"] for x in results] == [201, 201, 201]
    assert await balances(api, slug, ann, bob) == [-60 + 30 + 10, 60 - 10]
    assert (await org_balance(api, slug, charity))["balance_minutes"] == -30
    assert await exchange_ids(api, slug) == {x["exchange"]["id"] for x in results}
    await assert_ledger_invariants(session_maker)


@pytest.mark.parametrize("atomic", [False, True])
async def test_refused_batch_line_leaves_its_external_ref_free_for_the_corrected_line(
    api: Api, session_maker: Maker, atomic: bool
) -> None:
    """Issue 18, found by the state machine: lines refused by a limit record nothing, so the
    broker's corrected copy of line 3 (same ref, ``override_limits``) is recorded."""
    slug = (await api.timebank(member_min_balance_minutes=0))["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    items = [
        simple(ann, bob, 1),
        simple(ann, bob, 1),
        simple(ann, bob, 1, external_ref="sheet/1"),
        simple(
            ann,
            bob,
            1,
            external_ref="sheet/1",
            override_limits=True,
            override_reason="typed from the corrected sheet",
        ),
    ]
    results = await batch(api, slug, items, atomic=atomic)
    codes = [(x["status"], x["error"]["code"] if "error" in x else None) for x in results]
    refused = [(409, "balance_limit_exceeded")] * 3
    if atomic:  # the batch's rule for a refused item: nothing is recorded
        assert codes == [*refused, (424, "batch_aborted")]
        assert await list_exchanges(api, slug) == []
        assert await balances(api, slug, ann, bob) == [0, 0]
    else:
        assert codes == [*refused, (201, None)]
        assert results[3]["exchange"]["external_ref"] == "sheet/1"
        assert await balances(api, slug, ann, bob) == [1, -1]
        # the ref is now taken: a later line with it is a duplicate
        again = await batch(api, slug, [items[3]], atomic=False)
        assert [(x["status"], x["error"]["code"]) for x in again] == [(409, "duplicate")]
    await assert_ledger_invariants(session_maker)


async def test_a_large_sheet_goes_in_whole_in_ledger_order(api: Api, session_maker: Maker) -> None:
    """A sheet large enough to be written by COPY on PostgreSQL: every line in order,
    the running balances in ledger order, refused lines skipped, the ledger still whole."""
    slug = (await api.timebank(member_min_balance_minutes=-300))["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    items = [simple(ann, bob, 10, external_ref=f"big/{i}") for i in range(120)]
    items[5] = simple(ann, bob, 10, external_ref="big/4")  # taken by line 4 just before
    results = await batch(api, slug, items, atomic=False)
    statuses = [x["status"] for x in results]
    # Bob may go down to −300: thirty lines of 10 minutes (60 postings), then his limit
    assert statuses.count(201) == 30 and statuses[5] == 409
    assert results[5]["error"]["code"] == "duplicate"
    assert {x["error"]["code"] for x in results[31:]} == {"balance_limit_exceeded"}
    assert await balances(api, slug, ann, bob) == [300, -300]
    entries = (await statement(api, slug, ann, limit=100))["items"]
    assert [e["balance_after_minutes"] for e in entries] == list(range(10, 301, 10))
    await assert_ledger_invariants(session_maker)


async def test_external_ref_stops_a_sheet_line_being_entered_twice_across_batch_retries(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    cat = await api.member(slug, "Cat")
    sheet = [
        simple(bob, ann, 90, external_ref="sheet-2025-11/14"),
        simple(cat, ann, 30, external_ref="sheet-2025-11/15"),
    ]
    first = await batch(api, slug, sheet, atomic=False)
    assert [x["status"] for x in first] == [201, 201]
    assert await balances(api, slug, ann, bob, cat) == [-120, 90, 30]

    retry = await batch(api, slug, sheet, atomic=False)
    assert [(x["status"], x["error"]["code"]) for x in retry] == [
        (409, "duplicate"),
        (409, "duplicate"),
    ]
    assert await balances(api, slug, ann, bob, cat) == [-120, 90, 30]

    twice = await batch(
        api,
        slug,
        [
            simple(ann, cat, 20, external_ref="sheet-2025-11/16"),
            simple(ann, cat, 20, external_ref="sheet-2025-11/16"),
        ],
        atomic=False,
    )
    assert [x["status"] for x in twice] == [201, 409]
    assert twice[1]["error"]["code"] == "duplicate"

    atomic_retry = await batch(
        api, slug, [simple(bob, cat, 5, external_ref="sheet-2025-11/17"), sheet[0]], atomic=True
    )
    assert [(x["status"], x["error"]["code"]) for x in atomic_retry] == [
        (424, "batch_aborted"),
        (409, "duplicate"),
    ]
    await refused(api, slug, sheet[1], 409, "duplicate")

    refs = sorted(e["external_ref"] for e in await list_exchanges(api, slug))
    assert refs == ["sheet-2025-11/14", "sheet-2025-11/15", "sheet-2025-11/16"]
    assert await balances(api, slug, ann, bob, cat) == [-100, 90, 10]

    # external_ref is unique per time bank: another bank's sheet may use the same line number.
    other = (await api.timebank())["slug"]
    eve = await api.member(other, "Eve")
    fay = await api.member(other, "Fay")
    elsewhere = await record(api, other, simple(eve, fay, 90, external_ref="sheet-2025-11/14"))
    assert elsewhere["external_ref"] == "sheet-2025-11/14"
    await assert_ledger_invariants(session_maker)


# --- 8. member status -------------------------------------------------------------------------


async def test_suspended_member_is_refused_new_exchanges_but_their_old_one_can_be_reversed(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    cat = await api.member(slug, "Cat")
    lift = await record(api, slug, simple(bob, ann, 60))

    m = await api.ok("patch", f"/v1/timebanks/{slug}/members/{ann['id']}", {"status": "suspended"})
    assert m["status"] == "suspended"
    await refused(api, slug, simple(bob, ann, 30), 409, "party_inactive")
    await refused(api, slug, simple(ann, bob, 30), 409, "party_inactive")
    await refused(api, slug, group(cat, 40, [(bob, 20), (ann, 20)]), 409, "party_inactive")
    results = await batch(api, slug, [simple(ann, cat, 15)], atomic=False)
    assert (results[0]["status"], results[0]["error"]["code"]) == (409, "party_inactive")
    assert await balances(api, slug, ann, bob, cat) == [-60, 60, 0]

    r = await reverse(api, slug, lift["id"], "Lift did not happen")
    assert r.status_code == 201, r.text
    assert postings(r.json()) == {bob["account_id"]: -60, ann["account_id"]: 60}
    assert await balances(api, slug, ann, bob, cat) == [0, 0, 0]
    assert await figures(api, slug, ann) == (0, 60, 60)

    await api.ok("patch", f"/v1/timebanks/{slug}/members/{ann['id']}", {"status": "active"})
    await record(api, slug, simple(ann, cat, 45))
    assert await balances(api, slug, ann, bob, cat) == [45, 0, -45]
    await assert_ledger_invariants(session_maker)


async def test_member_who_leaves_keeps_their_balance_and_takes_no_new_exchanges(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    cat = await api.member(slug, "Cat", joined_on="2025-01-01")
    dan = await api.member(slug, "Dan")
    gardening = await record(
        api, slug, simple(cat, dan, 90, category="home-garden", occurred_on="2025-05-01")
    )
    await record(api, slug, simple(dan, cat, 30, occurred_on="2025-05-02"))
    assert await figures(api, slug, cat) == (60, 90, 30)

    m = await api.ok(
        "patch",
        f"/v1/timebanks/{slug}/members/{cat['id']}",
        {"status": "left", "left_on": "2025-06-30"},
    )
    assert (m["status"], m["left_on"]) == ("left", "2025-06-30")
    assert await figures(api, slug, cat) == (60, 90, 30)
    st = await statement(api, slug, cat)
    assert st["closing_balance_minutes"] == 60
    assert [e["balance_after_minutes"] for e in st["items"]] == [90, 60]
    await refused(api, slug, simple(dan, cat, 10), 409, "party_inactive")
    await refused(api, slug, simple(cat, dan, 10), 409, "party_inactive")
    assert await balances(api, slug, cat, dan) == [60, -60]

    r = await reverse(api, slug, gardening["id"], "Logged for the wrong member")
    assert r.status_code == 201, r.text
    assert await balances(api, slug, cat, dan) == [-30, 30]
    await assert_ledger_invariants(session_maker)


async def test_broker_settles_a_leavers_balance_with_a_pool_grant_and_a_donation(
    api: Api, session_maker: Maker
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    eve = await api.member(slug, "Eve")
    fay = await api.member(slug, "Fay")
    await record(api, slug, simple(fay, eve, 150))  # Eve is 150 minutes in debt
    await record(api, slug, simple(eve, fay, 30))  # and now 120
    await api.ok("patch", f"/v1/timebanks/{slug}/members/{eve['id']}", {"status": "left"})
    await refused(api, slug, simple(fay, eve, 10), 409, "party_inactive")

    grant = await record(api, slug, pool_grant(tb, eve, 120, description="Settle on leaving"))
    assert grant["kind"] == "pool_grant"
    assert await balances(api, slug, eve) == [0]

    # Fay leaves with 120 minutes in hand and gives them to the pool.
    await api.ok("patch", f"/v1/timebanks/{slug}/members/{fay['id']}", {"status": "left"})
    donation = await record(api, slug, pool_donation(tb, fay, 120))
    assert donation["kind"] == "pool_donation"
    assert await balances(api, slug, fay) == [0]
    assert await timebank_balance_sum(session_maker, tb) == (0, 3)
    await assert_ledger_invariants(session_maker)
