"""Reading the ledger: exchanges (one, or a filtered page), balances with pending flows,
and account statements. Reads never write: a proposal older than its bank's
``pending_expiry_days`` is shown as ``expired`` whether or not the maintenance command has
stored that yet (its ``decided_at`` is the moment it expired)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import STAFF, Principal, Role
from timebank.auth.models import ApiKey, ConsoleUser
from timebank.bodies import trusted
from timebank.db import utcnow
from timebank.errors import NotFound
from timebank.ledger.accounts import get_account
from timebank.ledger.models import (
    Account,
    Exchange,
    ExchangeKind,
    ExchangeStatus,
    OwnerType,
    Posting,
)
from timebank.ledger.posting import Posted
from timebank.ledger.rules import effective_limits
from timebank.ledger.schemas import Actor, BalanceOut, ExchangeOut, LoggedBy, PostingOut
from timebank.members.models import Member, MemberStatus
from timebank.organisations.models import Organisation
from timebank.timebanks.models import Category, TimeBank


def expiry_cutoff(tb: TimeBank) -> datetime:
    """Proposals recorded before this moment have expired."""
    return utcnow() - timedelta(days=tb.pending_expiry_days)


def is_stale(ex: Exchange, tb: TimeBank) -> bool:
    return ex.status is ExchangeStatus.pending and ex.recorded_at < expiry_cutoff(tb)


async def find_exchange(session: AsyncSession, tb: TimeBank, exchange_id: uuid.UUID) -> Exchange:
    ex = await session.get(Exchange, exchange_id)
    if ex is None or ex.timebank_id != tb.id:
        raise NotFound("No such exchange in this time bank")
    return ex


async def reversed_by(
    session: AsyncSession, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    ids = list(ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(Exchange.reverses, Exchange.id).where(Exchange.reverses.in_(ids))
    )
    return {orig: rev for orig, rev in rows.all() if orig is not None}


async def load_views(
    session: AsyncSession,
    tb: TimeBank,
    exchanges: Sequence[Exchange],
    reader: Principal | None = None,
) -> list[ExchangeOut]:
    """Exchange views with postings, category slug, ``reversed_by`` and who decided (as
    ``reader`` may see it; ``None``: as a member would), in at most five queries."""
    ids = [e.id for e in exchanges]
    postings: dict[uuid.UUID, list[PostingOut]] = defaultdict(list)
    if ids:
        for ex_id, account_id, minutes in (
            await session.execute(
                select(Posting.exchange_id, Posting.account_id, Posting.minutes)
                .where(Posting.exchange_id.in_(ids))
                .order_by(Posting.id)
            )
        ).all():
            postings[ex_id].append(trusted(PostingOut, account_id=account_id, minutes=minutes))
    cat_ids = {e.category_id for e in exchanges if e.category_id}
    cats: dict[uuid.UUID, str] = {}
    if cat_ids:
        cats = dict(
            (
                await session.execute(
                    select(Category.id, Category.slug).where(Category.id.in_(cat_ids))
                )
            ).all()
        )
    rev = await reversed_by(session, ids)
    actors = await deciders(session, {e.decided_by for e in exchanges if e.decided_by}, reader)
    expiry = timedelta(days=tb.pending_expiry_days)
    return [
        view(
            Posted(
                e, postings[e.id], cats.get(e.category_id) if e.category_id else None, rev.get(e.id)
            ),
            expired_at=e.recorded_at + expiry if is_stale(e, tb) else None,
            expiry=expiry,
            decided_by=actors.get(e.decided_by) if e.decided_by else None,
        )
        for e in exchanges
    ]


async def deciders(
    session: AsyncSession, ids: set[uuid.UUID], reader: Principal | None
) -> dict[uuid.UUID, Actor]:
    """Who each id of ``decided_by`` is (an API key's or a console user's), as ``reader``
    may see it: staff everything; anyone else a member by name and staff by role only."""
    if not ids:
        return {}
    staff = reader is not None and reader.role in STAFF
    out: dict[uuid.UUID, Actor] = {}
    keys = await session.execute(
        select(ApiKey.id, ApiKey.role, ApiKey.label, Member.id, Member.display_name)
        .outerjoin(Member, Member.id == ApiKey.member_id)
        .where(ApiKey.id.in_(ids))
    )
    for key_id, role, label, member_id, member_name in keys.tuples():
        if member_id is not None:
            out[key_id] = trusted(Actor, type="member", id=member_id, name=member_name)
        elif staff:
            out[key_id] = trusted(Actor, type="key", id=key_id, name=label or Role(role).value)
        else:
            out[key_id] = Actor(type="key", name=Role(role).value)
    rest = ids - set(out)
    if rest:
        users = await session.execute(
            select(ConsoleUser.id, ConsoleUser.role, ConsoleUser.name).where(
                ConsoleUser.id.in_(rest)
            )
        )
        for user_id, role, name in users.tuples():
            if staff:
                out[user_id] = trusted(
                    Actor, type="user", id=user_id, name=name or Role(role).value
                )
            else:
                out[user_id] = Actor(type="user", name=Role(role).value)
    return out


def view(
    p: Posted,
    expired_at: datetime | None = None,
    *,
    expiry: timedelta | None = None,
    decided_by: Actor | None = None,
) -> ExchangeOut:
    """The API's view of an exchange; ``expired_at`` for a stale proposal; ``expiry`` the
    bank's pending expiry (for a pending proposal's ``expires_at``)."""
    e = p.exchange
    status = ExchangeStatus.expired if expired_at else e.status
    created = e.created_at or e.recorded_at
    return trusted(
        ExchangeOut,  # trusted: from the ledger, not from a client
        id=e.id,
        status=status,
        kind=e.kind,
        minutes=e.minutes,
        category=p.category,
        occurred_on=e.occurred_on,
        recorded_at=e.recorded_at if status is ExchangeStatus.recorded else None,
        created_at=created,
        updated_at=expired_at or e.updated_at or created,
        expires_at=created + expiry
        if status is ExchangeStatus.pending and expiry is not None
        else None,
        description=e.description,
        external_ref=e.external_ref,
        postings=p.postings,
        provider_account_id=e.provider_account_id,
        recipient_account_id=e.recipient_account_id,
        reverses=e.reverses,
        reversed_by=p.reversed_by,
        logged_by=trusted(
            LoggedBy,
            key_id=e.logged_by_key_id,
            user_id=e.logged_by_user_id,
            role=Role(e.logged_by_role),
        ),
        proposed_by=e.proposed_by,
        decided_by=decided_by,
        decided_at=expired_at or e.decided_at,
        reason=e.reason,
        override_reason=e.override_reason,
    )


async def party_members(session: AsyncSession, ex: Exchange) -> set[uuid.UUID]:
    """Member ids of an exchange's parties (from its postings, or its proposal)."""
    accounts = set(
        (await session.execute(select(Posting.account_id).where(Posting.exchange_id == ex.id)))
        .scalars()
        .all()
    )
    accounts |= {a for a in (ex.provider_account_id, ex.recipient_account_id) if a}
    if not accounts:
        return set()
    rows = await session.execute(
        select(Account.owner_id).where(
            Account.id.in_(accounts), Account.owner_type == OwnerType.member
        )
    )
    return set(rows.scalars().all())


