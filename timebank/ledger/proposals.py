"""Proposals from members (partner apps) and their decisions.

A pending exchange moves no balance. The counterparty member confirms or rejects it; a
broker decides when the counterparty is an organisation or the pool, and may decide any;
the proposer may cancel. Each decision is one conditional update (``WHERE status =
'pending'``), so it happens once. Confirming re-checks party status, limits and category in
the posting transaction; a refused confirmation leaves the exchange pending. Proposals older
than the time bank's ``pending_expiry_days`` become ``expired``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import STAFF, Principal, Role
from timebank.audit import service as audit
from timebank.db import table_of, utcnow
from timebank.errors import (
    BalanceLimitExceeded,
    Forbidden,
    InvalidInput,
    NotPending,
    PartyInactive,
)
from timebank.events.models import EventType
from timebank.events.service import emit, exchange_change
from timebank.idempotency import Claim
from timebank.ledger.changes import account_members, prepared_members
from timebank.ledger.models import Account, Exchange, ExchangeStatus, OwnerType
from timebank.ledger.posting import (
    Book,
    Leg,
    NewExchange,
    Posted,
    exchange_row,
    insert_exchanges,
    limit_refusal,
    lock_accounts,
    posting_rows,
)
from timebank.ledger.reads import find_exchange, is_stale, load_views, party_members, view
from timebank.ledger.rules import POOL_KINDS
from timebank.ledger.schemas import ExchangeCreate, ExchangeOut
from timebank.ledger.validate import Party, check_active, draft, load_and_validate
from timebank.members.models import Member, MemberStatus
from timebank.organisations.models import Organisation, OrganisationStatus
from timebank.timebanks.models import Category, TimeBank


class Decision(StrEnum):
    confirm = "confirm"
    reject = "reject"
    cancel = "cancel"


DECIDED = {
    Decision.confirm: EventType.exchange_confirmed,
    Decision.reject: EventType.exchange_rejected,
    Decision.cancel: EventType.exchange_cancelled,
}


async def propose_exchange(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    data: ExchangeCreate,
    claim: Claim | None = None,
) -> ExchangeOut:
    """A member (through a partner app) proposes a simple exchange in which they are a
    party. It is ``pending``: no postings, no balance moves, until it is confirmed."""
    principal.require(tb.id, Role.member)
    if data.is_group:
        raise Forbidden("A member key may propose the simple form only")
    if data.override_limits:
        raise Forbidden("A member key cannot override limits")
    if data.external_ref is not None:
        # a member could otherwise reserve a sheet's line, or probe which lines exist (409)
        raise InvalidInput(
            "external_ref", "is a broker's reference for paper sheets: a member key may not set it"
        )
    prepared = await load_and_validate(session, tb, data)
    own = [p for p in prepared.parties if p.owner_type is OwnerType.member]
    if not any(p.owner_id == principal.member_id for p in own):
        raise Forbidden("A member key may only propose exchanges in which the member is a party")
    check_active(prepared)
    d = draft(data, prepared)
    await _check_own_limit(session, tb, principal, prepared.parties, d.legs)
    row = exchange_row(
        principal, tb, d, status=ExchangeStatus.pending, proposed_by=principal.member_id
    )
    await insert_exchanges(session, [], [row])  # no postings until it is confirmed
    assert d.simple_parties is not None
    provider, recipient = d.simple_parties
    await audit.record(
        session,
        audit.event(
            principal,
            "exchange.propose",
            timebank_id=tb.id,
            target_type="exchange",
            target_id=row["id"],
            details={"kind": prepared.kind.value, "accounts": [str(provider), str(recipient)]},
        ),
    )
    out = view(
        Posted(NewExchange(**row), [], d.category.slug if d.category else None),
        expiry=timedelta(days=tb.pending_expiry_days),
    )
    if claim is not None:
        await claim.settle(session, out)
    change = exchange_change(
        EventType.exchange_proposed, row["id"], "pending", prepared_members(prepared)
    )
    await emit(session, tb.id, [change])
    await session.commit()
    return out


async def _check_own_limit(
    session: AsyncSession,
    tb: TimeBank,
    principal: Principal,
    parties: Sequence[Party],
    legs: Sequence[Leg],
) -> None:
    """A proposal that would take the proposer past their own balance limit is refused when
    it is proposed (their own figures, so the refusal may name them); the counterparty's
    limits are checked only at confirmation, and never named to the proposer."""
    own = {p.account_id for p in parties if p.owner_id == principal.member_id}
    mine = [leg for leg in legs if leg.account_id in own]
    account = await session.get(Account, mine[0].account_id) if mine else None
    if account is None:
        return
    try:
        Book(tb, {account.id: account}).apply(mine, enforce_limits=True)
    except BalanceLimitExceeded as exc:
        exc.detail = limit_refusal(exc.extra, "Your account")
        raise


def _anonymous_limit(principal: Principal, exc: BalanceLimitExceeded) -> BalanceLimitExceeded:
    """A balance-limit refusal as a member key may read it: its own figures in full, another
    party's never (no name, no balance, no limits)."""
    party = exc.extra.get("party") or {}
    if principal.role is not Role.member or (
        party.get("type") == OwnerType.member.value and party.get("id") == str(principal.member_id)
    ):
        return exc
    whose = "member's" if party.get("type") == OwnerType.member.value else "party's"
    return BalanceLimitExceeded(
        f"The other {whose} balance limit would be passed: this exchange cannot be recorded "
        "now. It stays pending; you may reject it, or confirm it later.",
        party={"type": "counterparty"},
    )


