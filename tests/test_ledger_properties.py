"""Property-based test: random histories of exchanges, group exchanges, reversals and limit
changes, checked against a small Python model of the ledger after every history."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Api

N_MEMBERS = 4
LIMIT = -300

simple_op = st.tuples(
    st.just("simple"),
    st.integers(0, N_MEMBERS - 1),
    st.integers(0, N_MEMBERS - 1),
    st.integers(1, 400),
)
group_op = st.tuples(
    st.just("group"),
    st.integers(0, N_MEMBERS - 1),
    st.lists(st.integers(1, 200), min_size=2, max_size=3),
)
reverse_op = st.tuples(st.just("reverse"), st.integers(0, 50))
ops = st.lists(st.one_of(simple_op, group_op, reverse_op), min_size=1, max_size=12)


async def check_invariants(sm: async_sessionmaker[AsyncSession], tb_id: str) -> None:
    async with sm() as s:
        # Balances of every account of the bank sum to zero; stored balance = Σ postings.
        tb_hex = tb_id.replace("-", "")
        accounts = (
            await s.execute(
                text(
                    "SELECT a.id, a.balance_minutes, a.earned_minutes, a.spent_minutes, "
                    "(SELECT coalesce(sum(p.minutes), 0) FROM postings p WHERE p.account_id = a.id) "
                    "FROM accounts a WHERE CAST(a.timebank_id AS TEXT) IN (:a, :b)"
                ),
                {"a": tb_id, "b": tb_hex},
            )
        ).all()
        assert accounts
        assert sum(a[1] for a in accounts) == 0
        for _, balance, earned, spent, posted in accounts:
            assert balance == posted
            assert balance == earned - spent
        unbalanced = (
            await s.execute(
                text(
                    "SELECT exchange_id FROM postings GROUP BY exchange_id HAVING sum(minutes) <> 0"
                )
            )
        ).all()
        assert unbalanced == []


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=ops)
async def test_random_histories_keep_the_ledger_consistent_with_a_model(
    api: Api, session_maker: async_sessionmaker[AsyncSession], history: list[Any]
) -> None:
    tb = await api.timebank(member_min_balance_minutes=LIMIT)
    slug = tb["slug"]
    members = [await api.member(slug, f"M{i}") for i in range(N_MEMBERS)]
    model = [0] * N_MEMBERS
    recorded: list[tuple[str, dict[int, int]]] = []  # exchange id, deltas by member index
    reversed_ids: set[str] = set()

    def allowed(deltas: dict[int, int]) -> bool:
        return all(d >= 0 or model[i] + d >= LIMIT for i, d in deltas.items())

    for op in history:
        if op[0] == "simple":
            _, p, r, minutes = op
            body = {
                "provider": {"member_id": members[p]["id"]},
                "recipient": {"member_id": members[r]["id"]},
                "minutes": minutes,
                "category": "other",
            }
            resp = await api.exchange(slug, body)
            if p == r:
                assert resp.status_code == 422
                continue
            deltas = {p: minutes, r: -minutes}
        elif op[0] == "group":
            _, p, legs = op
            learners = [i for i in range(N_MEMBERS) if i != p][: len(legs)]
            body = {
                "providers": [{"party": {"member_id": members[p]["id"]}, "minutes": sum(legs)}],
                "recipients": [
                    {"party": {"member_id": members[i]["id"]}, "minutes": m}
                    for i, m in zip(learners, legs, strict=True)
                ],
                "category": "learning-teaching",
            }
            resp = await api.exchange(slug, body)
            deltas = {p: sum(legs), **{i: -m for i, m in zip(learners, legs, strict=True)}}
        else:
            if not recorded:
                continue
            ex_id, deltas0 = recorded[op[1] % len(recorded)]
            resp = await api.post(
                f"/v1/timebanks/{slug}/exchanges/{ex_id}/reverse", json={"reason": "test"}
            )
            if ex_id in reversed_ids:
                assert resp.status_code == 409
                assert resp.json()["code"] == "already_reversed"
                continue
            assert resp.status_code == 201, resp.text
            reversed_ids.add(ex_id)
            for i, d in deltas0.items():
                model[i] -= d
            continue
        if allowed(deltas):
            assert resp.status_code == 201, resp.text
            recorded.append((resp.json()["id"], deltas))
            for i, d in deltas.items():
                model[i] += d
        else:
            assert resp.status_code == 409, resp.text
            assert resp.json()["code"] == "balance_limit_exceeded"

    for i, m in enumerate(members):
        assert await api.balance(slug, m["id"]) == model[i]
        statement = await api.ok(
            "get", f"/v1/timebanks/{slug}/members/{m['id']}/statement?limit=500"
        )
        running = 0
        for entry in statement["items"]:
            running += entry["minutes"]
            assert entry["balance_after_minutes"] == running
        assert statement["closing_balance_minutes"] == model[i]
    await check_invariants(session_maker, tb["id"])