async def get_exchange(
    session: AsyncSession, principal: Principal, tb: TimeBank, exchange_id: uuid.UUID
) -> ExchangeOut:
    """Staff see any exchange; a member key only those the member is a party to (others
    are 404, so their existence is not revealed)."""
    principal.require(tb.id, Role.admin, Role.broker, Role.member)
    ex = await find_exchange(session, tb, exchange_id)
    if principal.role is Role.member and principal.member_id not in await party_members(
        session, ex
    ):
        raise NotFound("No such exchange in this time bank")
    return (await load_views(session, tb, [ex], principal))[0]


@dataclass
class ExchangeFilters:
    account_id: uuid.UUID | None = None
    category: str | None = None
    status: ExchangeStatus | None = None
    kind: ExchangeKind | None = None
    date_from: date | None = None
    date_to: date | None = None
    awaiting_member: uuid.UUID | None = None  # pending, proposed by someone else
    proposed_by: uuid.UUID | None = None  # a member's own proposals
    updated_since: datetime | None = None  # changed at or after (decided, expired, ...)
    newest_first: bool = False  # by creation (the id's order), newest first


async def list_exchanges(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    filters: ExchangeFilters,
    after: uuid.UUID | None,
    limit: int,
) -> list[ExchangeOut]:
    principal.require(tb.id, Role.admin, Role.broker, Role.member)
    stmt = select(Exchange).where(Exchange.timebank_id == tb.id)
    cutoff = expiry_cutoff(tb)
    live = and_(Exchange.status == ExchangeStatus.pending, Exchange.recorded_at >= cutoff)
    if filters.awaiting_member is not None:
        stmt = stmt.where(
            live,
            Exchange.proposed_by.is_(None) | (Exchange.proposed_by != filters.awaiting_member),
        )
    if filters.account_id is not None:
        acc = filters.account_id
        stmt = stmt.where(
            or_(
                Exchange.id.in_(select(Posting.exchange_id).where(Posting.account_id == acc)),
                Exchange.provider_account_id == acc,
                Exchange.recipient_account_id == acc,
            )
        )
    if filters.category is not None:
        stmt = stmt.join(Category, Category.id == Exchange.category_id).where(
            Category.slug == filters.category
        )
    if filters.status is ExchangeStatus.pending:
        stmt = stmt.where(live)
    elif filters.status is ExchangeStatus.expired:
        stmt = stmt.where(
            or_(
                Exchange.status == ExchangeStatus.expired,
                and_(Exchange.status == ExchangeStatus.pending, not_(live)),
            )
        )
    elif filters.status is not None:
        stmt = stmt.where(Exchange.status == filters.status)
    if filters.kind is not None:
        stmt = stmt.where(Exchange.kind == filters.kind)
    if filters.date_from is not None:
        stmt = stmt.where(Exchange.occurred_on >= filters.date_from)
    if filters.date_to is not None:
        stmt = stmt.where(Exchange.occurred_on <= filters.date_to)
    if filters.proposed_by is not None:
        stmt = stmt.where(Exchange.proposed_by == filters.proposed_by)
    if filters.updated_since is not None:
        since = filters.updated_since
        expiry = timedelta(days=tb.pending_expiry_days)
        stmt = stmt.where(
            or_(
                Exchange.updated_at >= since,
                # expired by the passing of time, not yet stored as such: changed when it expired
                and_(
                    Exchange.status == ExchangeStatus.pending,
                    Exchange.recorded_at < cutoff,
                    Exchange.recorded_at >= since - expiry,
                ),
            )
        )
    if after is not None:
        stmt = stmt.where(Exchange.id < after if filters.newest_first else Exchange.id > after)
    order = Exchange.id.desc() if filters.newest_first else Exchange.id
    rows = list((await session.execute(stmt.order_by(order).limit(limit + 1))).scalars())
    return await load_views(session, tb, rows, principal)


