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

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Api, simple
from timebank.audit.models import AuditEvent
from timebank.ledger.models import Account, Exchange, ExchangeStatus, Posting

LONDON = ZoneInfo("Europe/London")
CSV_COLUMNS = [
    "entry_id", "exchange_id", "kind", "occurred_on", "recorded_at", "minutes",
    "balance_after_minutes", "counterparties", "category", "description",
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


async def refused(api: Api, slug: str, body: dict[str, Any], status: int, code: str) -> dict[str, Any]:
    return assert_problem(await api.exchange(slug, body), status, code)


async def reverse(api: Api, slug: str, exchange_id: str, reason: str = "Entered in error") -> Any:
    return await api.post(f"/v1/timebanks/{slug}/exchanges/{exchange_id}/reverse", json={"reason": reason})


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


async def batch(api: Api, slug: str, items: list[dict[str, Any]], atomic: bool) -> list[dict[str, Any]]:
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
    return {"provider": {"member_id": m["id"]}, "recipient": {"account_id": tb["pool_account_id"]},
            "minutes": minutes, **kw}


def pool_donation(tb: dict[str, Any], m: dict[str, Any], minutes: int, **kw: Any) -> dict[str, Any]:
    return {"provider": {"account_id": tb["pool_account_id"]}, "recipient": {"member_id": m["id"]},
            "minutes": minutes, **kw}


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
            (await s.execute(
                select(Posting.account_id, func.sum(Posting.minutes)).group_by(Posting.account_id)
            )).all()
        )
        earned = dict(
            (await s.execute(
                select(Posting.account_id, func.sum(Posting.minutes))
                .where(Posting.minutes > 0).group_by(Posting.account_id)
            )).all()
        )
        spent = dict(
            (await s.execute(
                select(Posting.account_id, -func.sum(Posting.minutes))
                .where(Posting.minutes < 0).group_by(Posting.account_id)
            )).all()
        )
        accounts = (await s.execute(select(Account))).scalars().all()
        assert accounts
        for acc in accounts:
            assert acc.balance_minutes == int(sums.get(acc.id, 0)), acc.id
            assert acc.earned_minutes == int(earned.get(acc.id, 0)), acc.id
            assert acc.spent_minutes == int(spent.get(acc.id, 0)), acc.id
        unbalanced = (await s.execute(
            select(Posting.exchange_id, func.sum(Posting.minutes))
            .group_by(Posting.exchange_id).having(func.sum(Posting.minutes) != 0)
        )).all()
        assert unbalanced == []
        assert (await s.execute(select(func.count()).where(Posting.minutes == 0))).scalar_one() == 0
        lines = dict(
            (await s.execute(
                select(Posting.exchange_id, func.count()).group_by(Posting.exchange_id)
            )).all()
        )
        for ex_id, status in (await s.execute(select(Exchange.id, Exchange.status))).all():
            if status is ExchangeStatus.recorded:
                assert lines.get(ex_id, 0) >= 2, ex_id
            else:
                assert lines.get(ex_id, 0) == 0, ex_id
        per_bank = (await s.execute(
            select(Account.timebank_id, func.sum(Account.balance_minutes))
            .group_by(Account.timebank_id).having(func.sum(Account.balance_minutes) != 0)
        )).all()
        assert per_bank == []
        # balance_after_minutes is the running total of the account in ledger order.
        running: dict[Any, int] = {}
        for acc_id, minutes, after in (await s.execute(
            select(Posting.account_id, Posting.minutes, Posting.balance_after_minutes)
            .order_by(Posting.id)
        )).all():
            running[acc_id] = running.get(acc_id, 0) + minutes
            assert after == running[acc_id], acc_id