async def _owner(session: AsyncSession, account_id: uuid.UUID) -> Account:
    acc = await session.get(Account, account_id)
    assert acc is not None
    return acc


async def _counterparty(session: AsyncSession, ex: Exchange) -> Account:
    """The party that did not propose the exchange."""
    assert ex.provider_account_id is not None
    assert ex.recipient_account_id is not None
    provider = await _owner(session, ex.provider_account_id)
    if provider.owner_type is OwnerType.member and provider.owner_id == ex.proposed_by:
        return await _owner(session, ex.recipient_account_id)
    return provider


async def _authorize(
    session: AsyncSession, principal: Principal, ex: Exchange, decision: Decision
) -> None:
    if principal.role in STAFF:
        return
    if principal.role is not Role.member:
        raise Forbidden(f"A {principal.role.value} key cannot decide exchanges")
    if ex.proposed_by is None or ex.provider_account_id is None:
        # Only a proposal has a proposer and a counterparty (a group exchange has neither).
        raise NotPending(f"This exchange is {ex.status.value}, not pending")
    # Who may decide is checked before the state, so the answer to a member does not
    # depend on whether someone else decided first (a stranger is refused either way).
    if decision is Decision.cancel:
        if ex.proposed_by != principal.member_id:
            raise Forbidden("Only the proposer (or a broker) may cancel a proposal")
        return
    if ex.proposed_by == principal.member_id:
        raise Forbidden("The proposer cannot confirm or reject their own proposal; cancel it")
    other = await _counterparty(session, ex)
    if other.owner_type is not OwnerType.member or other.owner_id != principal.member_id:
        raise Forbidden("Only the counterparty member (or a broker) may decide this exchange")


async def _recheck_parties(session: AsyncSession, ex: Exchange) -> None:
    if ex.kind in POOL_KINDS:
        return
    for account_id in (ex.provider_account_id, ex.recipient_account_id):
        assert account_id is not None
        acc = await _owner(session, account_id)
        if acc.owner_type is OwnerType.member:
            m = await session.get(Member, acc.owner_id)
            if m is None or m.status is not MemberStatus.active:
                raise PartyInactive("A party is no longer active (suspended, left or erased)")
        elif acc.owner_type is OwnerType.organisation:
            o = await session.get(Organisation, acc.owner_id)
            if o is None or o.status is not OrganisationStatus.active:
                raise PartyInactive("An organisation party is no longer active")
    if ex.category_id is not None and await session.get(Category, ex.category_id) is None:
        raise InvalidInput("category", "the category no longer exists")