async def balance(
    session: AsyncSession, tb: TimeBank, owner_type: OwnerType, owner_id: uuid.UUID
) -> BalanceOut:
    """A member's or organisation's balance with its pending flows, in one query. A
    proposal older than the bank's ``pending_expiry_days`` counts as expired here whether or
    not the lazy expiry has written it yet, so a read never has to write."""
    cutoff = expiry_cutoff(tb)

    def pending(side: Any) -> Any:
        return (
            select(func.coalesce(func.sum(Exchange.minutes), 0))
            .where(
                side == Account.id,
                Exchange.status == ExchangeStatus.pending,
                Exchange.recorded_at >= cutoff,
            )
            .scalar_subquery()
        )

    row = (
        await session.execute(
            select(
                Account,
                pending(Exchange.provider_account_id),
                pending(Exchange.recipient_account_id),
            ).where(
                Account.owner_type == owner_type,
                Account.owner_id == owner_id,
                Account.timebank_id == tb.id,
            )
        )
    ).first()
    if row is None:
        raise no_such(owner_type)
    acc, pending_in, pending_out = row
    return balance_view(acc, tb, int(pending_in), int(pending_out))


def no_such(owner_type: OwnerType) -> NotFound:
    return NotFound(f"No such {owner_type.value} in this time bank")


def balance_view(acc: Any, tb: TimeBank, pending_in: int, pending_out: int) -> BalanceOut:
    """A balance as the API shows it: the account's figures, its effective limits."""
    lo, hi = effective_limits(acc, tb)
    return trusted(
        BalanceOut,
        account_id=acc.id,
        balance_minutes=acc.balance_minutes,
        earned_minutes=acc.earned_minutes,
        spent_minutes=acc.spent_minutes,
        pending_in_minutes=pending_in,
        pending_out_minutes=pending_out,
        min_balance_minutes=lo,
        max_balance_minutes=hi,
        as_of=utcnow(),
    )