async def timebank_balance_sum(session_maker: Maker, tb: dict[str, Any]) -> tuple[int, int]:
    """(Σ balances, number of accounts) of one time bank, by SQL on accounts."""
    async with session_maker() as s:
        total, n = (await s.execute(
            select(func.coalesce(func.sum(Account.balance_minutes), 0), func.count())
            .where(Account.timebank_id == uuid.UUID(tb["id"]))
        )).one()
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

    volunteering = await record(api, slug, simple(
        ann, charity, 180, category="community-events", occurred_on="2025-03-03",
        description="Sorting donations",
    ))
    assert volunteering["kind"] == "p2o"
    assert volunteering["minutes"] == 180
    assert volunteering["category"] == "community-events"
    assert volunteering["occurred_on"] == "2025-03-03"
    assert postings(volunteering) == {ann["account_id"]: 180, charity["account_id"]: -180}
    assert volunteering["reverses"] is None and volunteering["reversed_by"] is None

    lift = await record(api, slug, simple(
        bob, ann, 120, category="transport", occurred_on="2025-03-10",
        description="Lift to the hospital",
    ))
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
    assert [(e["exchange_id"], e["kind"], e["occurred_on"], e["minutes"],
             e["balance_after_minutes"], e["counterparties"], e["category"], e["description"])
            for e in items[:2]] == [
        (volunteering["id"], "p2o", "2025-03-03", 180, 180, [cp(charity)], "community-events",
         "Sorting donations"),
        (lift["id"], "p2p", "2025-03-10", -120, 60, [cp(bob)], "transport",
         "Lift to the hospital"),
    ]
    rev_entry = items[2]
    assert (rev_entry["exchange_id"], rev_entry["kind"], rev_entry["minutes"],
            rev_entry["balance_after_minutes"], rev_entry["counterparties"]) == (
        reversal["id"], "reversal", 120, 180, [cp(bob)])
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
    await assert_ledger_invariants(session_maker)


# --- 2. group exchanges --------------------------------------------------------------------


def group(provider: dict[str, Any], provider_minutes: int,
          recipients: list[tuple[dict[str, Any], int]], **kw: Any) -> dict[str, Any]:
    return {
        "providers": [{"party": {"member_id": provider["id"]}, "minutes": provider_minutes}],
        "recipients": [{"party": {"member_id": m["id"]}, "minutes": n} for m, n in recipients],
        "category": "learning-teaching", **kw,
    }