async def decide(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    exchange_id: uuid.UUID,
    decision: Decision,
    reason: str | None = None,
) -> ExchangeOut:
    """Confirm, reject or cancel a pending exchange, and commit. Confirming posts it
    (re-checking party status, limits and category); a refused confirmation leaves it
    pending. A proposal past the bank's expiry counts as expired: 409 ``not_pending``."""
    principal.require(tb.id, Role.admin, Role.broker, Role.member)
    ex = await find_exchange(session, tb, exchange_id)
    if principal.role is Role.member and principal.member_id not in await party_members(
        session, ex
    ):
        raise Forbidden("This exchange does not involve the key's member")
    await _authorize(session, principal, ex, decision)
    locked = (
        await session.execute(
            select(Exchange)
            .where(Exchange.id == exchange_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    if is_stale(locked, tb):
        raise NotPending("This exchange is expired, not pending")
    if locked.status is not ExchangeStatus.pending:
        raise NotPending(f"This exchange is {locked.status.value}, not pending")
    now = utcnow()
    values: dict[str, object] = {
        "decided_by": principal.scope_id,
        "decided_at": now,
        "updated_at": now,
    }
    if decision is Decision.confirm:
        await _recheck_parties(session, locked)
        assert locked.provider_account_id is not None
        assert locked.recipient_account_id is not None
        legs = [
            Leg(locked.provider_account_id, locked.minutes),
            Leg(locked.recipient_account_id, -locked.minutes),
        ]
        # the posting step for an exchange that exists: lock, check limits, postings,
        # balances; the exchange row turns recorded below
        book = Book(tb, await lock_accounts(session, (leg.account_id for leg in legs)))
        try:
            after = await book.apply_named(session, legs, enforce_limits=True)
        except BalanceLimitExceeded as exc:
            raise _anonymous_limit(principal, exc) from None
        await insert_exchanges(session, posting_rows(locked.id, legs, after), [])
        await book.save(session)
        values.update(status=ExchangeStatus.recorded, recorded_at=now)
    elif decision is Decision.reject:
        values.update(status=ExchangeStatus.rejected, reason=reason)
    else:
        values.update(status=ExchangeStatus.cancelled, reason=reason)
    result = await session.execute(
        update(Exchange)
        .where(Exchange.id == exchange_id, Exchange.status == ExchangeStatus.pending)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 1) != 1:
        raise NotPending("This exchange was decided by someone else just now")
    await audit.record(
        session,
        audit.event(
            principal,
            f"exchange.{decision.value}",
            timebank_id=tb.id,
            target_type="exchange",
            target_id=exchange_id,
            reason=reason,
        ),
    )
    fresh = (
        await session.execute(
            select(Exchange)
            .where(Exchange.id == exchange_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    out = (await load_views(session, tb, [fresh], principal))[0]
    await emit(
        session,
        tb.id,
        [
            exchange_change(
                DECIDED[decision],
                exchange_id,
                out.status.value,
                await party_members(session, fresh),
            )
        ],
    )
    await session.commit()
    return out


async def expire_stale(session: AsyncSession, timebank_id: uuid.UUID, expiry_days: int) -> int:
    """Store ``expired`` on this time bank's proposals older than ``expiry_days`` (the
    maintenance command; reads already show them expired). ``decided_at`` is the moment each
    expired, as reads show it; each gets its ``exchange.expired`` event. Caller commits.
    Idempotent; returns how many changed."""
    expiry = timedelta(days=expiry_days)
    stale = (
        await session.execute(
            select(
                Exchange.id,
                Exchange.recorded_at,
                Exchange.provider_account_id,
                Exchange.recipient_account_id,
            )
            .where(
                Exchange.timebank_id == timebank_id,
                Exchange.status == ExchangeStatus.pending,
                Exchange.recorded_at < utcnow() - expiry,
            )
            .order_by(Exchange.id)
            .with_for_update()  # a decision meanwhile must not also get an expiry event
        )
    ).all()
    if not stale:
        return 0
    table = table_of(Exchange)
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("ex_id"), table.c.status == ExchangeStatus.pending)
        .values(
            status=ExchangeStatus.expired,
            decided_at=bindparam("expired_at"),
            updated_at=bindparam("expired_at"),
        ),
        [{"ex_id": ex_id, "expired_at": at + expiry} for ex_id, at, *_ in stale],
    )
    owners = await account_members(session, (a for *_, p, r in stale for a in (p, r) if a))
    await emit(
        session,
        timebank_id,
        [
            exchange_change(
                EventType.exchange_expired,
                ex_id,
                "expired",
                [owners[a] for a in (p, r) if a in owners],
            )
            for ex_id, _, p, r in stale
        ],
    )
    return len(stale)