async def owner_names(
    session: AsyncSession, account_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, uuid.UUID, str]]:
    """account id → (owner type, owner id, display name)."""
    ids = list(set(account_ids))
    out: dict[uuid.UUID, tuple[str, uuid.UUID, str]] = {}
    if not ids:
        return out
    for acc_id, mid, name in (
        await session.execute(
            select(Member.account_id, Member.id, Member.display_name).where(
                Member.account_id.in_(ids)
            )
        )
    ).all():
        out[acc_id] = ("member", mid, name)
    for acc_id, oid, name in (
        await session.execute(
            select(Organisation.account_id, Organisation.id, Organisation.name).where(
                Organisation.account_id.in_(ids)
            )
        )
    ).all():
        out[acc_id] = ("organisation", oid, name)
    for acc_id, _owner in (
        await session.execute(
            select(Account.id, Account.owner_id).where(
                Account.id.in_(ids), Account.owner_type == OwnerType.pool
            )
        )
    ).all():
        out[acc_id] = ("pool", acc_id, "Community pool")
    return out


StatementCursor = tuple[date, int]  # the (occurred_on, posting id) a page continues after


async def _sum(session: AsyncSession, account_id: uuid.UUID, *where: Any) -> int:
    return int(
        (
            await session.execute(
                select(func.coalesce(func.sum(Posting.minutes), 0))
                .join(Exchange, Exchange.id == Posting.exchange_id)
                .where(Posting.account_id == account_id, *where)
            )
        ).scalar_one()
    )


async def statement(
    session: AsyncSession,
    tb: TimeBank,
    account_id: uuid.UUID,
    date_from: date | None,
    date_to: date | None,
    after: StatementCursor | None,
    limit: int | None,
) -> tuple[int, int, list[dict[str, Any]], StatementCursor | None]:
    """Entries in value-date order (``occurred_on``, then recording order: the posting id),
    filtered on ``occurred_on`` (both ends inclusive), each with the running balance in that
    order. Opening = Σ entries dated before ``from``; closing = Σ entries dated on or before
    ``to`` (with no ``to``: every entry, the current balance) = opening + Σ the lines.
    ``after``: the cursor of the previous page (its running balance is summed again, so a
    page is right however the pages before it were read). ``limit`` None: every entry."""
    await get_account(session, tb, account_id)
    period = [Posting.account_id == account_id]
    if date_from is not None:
        period.append(Exchange.occurred_on >= date_from)
    if date_to is not None:
        period.append(Exchange.occurred_on <= date_to)
    opening = 0
    if date_from is not None:
        opening = await _sum(session, account_id, Exchange.occurred_on < date_from)
    closing = await _sum(
        session, account_id, *([Exchange.occurred_on <= date_to] if date_to else [])
    )
    order = (Exchange.occurred_on, Posting.id)
    stmt = (
        select(Posting, Exchange, Category.slug)
        .join(Exchange, Exchange.id == Posting.exchange_id)
        .outerjoin(Category, Category.id == Exchange.category_id)
        .where(*period)
        .order_by(*order)
    )
    running = opening
    if after is not None:
        on, posting_id = after
        later = or_(
            Exchange.occurred_on > on, and_(Exchange.occurred_on == on, Posting.id > posting_id)
        )
        stmt = stmt.where(later)
        # everything up to the cursor, the entries before the period included
        running = await _sum(session, account_id, not_(later))
    if limit is not None:
        stmt = stmt.limit(limit + 1)
    rows = (await session.execute(stmt)).all()
    next_after = None
    if limit is not None and len(rows) > limit:
        rows = rows[:limit]
        next_after = (rows[-1][1].occurred_on, rows[-1][0].id)
    ex_ids = list({r[1].id for r in rows})
    reversed_ids = list({r[1].reverses for r in rows if r[1].reverses is not None})
    others: dict[uuid.UUID, list[tuple[uuid.UUID, int]]] = defaultdict(list)
    if ex_ids:
        for ex_id, acc_id, minutes in (
            await session.execute(
                select(Posting.exchange_id, Posting.account_id, Posting.minutes).where(
                    Posting.exchange_id.in_(ex_ids), Posting.account_id != account_id
                )
            )
        ).all():
            others[ex_id].append((acc_id, minutes))
    originals: dict[uuid.UUID, tuple[date, str | None]] = {}
    if reversed_ids:
        for ex_id, reversed_on, reversed_slug in (
            await session.execute(
                select(Exchange.id, Exchange.occurred_on, Category.slug)
                .outerjoin(Category, Category.id == Exchange.category_id)
                .where(Exchange.id.in_(reversed_ids))
            )
        ).all():
            originals[ex_id] = (reversed_on, reversed_slug)
    names = await owner_names(session, [a for lst in others.values() for a, _ in lst])
    entries = []
    for posting, ex, cat in rows:
        running += posting.minutes
        opposite = [a for a, m in others[ex.id] if (m > 0) != (posting.minutes > 0)]
        counterparties = [
            {"type": names[a][0], "id": names[a][1], "display_name": names[a][2]}
            for a in opposite
            if a in names
        ]
        reverses = None
        if ex.reverses is not None and ex.reverses in originals:
            original = originals[ex.reverses]
            # the other party of a reversal is the other party of what it reverses
            reverses = {
                "exchange_id": ex.reverses,
                "occurred_on": original[0],
                "counterparties": counterparties,
                "category": original[1],
            }
        entries.append(
            {
                "entry_id": posting.id,
                "exchange_id": ex.id,
                "kind": ex.kind.value,
                "occurred_on": ex.occurred_on,
                "recorded_at": ex.recorded_at,
                "minutes": posting.minutes,
                "balance_after_minutes": running,
                "counterparties": counterparties,
                "category": cat,
                "description": ex.description,
                "reverses": reverses,
                "reason": ex.reason if ex.reverses is not None else None,
            }
        )
    return opening, closing, entries, next_after


