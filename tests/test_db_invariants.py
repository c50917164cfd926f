"""The database itself refuses ledger states that break SPEC §2's invariants, whatever the
application does: statements here go straight to the database, bypassing the service layer.

PostgreSQL checks balance in a deferred constraint trigger at COMMIT; SQLite checks it when
the exchange row is inserted after its postings. So every write here is made like
``post_exchange`` makes it — postings first, the exchange row last, one transaction — and a
refusal may surface at the statement or at the commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import Executable, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Api, simple
from timebank.ledger.models import Account, Exchange, ExchangeKind, ExchangeStatus, Posting

Maker = async_sessionmaker[AsyncSession]


@dataclass
class Ledger:
    slug: str
    timebank_id: uuid.UUID
    ann: uuid.UUID  # account ids
    bob: uuid.UUID
    recorded: uuid.UUID  # an exchange recorded through the API: Ann +60, Bob -60
    posting_ids: list[int]
    category_id: uuid.UUID  # that exchange's: a service exchange always has a category


@pytest.fixture
async def ledger(api: Api, session_maker: Maker) -> Ledger:
    tb = await api.timebank()
    ann = await api.member(tb["slug"], "Ann")
    bob = await api.member(tb["slug"], "Bob")
    ex = await api.ok("post", f"/v1/timebanks/{tb['slug']}/exchanges", simple(ann, bob, 60))
    exchange_id = uuid.UUID(ex["id"])
    async with session_maker() as s:
        ids = list(
            (
                await s.execute(
                    select(Posting.id)
                    .where(Posting.exchange_id == exchange_id)
                    .order_by(Posting.id)
                )
            ).scalars()
        )
        category_id = (
            await s.execute(select(Exchange.category_id).where(Exchange.id == exchange_id))
        ).scalar_one()
    assert len(ids) == 2
    return Ledger(
        tb["slug"],
        uuid.UUID(tb["id"]),
        uuid.UUID(ann["account_id"]),
        uuid.UUID(bob["account_id"]),
        exchange_id,
        ids,
        category_id,
    )


def postings(exchange_id: uuid.UUID, *legs: tuple[uuid.UUID, int]) -> Executable:
    return insert(Posting).values(
        [
            {
                "exchange_id": exchange_id,
                "account_id": account,
                "minutes": minutes,
                "balance_after_minutes": 0,
            }
            for account, minutes in legs
        ]
    )


def exchange_row(
    lg: Ledger,
    exchange_id: uuid.UUID,
    minutes: int,
    status: ExchangeStatus = ExchangeStatus.recorded,
    **extra: Any,
) -> Executable:
    return insert(Exchange).values(exchange_values(lg, exchange_id, minutes, status, **extra))


def exchange_values(
    lg: Ledger,
    exchange_id: uuid.UUID,
    minutes: int,
    status: ExchangeStatus = ExchangeStatus.recorded,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": exchange_id,
        "timebank_id": lg.timebank_id,
        "status": status,
        "kind": ExchangeKind.p2p,
        "category_id": lg.category_id,
        "minutes": minutes,
        "occurred_on": date.today(),
        "recorded_at": datetime.now(UTC),
        "logged_by_role": "admin",
        **extra,
    }


async def commit(session_maker: Maker, *statements: Executable | str, **params: Any) -> None:
    """Run the statements in one transaction and commit it."""
    async with session_maker() as s:
        conn = await s.connection()
        try:
            for stmt in statements:
                await conn.execute(text(stmt) if isinstance(stmt, str) else stmt, params)
            await s.commit()
        except DBAPIError:
            # A failed COMMIT leaves SQLite's transaction open and SQLAlchemy then skips the
            # pool's reset: discard the connection rather than hand it to the next check.
            await conn.invalidate()
            raise


async def assert_refused(
    session_maker: Maker, match: str, *statements: Executable | str, **params: Any
) -> None:
    with pytest.raises(IntegrityError, match=match):
        await commit(session_maker, *statements, **params)


async def postings_of(session_maker: Maker, exchange_id: uuid.UUID) -> list[tuple[uuid.UUID, int]]:
    async with session_maker() as s:
        rows = await s.execute(
            select(Posting.account_id, Posting.minutes)
            .where(Posting.exchange_id == exchange_id)
            .order_by(Posting.id)
        )
        return [(a, m) for a, m in rows.all()]


async def exchange_exists(session_maker: Maker, exchange_id: uuid.UUID) -> bool:
    async with session_maker() as s:
        n = await s.scalar(
            select(func.count()).select_from(Exchange).where(Exchange.id == exchange_id)
        )
        return bool(n)


# --- new exchanges ---------------------------------------------------------------------------


async def test_balanced_exchange_inserted_postings_first_is_accepted(
    ledger: Ledger, session_maker: Maker
) -> None:
    ex = uuid.uuid4()
    await commit(
        session_maker,
        postings(ex, (ledger.ann, 45), (ledger.bob, -45)),
        exchange_row(ledger, ex, 45),
    )
    assert await exchange_exists(session_maker, ex)
    assert await postings_of(session_maker, ex) == [(ledger.ann, 45), (ledger.bob, -45)]


async def test_unbalanced_exchange_is_refused(ledger: Ledger, session_maker: Maker) -> None:
    ex = uuid.uuid4()
    await assert_refused(
        session_maker,
        "unbalanced",
        postings(ex, (ledger.ann, 60), (ledger.bob, -30)),
        exchange_row(ledger, ex, 60),
    )
    assert not await exchange_exists(session_maker, ex)
    assert await postings_of(session_maker, ex) == []


async def test_single_posting_exchange_is_refused(ledger: Ledger, session_maker: Maker) -> None:
    ex = uuid.uuid4()
    await assert_refused(
        session_maker, "unbalanced", postings(ex, (ledger.ann, 60)), exchange_row(ledger, ex, 60)
    )
    assert await postings_of(session_maker, ex) == []


async def test_recorded_exchange_without_postings_is_refused(
    ledger: Ledger, session_maker: Maker
) -> None:
    ex = uuid.uuid4()
    await assert_refused(session_maker, "unbalanced", exchange_row(ledger, ex, 60))
    assert not await exchange_exists(session_maker, ex)


async def test_zero_posting_is_refused_even_in_a_balanced_exchange(
    ledger: Ledger, session_maker: Maker
) -> None:
    ex = uuid.uuid4()
    await assert_refused(
        session_maker,
        "minutes_nonzero",
        postings(ex, (ledger.ann, 60), (ledger.bob, -60), (ledger.bob, 0)),
        exchange_row(ledger, ex, 60),
    )
    assert await postings_of(session_maker, ex) == []


async def test_postings_without_an_exchange_row_are_refused_at_commit(
    ledger: Ledger, session_maker: Maker
) -> None:
    ex = uuid.uuid4()
    with pytest.raises(IntegrityError):
        await commit(session_maker, postings(ex, (ledger.ann, 60), (ledger.bob, -60)))
    assert await postings_of(session_maker, ex) == []


async def test_pending_exchange_with_unbalanced_postings_cannot_become_recorded(
    ledger: Ledger, session_maker: Maker
) -> None:
    ex = uuid.uuid4()
    await commit(session_maker, exchange_row(ledger, ex, 60, ExchangeStatus.pending))
    await assert_refused(
        session_maker,
        "unbalanced",
        postings(ex, (ledger.ann, 60)),
        update(Exchange).where(Exchange.id == ex).values(status=ExchangeStatus.recorded),
    )
    assert await postings_of(session_maker, ex) == []


@pytest.mark.postgres_only
async def test_pending_exchange_cannot_keep_postings_at_commit(
    ledger: Ledger, session_maker: Maker
) -> None:
    """Only PostgreSQL can check this: SQLite has no deferred triggers, and confirming a
    pending exchange must add its postings before the status changes."""
    ex = uuid.uuid4()
    await commit(session_maker, exchange_row(ledger, ex, 60, ExchangeStatus.pending))
    await assert_refused(
        session_maker, "not recorded", postings(ex, (ledger.ann, 60), (ledger.bob, -60))
    )
    assert await postings_of(session_maker, ex) == []


@pytest.mark.postgres_only
async def test_only_postings_added_to_a_proposal_are_checked_again_at_commit(
    ledger: Ledger, session_maker: Maker
) -> None:
    """0011: the deferred zero-sum check is queued only for a posting whose exchange
    already exists as a proposal (a confirmation); the database sets that mark itself,
    whatever an INSERT says, so it cannot be used to skip the check."""
    fresh = uuid.uuid4()
    claims_proposal = insert(Posting).values(
        [
            {
                "exchange_id": fresh,
                "account_id": account,
                "minutes": minutes,
                "balance_after_minutes": 0,
                "onto_pending": True,
            }
            for account, minutes in ((ledger.ann, 20), (ledger.bob, -20))
        ]
    )
    await commit(session_maker, claims_proposal, exchange_row(ledger, fresh, 20))
    proposal = uuid.uuid4()
    await commit(session_maker, exchange_row(ledger, proposal, 30, ExchangeStatus.pending))
    await commit(
        session_maker,
        postings(proposal, (ledger.ann, 30), (ledger.bob, -30)),
        update(Exchange).where(Exchange.id == proposal).values(status=ExchangeStatus.recorded),
    )
    async with session_maker() as s:
        marks = dict(
            (
                await s.execute(
                    select(Posting.exchange_id, Posting.onto_pending).where(
                        Posting.exchange_id.in_([fresh, proposal])
                    )
                )
            ).all()
        )
    assert marks == {fresh: False, proposal: True}
    # a trick to skip the check does not work either: a posting that claims not to be onto a
    # proposal but is, left on a pending exchange, is refused at commit
    pending = uuid.uuid4()
    await commit(session_maker, exchange_row(ledger, pending, 60, ExchangeStatus.pending))
    sneaky = insert(Posting).values(
        exchange_id=pending,
        account_id=ledger.ann,
        minutes=60,
        balance_after_minutes=0,
        onto_pending=False,
    )
    await assert_refused(session_maker, "not recorded", sneaky)
    assert await postings_of(session_maker, pending) == []


# --- recorded history is append-only -------------------------------------------------------------


async def test_update_of_a_posting_is_refused(ledger: Ledger, session_maker: Maker) -> None:
    await assert_refused(
        session_maker,
        "append-only",
        "UPDATE postings SET minutes = 90 WHERE id = :id",
        id=ledger.posting_ids[0],
    )
    assert await postings_of(session_maker, ledger.recorded) == [
        (ledger.ann, 60),
        (ledger.bob, -60),
    ]


async def test_update_of_both_postings_keeping_the_sum_is_refused(
    ledger: Ledger, session_maker: Maker
) -> None:
    await assert_refused(
        session_maker,
        "append-only",
        "UPDATE postings SET minutes = -minutes WHERE id IN (:a, :b)",
        a=ledger.posting_ids[0],
        b=ledger.posting_ids[1],
    )
    assert await postings_of(session_maker, ledger.recorded) == [
        (ledger.ann, 60),
        (ledger.bob, -60),
    ]


async def test_delete_of_a_posting_is_refused(ledger: Ledger, session_maker: Maker) -> None:
    await assert_refused(
        session_maker,
        "append-only",
        "DELETE FROM postings WHERE id = :id",
        id=ledger.posting_ids[1],
    )
    assert len(await postings_of(session_maker, ledger.recorded)) == 2


@pytest.mark.postgres_only
async def test_truncate_of_postings_is_refused(ledger: Ledger, session_maker: Maker) -> None:
    await assert_refused(session_maker, "append-only", "TRUNCATE postings CASCADE")
    assert len(await postings_of(session_maker, ledger.recorded)) == 2


async def test_adding_a_posting_to_a_recorded_exchange_is_refused(
    ledger: Ledger, session_maker: Maker
) -> None:
    # a balanced pair, so only the sealing rule can refuse it
    await assert_refused(
        session_maker, "sealed", postings(ledger.recorded, (ledger.ann, 10), (ledger.bob, -10))
    )
    assert await postings_of(session_maker, ledger.recorded) == [
        (ledger.ann, 60),
        (ledger.bob, -60),
    ]


async def test_update_of_a_recorded_exchanges_minutes_is_refused(
    ledger: Ledger, session_maker: Maker
) -> None:
    await assert_refused(
        session_maker,
        "never change",
        update(Exchange).where(Exchange.id == ledger.recorded).values(minutes=90),
    )


async def test_update_of_a_recorded_exchanges_parties_is_refused(
    ledger: Ledger, session_maker: Maker
) -> None:
    await assert_refused(
        session_maker,
        "never change",
        update(Exchange)
        .where(Exchange.id == ledger.recorded)
        .values(provider_account_id=ledger.bob, recipient_account_id=ledger.ann),
    )


async def test_status_change_of_a_recorded_exchange_is_refused(
    ledger: Ledger, session_maker: Maker
) -> None:
    await assert_refused(
        session_maker,
        "only a pending|never change|unbalanced",
        update(Exchange)
        .where(Exchange.id == ledger.recorded)
        .values(status=ExchangeStatus.cancelled),
    )
    async with session_maker() as s:
        status = await s.scalar(select(Exchange.status).where(Exchange.id == ledger.recorded))
    assert status is ExchangeStatus.recorded


async def test_redacting_a_recorded_exchanges_description_is_allowed(
    ledger: Ledger, session_maker: Maker
) -> None:
    await commit(
        session_maker,
        update(Exchange).where(Exchange.id == ledger.recorded).values(description=None),
    )


async def test_delete_of_an_exchange_is_refused(ledger: Ledger, session_maker: Maker) -> None:
    await assert_refused(
        session_maker, "never deleted", delete(Exchange).where(Exchange.id == ledger.recorded)
    )
    assert await exchange_exists(session_maker, ledger.recorded)


async def test_second_reversal_row_for_one_exchange_is_refused(
    api: Api, ledger: Ledger, session_maker: Maker
) -> None:
    await api.ok(
        "post",
        f"/v1/timebanks/{ledger.slug}/exchanges/{ledger.recorded}/reverse",
        {"reason": "wrong member"},
    )
    ex = uuid.uuid4()
    await assert_refused(
        session_maker,
        "reverses",
        postings(ex, (ledger.ann, -60), (ledger.bob, 60)),
        exchange_row(ledger, ex, 60, kind=ExchangeKind.reversal, reverses=ledger.recorded),
    )
    assert not await exchange_exists(session_maker, ex)


async def test_second_exchange_with_one_external_ref_in_a_time_bank_is_refused(
    ledger: Ledger, session_maker: Maker
) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    await commit(
        session_maker,
        postings(first, (ledger.ann, 5), (ledger.bob, -5)),
        exchange_row(ledger, first, 5, external_ref="sheet-1/line-1"),
    )
    await assert_refused(
        session_maker,
        "external_ref",
        postings(second, (ledger.ann, 5), (ledger.bob, -5)),
        exchange_row(ledger, second, 5, external_ref="sheet-1/line-1"),
    )


# --- overwriting rows by upsert -------------------------------------------------------------
#
# PostgreSQL's upsert is INSERT ... ON CONFLICT DO UPDATE, which fires the UPDATE triggers.
# SQLite's is INSERT OR REPLACE, which deletes the conflicting row *without* firing DELETE
# triggers (unless PRAGMA recursive_triggers is on) and inserts the new one.


def overwrite(engine_name: str, model: Any, values: dict[str, Any]) -> Executable:
    if engine_name == "postgresql":
        stmt = postgresql.insert(model).values(values)
        changed = {k: stmt.excluded[k] for k in values if k != "id"}
        return stmt.on_conflict_do_update(index_elements=["id"], set_=changed)
    return insert(model).values(values).prefix_with("OR REPLACE")


async def test_overwriting_a_posting_of_a_recorded_exchange_by_upsert_is_refused(
    engine_name: str, ledger: Ledger, session_maker: Maker
) -> None:
    pending = uuid.uuid4()
    await commit(session_maker, exchange_row(ledger, pending, 5, ExchangeStatus.pending))
    # move Ann's +60 line onto a pending exchange (the sealing rule only looks at NEW)
    values = {
        "id": ledger.posting_ids[0],
        "exchange_id": pending,
        "account_id": ledger.ann,
        "minutes": 5,
        "balance_after_minutes": 0,
    }
    with pytest.raises(IntegrityError):
        await commit(session_maker, overwrite(engine_name, Posting, values))
    assert await postings_of(session_maker, ledger.recorded) == [
        (ledger.ann, 60),
        (ledger.bob, -60),
    ]


async def test_overwriting_a_recorded_exchange_by_upsert_is_refused(
    engine_name: str, ledger: Ledger, session_maker: Maker
) -> None:
    async with session_maker() as s:
        before = (
            await s.execute(select(Exchange).where(Exchange.id == ledger.recorded))
        ).scalar_one()
    values = exchange_values(
        ledger,
        ledger.recorded,
        999,
        kind=ExchangeKind.o2o,
        occurred_on=date(2020, 1, 1),
        provider_account_id=ledger.bob,
        recipient_account_id=ledger.ann,
        logged_by_role=before.logged_by_role,
    )
    with pytest.raises(IntegrityError):
        await commit(session_maker, overwrite(engine_name, Exchange, values))
    async with session_maker() as s:
        after = (
            await s.execute(select(Exchange).where(Exchange.id == ledger.recorded))
        ).scalar_one()
    assert (after.minutes, after.kind, after.occurred_on, after.provider_account_id) == (
        before.minutes,
        before.kind,
        before.occurred_on,
        before.provider_account_id,
    )


# --- a pending exchange changes state once --------------------------------------------------


async def test_pending_exchange_becomes_recorded_only_with_balanced_postings(
    ledger: Ledger, session_maker: Maker
) -> None:
    empty, balanced = uuid.uuid4(), uuid.uuid4()
    await commit(
        session_maker,
        exchange_row(ledger, empty, 30, ExchangeStatus.pending),
        exchange_row(ledger, balanced, 30, ExchangeStatus.pending),
    )
    to_recorded = update(Exchange).values(status=ExchangeStatus.recorded)
    await assert_refused(session_maker, "unbalanced", to_recorded.where(Exchange.id == empty))
    await commit(
        session_maker,
        postings(balanced, (ledger.ann, 30), (ledger.bob, -30)),
        to_recorded.where(Exchange.id == balanced),
    )
    assert await postings_of(session_maker, balanced) == [(ledger.ann, 30), (ledger.bob, -30)]


async def test_decided_pending_exchange_cannot_change_status_again(
    ledger: Ledger, session_maker: Maker
) -> None:
    ex = uuid.uuid4()
    await commit(
        session_maker,
        exchange_row(ledger, ex, 30, ExchangeStatus.pending),
        update(Exchange).where(Exchange.id == ex).values(status=ExchangeStatus.cancelled),
    )
    await assert_refused(
        session_maker,
        "only a pending|never change",
        update(Exchange).where(Exchange.id == ex).values(status=ExchangeStatus.rejected),
    )


async def test_recorded_at_of_a_recorded_exchange_never_changes(
    ledger: Ledger, session_maker: Maker
) -> None:
    await assert_refused(
        session_maker,
        "never change",
        update(Exchange)
        .where(Exchange.id == ledger.recorded)
        .values(recorded_at=datetime(2020, 1, 1, tzinfo=UTC)),
    )


# --- maintained balances -------------------------------------------------------------------------


async def test_account_balance_other_than_earned_minus_spent_is_refused(
    ledger: Ledger, session_maker: Maker
) -> None:
    await assert_refused(
        session_maker,
        "balance_sum",
        update(Account)
        .where(Account.id == ledger.ann)
        .values(balance_minutes=Account.balance_minutes + 5),
    )
    async with session_maker() as s:
        acc = (
            await s.execute(
                select(
                    Account.balance_minutes, Account.earned_minutes, Account.spent_minutes
                ).where(Account.id == ledger.ann)
            )
        ).one()
    assert tuple(acc) == (60, 60, 0)


async def test_account_balance_moved_with_its_flows_is_accepted(
    ledger: Ledger, session_maker: Maker
) -> None:
    await commit(
        session_maker,
        update(Account)
        .where(Account.id == ledger.ann)
        .values(
            balance_minutes=Account.balance_minutes + 5,
            earned_minutes=Account.earned_minutes + 5,
        ),
    )


async def test_negative_earned_minutes_are_refused(ledger: Ledger, session_maker: Maker) -> None:
    await assert_refused(
        session_maker,
        "flows_nonneg",
        update(Account)
        .where(Account.id == ledger.bob)
        .values(balance_minutes=-70, earned_minutes=-10),  # still earned - spent
    )