async def test_class_of_one_tutor_and_five_learners_is_one_p2p_exchange_with_six_postings(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    tutor = await api.member(slug, "Tess Tutor")
    learners = [await api.member(slug, f"Learner {i}") for i in range(1, 6)]

    ex = await record(api, slug, group(tutor, 120, [(m, 24) for m in learners],
                                       occurred_on="2025-05-01", description="Spanish class"))
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
    await assert_ledger_invariants(session_maker)


async def test_group_exchange_records_nothing_when_one_learner_would_break_their_limit(
    api: Api, session_maker: Maker
) -> None:
    slug = (await api.timebank())["slug"]
    tutor = await api.member(slug, "Tess Tutor")
    learners = [await api.member(slug, f"Learner {i}") for i in range(1, 6)]
    helper = await api.member(slug, "Hal Helper")
    earlier = await record(api, slug, simple(helper, learners[3], 590, occurred_on="2025-04-01"))

    body = await refused(api, slug, group(tutor, 120, [(m, 24) for m in learners]),
                         409, "balance_limit_exceeded")
    assert learners[3]["account_id"] in body["detail"]
    # All or nothing: the tutor's credit and the other learners' debits were not kept.
    assert await balances(api, slug, tutor, *learners, helper) == [0, 0, 0, 0, -590, 0, 590]
    assert await exchange_ids(api, slug) == {earlier["id"]}
    assert (await statement(api, slug, tutor))["items"] == []

    ok = await record(api, slug, group(tutor, 120, [(m, 30) for i, m in enumerate(learners) if i != 3]))
    assert ok["minutes"] == 120 and len(ok["postings"]) == 5
    assert await balances(api, slug, tutor, *learners, helper) == [120, -30, -30, -30, -590, -30, 590]
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
    assert (got["balance_minutes"], got["min_balance_minutes"], got["max_balance_minutes"]) == (-300, -200, None)
    b = await member_balance(api, slug, ann)
    assert (b["min_balance_minutes"], b["max_balance_minutes"]) == (-200, None)

    await refused(api, slug, simple(bob, ann, 1), 409, "balance_limit_exceeded")      # −301: further out
    await record(api, slug, simple(ann, bob, 60))                                      # −240: back towards
    await refused(api, slug, simple(bob, ann, 10), 409, "balance_limit_exceeded")     # −250: further out again
    await record(api, slug, simple(ann, bob, 100))                                     # −140: inside
    await record(api, slug, simple(bob, ann, 60))                                      # −200: on the limit
    await refused(api, slug, simple(bob, ann, 1), 409, "balance_limit_exceeded")      # −201
    assert await balances(api, slug, ann, bob) == [-200, 200]

    # The same on the max side: Bob is above a newly set maximum of 100.
    acc = await set_limits(api, slug, bob["account_id"], max_balance_minutes=100)
    assert (acc["balance_minutes"], acc["min_balance_minutes"], acc["max_balance_minutes"]) == (200, -600, 100)
    await refused(api, slug, simple(bob, ann, 1), 409, "balance_limit_exceeded")      # 201: further out
    await record(api, slug, simple(ann, bob, 50))                                      # 150: back towards
    assert await balances(api, slug, ann, bob) == [-150, 150]
    await refused(api, slug, simple(bob, ann, 1), 409, "balance_limit_exceeded")      # 151 > 150
    await record(api, slug, simple(ann, bob, 50))                                      # 100: on the limit
    assert await balances(api, slug, ann, bob) == [-100, 100]
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


async def test_organisation_accounts_are_unbounded_by_default(api: Api, session_maker: Maker) -> None:
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


async def test_use_defaults_restores_the_time_bank_default_limits(api: Api, session_maker: Maker) -> None:
    slug = (await api.timebank())["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    acc = await set_limits(api, slug, ann["account_id"], min_balance_minutes=-60, max_balance_minutes=60)
    assert (acc["min_balance_minutes"], acc["max_balance_minutes"], acc["custom_limits"]) == (-60, 60, True)
    await refused(api, slug, simple(bob, ann, 61), 409, "balance_limit_exceeded")
    await refused(api, slug, simple(ann, bob, 61), 409, "balance_limit_exceeded")

    acc = await set_limits(api, slug, ann["account_id"], use_defaults=True)
    assert (acc["min_balance_minutes"], acc["max_balance_minutes"], acc["custom_limits"]) == (-600, None, False)
    await record(api, slug, simple(bob, ann, 61))
    await record(api, slug, simple(bob, ann, 539))
    await refused(api, slug, simple(bob, ann, 1), 409, "balance_limit_exceeded")
    assert await balances(api, slug, ann, bob) == [-600, 600]
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

    tb = await api.ok("patch", f"/v1/timebanks/{slug}", {"settings": {
        "member_min_balance_minutes": -120, "member_max_balance_minutes": 300,
        "organisation_min_balance_minutes": -500,
    }})
    assert tb["settings"]["member_min_balance_minutes"] == -120
    assert tb["settings"]["member_max_balance_minutes"] == 300
    assert tb["settings"]["organisation_min_balance_minutes"] == -500
    assert tb["settings"]["organisation_max_balance_minutes"] is None
    b = await member_balance(api, slug, ann)
    assert (b["min_balance_minutes"], b["max_balance_minutes"]) == (-120, 300)
    assert (await account(api, slug, hall["account_id"]))["min_balance_minutes"] == -500
    assert (await account(api, slug, own["account_id"]))["min_balance_minutes"] == -1000

    await refused(api, slug, simple(bob, ann, 121), 409, "balance_limit_exceeded")  # ann −121
    await record(api, slug, simple(bob, ann, 120))                                   # ann −120, bob 120
    await refused(api, slug, simple(bob, hall, 181), 409, "balance_limit_exceeded")  # bob 301 > 300
    await record(api, slug, simple(bob, hall, 180))                                  # bob 300, hall −180
    await refused(api, slug, simple(own, hall, 321), 409, "balance_limit_exceeded")  # hall −501
    await record(api, slug, simple(own, hall, 320))                                  # hall −500, own 320
    await record(api, slug, simple(hall, own, 1000))                                 # own −680 (own −1000)
    assert await balances(api, slug, ann, bob, own) == [-120, 300, -680]
    assert (await org_balance(api, slug, hall))["balance_minutes"] == 500

    # Back to an unbounded member minimum: null is a valid setting.
    tb = await api.ok("patch", f"/v1/timebanks/{slug}", {"settings": {"member_min_balance_minutes": None}})
    assert tb["settings"]["member_min_balance_minutes"] is None
    await record(api, slug, simple(hall, ann, 1000))
    assert await balances(api, slug, ann, bob, own) == [-1120, 300, -680]
    assert (await org_balance(api, slug, hall))["balance_minutes"] == 1500
    await assert_ledger_invariants(session_maker)