async def recent(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    *,
    pending: bool,
    limit: int,
) -> list[ExchangeOut]:
    """The newest exchanges (by when they were recorded): recorded ones, or the proposals
    still waiting for a decision (not yet past the bank's expiry)."""
    principal.require(tb.id, Role.admin, Role.broker)
    stmt = select(Exchange).where(Exchange.timebank_id == tb.id)
    if pending:
        stmt = stmt.where(
            Exchange.status == ExchangeStatus.pending, Exchange.recorded_at >= expiry_cutoff(tb)
        )
    else:
        stmt = stmt.where(Exchange.status == ExchangeStatus.recorded)
    rows = list(
        (await session.execute(stmt.order_by(Exchange.recorded_at.desc()).limit(limit))).scalars()
    )
    return await load_views(session, tb, rows)


@dataclass(frozen=True)
class NearLimit:
    member_id: uuid.UUID
    display_name: str
    balance_minutes: int
    min_balance_minutes: int | None
    max_balance_minutes: int | None


async def near_limits(
    session: AsyncSession, principal: Principal, tb: TimeBank, *, margin: int, limit: int
) -> list[NearLimit]:
    """Active members within ``margin`` minutes of a balance limit, or past it (the limits
    of :func:`~timebank.ledger.rules.effective_limits`, in SQL), lowest balance first."""
    principal.require(tb.id, Role.admin, Role.broker)
    lo = case(
        (Account.custom_limits, Account.min_balance_minutes),
        else_=literal(tb.member_min_balance_minutes),
    )
    hi = case(
        (Account.custom_limits, Account.max_balance_minutes),
        else_=literal(tb.member_max_balance_minutes),
    )
    rows = await session.execute(
        select(Member.id, Member.display_name, Account.balance_minutes, lo, hi)
        .join(Account, Account.id == Member.account_id)
        .where(
            Member.timebank_id == tb.id,
            Member.status == MemberStatus.active,
            or_(
                and_(lo.is_not(None), Account.balance_minutes <= lo + margin),
                and_(hi.is_not(None), Account.balance_minutes >= hi - margin),
            ),
        )
        .order_by(Account.balance_minutes, Member.id)
        .limit(limit)
    )
    return [
        NearLimit(
            mid, name, bal, None if low is None else int(low), None if high is None else int(high)
        )
        for mid, name, bal, low, high in rows.tuples()
    ]
