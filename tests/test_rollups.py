"""The report rollups (activity_months, category_months) are maintained by the database in
the transaction that records an exchange, and always equal a recomputation from the postings:
after every kind of write — simple and group exchanges, pool grants, confirmed, rejected and
cancelled proposals, reversals, erasure — and after a refused write leaves nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.conftest import Api, party, simple
from tests.rollup_checks import assert_rollups_ok
from tests.test_concurrency import _assert_ledger_consistent
from timebank.config import Settings
from timebank.db import create_engine


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(settings)
    yield eng
    await eng.dispose()


async def test_rollups_follow_every_kind_of_write(api: Api, engine: AsyncEngine) -> None:
    tb = await api.timebank(member_min_balance_minutes=-1000)
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    cat = await api.member(slug, "Cat")
    shed = await api.organisation(slug, "Shed")
    pool = {"pool_account_id": tb["pool_account_id"]}
    url = f"/v1/timebanks/{slug}/exchanges"
    last_month = (date.today().replace(day=1) - timedelta(days=3)).isoformat()
    lift = await api.ok("post", url, simple(ann, bob, 90, occurred_on=last_month))
    await api.ok("post", url, simple(ann, shed, 180, category="community-events"))
    await api.ok("post", url, simple(shed, cat, 60, category="care-support"))
    await api.ok(
        "post",
        url,
        {
            "providers": [{"party": party(cat), "minutes": 120}],
            "recipients": [
                {"party": party(ann), "minutes": 60},
                {"party": party(bob), "minutes": 60},
            ],
            "category": "learning-teaching",
        },
    )
    await api.ok("post", url, {"provider": party(bob), "recipient": party(pool), "minutes": 30})
    await assert_rollups_ok(engine)

    bob_key = api.as_key(await api.key(slug, "member", member_id=bob["id"]))
    proposal = await bob_key.ok("post", url, simple(bob, ann, 45, category="transport"))
    await assert_rollups_ok(engine)  # pending: not counted yet
    await api.ok("post", f"{url}/{proposal['id']}/confirm", status=200)
    refused = await bob_key.ok("post", url, simple(bob, cat, 15, category="transport"))
    await api.ok("post", f"{url}/{refused['id']}/reject", {"reason": "no"}, status=200)
    cancelled = await bob_key.ok("post", url, simple(bob, cat, 15, category="transport"))
    await bob_key.ok("post", f"{url}/{cancelled['id']}/cancel", status=200)
    await assert_rollups_ok(engine)

    await api.ok("post", f"{url}/{lift['id']}/reverse", {"reason": "twice on the sheet"})
    await api.ok("post", f"{url}/{proposal['id']}/reverse", {"reason": "mistake"})
    over = await api.exchange(slug, simple(cat, ann, 5000, category="transport"))
    assert over.status_code == 422  # over max_exchange_minutes: nothing written
    await api.ok("post", f"/v1/timebanks/{slug}/members/{bob['id']}/erase", status=200)
    await assert_rollups_ok(engine)
    await _assert_ledger_consistent(async_sessionmaker(engine, class_=AsyncSession))


ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("exchange"),
            st.integers(0, 4),
            st.integers(0, 4),
            st.integers(1, 300),
            st.integers(0, 400),
            st.sampled_from(["transport", "other"]),
        ),
        st.tuples(st.just("reverse"), st.integers(0, 30)),
    ),
    min_size=1,
    max_size=15,
)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=ops)
async def test_rollups_equal_a_recomputation_after_any_history(
    api: Api, engine: AsyncEngine, history: list[tuple[Any, ...]]
) -> None:
    """Days spread over 13 months (month boundaries), reversals of anything (a second
    reversal or a reversal of a reversal is refused and must leave the rollups alone)."""
    tb = await api.timebank(member_min_balance_minutes=-1_000_000)
    slug = tb["slug"]
    people = [await api.member(slug, f"M{i}") for i in range(3)]
    people += [await api.organisation(slug, f"O{i}") for i in range(2)]
    done: list[str] = []
    url = f"/v1/timebanks/{slug}/exchanges"
    for op in history:
        if op[0] == "exchange":
            _, p, r, minutes, ago, category = op
            if p == r:
                continue
            day = (date.today() - timedelta(days=ago)).isoformat()
            body = simple(people[p], people[r], minutes, category=category, occurred_on=day)
            resp = await api.exchange(slug, body)
            assert resp.status_code == 201, resp.text
            done.append(resp.json()["id"])
        elif done:
            target = done[op[1] % len(done)]
            resp = await api.post(f"{url}/{target}/reverse", json={"reason": "x"})
            if resp.status_code == 201:
                done.append(resp.json()["id"])
    await assert_rollups_ok(engine)
