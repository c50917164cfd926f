"""The ledger: recording, reversing and reading exchanges.

Money-flow rules (SPEC §2):
- amounts are integer minutes; providers are credited (+), recipients debited (−);
- an exchange's postings sum to zero, none is zero, and they are never changed;
- a write that leaves an account outside its limits *and further outside than before* is
  refused; reversals and audited broker overrides are exempt;
- affected accounts are locked in id order and updated with a conditional UPDATE, so the
  limit check is atomic under any concurrency.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, insert, literal, or_, select, text, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.audit import service as audit
from timebank.auth.models import Role
from timebank.auth.principal import STAFF, Principal
from timebank.db import table_of, utcnow, uuid7
from timebank.errors import (
    AlreadyReversed,
    BalanceLimitExceeded,
    Duplicate,
    Forbidden,
    InvalidInput,
    NotFound,
    NotReversible,
    PartyInactive,
)
from timebank.ledger.models import (
    Account,
    Exchange,
    ExchangeKind,
    ExchangeStatus,
    OwnerType,
    Posting,
)
from timebank.ledger.schemas import (
    AccountOut,
    AccountPatch,
    BalanceOut,
    ExchangeCreate,
    ExchangeOut,
    LoggedBy,
    PartyRef,
    PostingOut,
)
from timebank.members.models import Member, MemberStatus
from timebank.organisations.models import Organisation, OrganisationStatus
from timebank.timebanks.models import Category, TimeBank
from timebank.timebanks.service import today

EARLIEST_DATE = date(1980, 1, 1)  # time banking began in the 1980s; older dates are typos
POOL_KINDS = (ExchangeKind.pool_grant, ExchangeKind.pool_donation)
SERVICE_KINDS = {
    (OwnerType.member, OwnerType.member): ExchangeKind.p2p,
    (OwnerType.member, OwnerType.organisation): ExchangeKind.p2o,
    (OwnerType.organisation, OwnerType.member): ExchangeKind.o2p,
    (OwnerType.organisation, OwnerType.organisation): ExchangeKind.o2o,
}


@dataclass(frozen=True)
class Party:
    """A resolved party: whose account, and whether it may take part in new exchanges."""

    owner_type: OwnerType
    owner_id: uuid.UUID
    account_id: uuid.UUID
    active: bool


@dataclass
class Leg:
    account_id: uuid.UUID
    minutes: int  # signed: + credited, − debited


@dataclass
class Posted:
    exchange: Exchange
    postings: list[PostingOut] = field(default_factory=list)
    category: str | None = None
    reversed_by: uuid.UUID | None = None


# --- limits -------------------------------------------------------------------------------


def effective_limits(account: Account, tb: TimeBank) -> tuple[int | None, int | None]:
    if account.custom_limits:
        return account.min_balance_minutes, account.max_balance_minutes
    if account.owner_type is OwnerType.member:
        return tb.member_min_balance_minutes, tb.member_max_balance_minutes
    if account.owner_type is OwnerType.organisation:
        return tb.organisation_min_balance_minutes, tb.organisation_max_balance_minutes
    return None, None


async def lock_accounts(
    session: AsyncSession, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, Account]:
    """The accounts, locked in id order (PostgreSQL: FOR UPDATE, so concurrent writers
    queue in the same order and never deadlock; SQLite: the write transaction holds the
    whole database)."""
    ordered = sorted(set(ids))
    found = await session.execute(
        select(Account)
        .where(Account.id.in_(ordered))
        .order_by(Account.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {a.id: a for a in found.scalars()}


class Book:
    """The balances of locked accounts as a run of exchanges moves them, one after the other.

    A movement is refused if it leaves an account outside its limits and further outside
    than before: a debit may not take a balance below the minimum, a credit may not take it
    above the maximum; a movement towards the range is always allowed. Reversals and
    overrides skip the check. The accounts are locked, so what the book decides is what the
    database will hold; :meth:`save` writes the final balances with one UPDATE that is
    conditional on the balances the book started from.
    """

    def __init__(self, tb: TimeBank, accounts: dict[uuid.UUID, Account]) -> None:
        self.tb = tb
        self.accounts = accounts
        self.start = {a.id: a.balance_minutes for a in accounts.values()}
        self.balance = dict(self.start)
        self.earned = {a.id: a.earned_minutes for a in accounts.values()}
        self.spent = {a.id: a.spent_minutes for a in accounts.values()}

    def apply(self, legs: Sequence[Leg], *, enforce_limits: bool) -> dict[uuid.UUID, int]:
        """Move the balances by ``legs`` and return each account's balance after, or raise
        :class:`BalanceLimitExceeded` and move nothing."""
        deltas: dict[uuid.UUID, int] = defaultdict(int)
        for leg in legs:
            deltas[leg.account_id] += leg.minutes
        for account_id in sorted(deltas):
            delta, balance = deltas[account_id], self.balance[account_id]
            lo, hi = effective_limits(self.accounts[account_id], self.tb)
            below = delta < 0 and lo is not None and balance + delta < lo
            above = delta > 0 and hi is not None and balance + delta > hi
            if enforce_limits and (below or above):
                low = "unbounded" if lo is None else lo
                high = "unbounded" if hi is None else hi
                raise BalanceLimitExceeded(
                    f"Account {account_id} would move further outside its limits "
                    f"[{low}, {high}] (balance {balance}, change {delta:+d})",
                    account_id=str(account_id),
                )
        for account_id, delta in deltas.items():
            self.balance[account_id] += delta
            self.earned[account_id] += max(delta, 0)
            self.spent[account_id] += max(-delta, 0)
        return {account_id: self.balance[account_id] for account_id in deltas}

    async def save(self, session: AsyncSession) -> None:
        moved = [
            a
            for a, acc in self.accounts.items()
            if (self.earned[a], self.spent[a]) != (acc.earned_minutes, acc.spent_minutes)
        ]
        if not moved:
            return

        # One statement, however many accounts, and the same text each time (prepared once):
        # each row is written only if its balance is still the one read under the lock.
        conn = await session.connection()
        if conn.dialect.name == "postgresql":
            result = await session.execute(
                _PG_SAVE,
                {
                    "ids": moved,
                    "starts": [self.start[a] for a in moved],
                    "balances": [self.balance[a] for a in moved],
                    "earned": [self.earned[a] for a in moved],
                    "spent": [self.spent[a] for a in moved],
                },
            )
            written = len(result.all())
        else:  # SQLite counts the rows of an executemany
            result = await session.execute(
                _SQLITE_SAVE,
                [
                    {
                        "id": a.hex,
                        "start": self.start[a],
                        "balance": self.balance[a],
                        "earned": self.earned[a],
                        "spent": self.spent[a],
                    }
                    for a in moved
                ],
            )
            written = getattr(result, "rowcount", len(moved))
        if written != len(moved):  # cannot happen while the rows are locked
            raise RuntimeError("an account balance changed under its lock")


_PG_SAVE = text(
    """UPDATE accounts AS a
       SET balance_minutes = v.balance, earned_minutes = v.earned, spent_minutes = v.spent
       FROM unnest(CAST(:ids AS uuid[]), CAST(:starts AS bigint[]), CAST(:balances AS bigint[]),
                   CAST(:earned AS bigint[]), CAST(:spent AS bigint[]))
            AS v(id, start, balance, earned, spent)
       WHERE a.id = v.id AND a.balance_minutes = v.start
       RETURNING a.id"""
)
_SQLITE_SAVE = text(
    """UPDATE accounts SET balance_minutes = :balance, earned_minutes = :earned,
       spent_minutes = :spent WHERE id = :id AND balance_minutes = :start"""
)


@dataclass
class Draft:
    """An exchange to record: its kind, signed legs and what it says."""

    kind: ExchangeKind
    legs: list[Leg]
    occurred_on: date
    category: Category | None = None
    description: str | None = None
    external_ref: str | None = None
    reverses: uuid.UUID | None = None
    override_reason: str | None = None
    reason: str | None = None
    enforce_limits: bool = True
    simple_parties: tuple[uuid.UUID, uuid.UUID] | None = None


async def post_many(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    drafts: Sequence[Draft],
    *,
    all_or_nothing: bool = False,
    dry_run: bool = False,
) -> list[Posted | BalanceLimitExceeded]:
    """Record exchanges in the given order, as if one after the other, in the caller's
    transaction: lock every account involved in id order, check each exchange's limits on
    the balances the ones before it left (a refused one is skipped — or, with
    ``all_or_nothing``, nothing is written), then write the balances, the postings and the
    exchange rows with one statement each, however many exchanges.

    Postings go in before their exchange rows: the database checks, when a recorded exchange
    appears, that its postings are at least two and sum to zero. Posting ids follow the
    given order, which is the ledger order, and ``balance_after_minutes`` with them.
    ``dry_run`` checks the limits and writes nothing (an atomic batch already refused).
    """
    if not drafts:
        return []
    book = Book(tb, await lock_accounts(session, (g.account_id for d in drafts for g in d.legs)))
    outcomes: list[Posted | BalanceLimitExceeded] = []
    postings: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    now = utcnow()
    for d in drafts:
        assert sum(leg.minutes for leg in d.legs) == 0 and all(leg.minutes for leg in d.legs)
        try:
            after = book.apply(d.legs, enforce_limits=d.enforce_limits)
        except BalanceLimitExceeded as refused:
            outcomes.append(refused)
            continue
        exchange_id = uuid7()
        postings += [
            {
                "exchange_id": exchange_id,
                "account_id": leg.account_id,
                "minutes": leg.minutes,
                "balance_after_minutes": after[leg.account_id],
            }
            for leg in d.legs
        ]
        rows.append(
            {
                "id": exchange_id,
                "timebank_id": tb.id,
                "status": ExchangeStatus.recorded,
                "kind": d.kind,
                "minutes": sum(leg.minutes for leg in d.legs if leg.minutes > 0),
                "category_id": d.category.id if d.category else None,
                "occurred_on": d.occurred_on,
                "recorded_at": now,
                "description": d.description,
                "external_ref": d.external_ref,
                "reverses": d.reverses,
                "provider_account_id": d.simple_parties[0] if d.simple_parties else None,
                "recipient_account_id": d.simple_parties[1] if d.simple_parties else None,
                "logged_by_key_id": principal.key_id,
                "logged_by_role": principal.role.value,
                "override_reason": d.override_reason,
                "reason": d.reason,
            }
        )
        outcomes.append(
            Posted(
                Exchange(**rows[-1]),  # for the response; written with a plain INSERT
                [PostingOut(account_id=leg.account_id, minutes=leg.minutes) for leg in d.legs],
                d.category.slug if d.category else None,
            )
        )
    if dry_run or not rows or (all_or_nothing and len(rows) < len(drafts)):
        return outcomes
    await book.save(session)
    await session.execute(insert(table_of(Posting)), postings)
    try:
        # RETURNING makes SQLAlchemy send the rows as multi-row INSERTs ("insertmanyvalues")
        # rather than one execution per row, so the statement-level rollup trigger runs once
        # per thousand exchanges, not once per exchange
        exchanges = table_of(Exchange)
        await session.execute(insert(exchanges).returning(exchanges.c.id), rows)
    except IntegrityError as exc:  # a concurrent writer took the external_ref or reversal
        msg = str(exc.orig).lower()
        if "external_ref" in msg:
            raise Duplicate("an external_ref was recorded meanwhile in this time bank") from exc
        if "reverses" in msg:
            raise AlreadyReversed("This exchange was already reversed") from exc
        raise
    return outcomes


async def post_exchange(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    *,
    kind: ExchangeKind,
    legs: list[Leg],
    occurred_on: date,
    category: Category | None = None,
    description: str | None = None,
    external_ref: str | None = None,
    reverses: uuid.UUID | None = None,
    override_reason: str | None = None,
    reason: str | None = None,
    enforce_limits: bool = True,
    simple_parties: tuple[uuid.UUID, uuid.UUID] | None = None,
) -> Posted:
    """Record one exchange (see :func:`post_many`); 409 if a limit refuses it."""
    return await post_draft(
        session,
        principal,
        tb,
        Draft(
            kind,
            legs,
            occurred_on,
            category,
            description,
            external_ref,
            reverses,
            override_reason,
            reason,
            enforce_limits,
            simple_parties,
        ),
    )


async def post_draft(session: AsyncSession, principal: Principal, tb: TimeBank, d: Draft) -> Posted:
    try:
        (outcome,) = await post_many(session, principal, tb, [d])
    except Duplicate as exc:
        raise duplicate_ref(d.external_ref) from exc
    if isinstance(outcome, BalanceLimitExceeded):
        raise outcome
    return outcome


def duplicate_ref(ref: str | None) -> Duplicate:
    return Duplicate(f"external_ref '{ref}' was already recorded in this time bank")


def _party_refs(data: ExchangeCreate) -> list[PartyRef]:
    if data.is_group:
        assert data.providers is not None and data.recipients is not None
        return [leg.party for leg in (*data.providers, *data.recipients)]
    assert data.provider is not None and data.recipient is not None
    return [data.provider, data.recipient]


@dataclass
class Lookup:
    """What validating exchange requests needs from the database — the members and
    organisations they name, their categories, the ``external_ref``s already taken —
    fetched with at most three queries however many requests there are."""

    tb: TimeBank
    parties: dict[uuid.UUID, Party]  # member or organisation id → party, this bank's only
    categories: dict[str, Category]
    taken_refs: set[str]

    @classmethod
    async def load(
        cls, session: AsyncSession, tb: TimeBank, requests: Sequence[ExchangeCreate]
    ) -> Lookup:
        refs = [r for data in requests for r in _party_refs(data)]
        member_ids = {r.member_id for r in refs if r.member_id is not None}
        org_ids = {r.organisation_id for r in refs if r.organisation_id is not None}
        queries = [
            select(
                model.id,
                model.timebank_id,
                model.account_id,
                (model.status == active).label("active"),
                literal(owner_type.value).label("owner_type"),
            ).where(model.id.in_(ids))
            for model, ids, active, owner_type in (
                (Member, member_ids, MemberStatus.active, OwnerType.member),
                (Organisation, org_ids, OrganisationStatus.active, OwnerType.organisation),
            )
            if ids
        ]
        parties: dict[uuid.UUID, Party] = {}
        if queries:
            stmt: Any = queries[0] if len(queries) == 1 else union_all(*queries)
            rows: list[Any] = list((await session.execute(stmt)).all())
            for row in rows:
                if row.timebank_id == tb.id:
                    owner = OwnerType(row.owner_type)
                    parties[row.id] = Party(owner, row.id, row.account_id, bool(row.active))
        slugs = {d.category for d in requests if d.category is not None}
        categories: dict[str, Category] = {}
        if slugs:
            found = await session.execute(
                select(Category).where(Category.timebank_id == tb.id, Category.slug.in_(slugs))
            )
            categories = {c.slug: c for c in found.scalars()}
        wanted = {d.external_ref for d in requests if d.external_ref is not None}
        taken: set[str] = set()
        if wanted:
            found_refs = await session.execute(
                select(Exchange.external_ref).where(
                    Exchange.timebank_id == tb.id, Exchange.external_ref.in_(wanted)
                )
            )
            taken = {r for r in found_refs.scalars() if r is not None}
        return cls(tb, parties, categories, taken)

    def party(self, ref: PartyRef, field_name: str) -> Party:
        """The party ``ref`` names; 422 on ``field_name`` if it is not of this time bank."""
        if ref.member_id is not None:
            party = self.parties.get(ref.member_id)
            if party is None or party.owner_type is not OwnerType.member:
                raise InvalidInput(field_name, "no such member in this time bank")
            return party
        if ref.organisation_id is not None:
            party = self.parties.get(ref.organisation_id)
            if party is None or party.owner_type is not OwnerType.organisation:
                raise InvalidInput(field_name, "no such organisation in this time bank")
            return party
        if ref.account_id is None or ref.account_id != self.tb.pool_account_id:
            raise InvalidInput(field_name, "account_id must be this time bank's pool account")
        return Party(OwnerType.pool, self.tb.id, ref.account_id, True)

    def category(self, slug: str | None, needed: bool) -> Category | None:
        if not needed:
            if slug is not None:
                raise InvalidInput("category", "pool grants and donations have no category")
            return None
        if slug is None:
            raise InvalidInput("category", "required for a service exchange")
        cat = self.categories.get(slug)
        if cat is None:
            raise InvalidInput("category", f"unknown category '{slug}'")
        return cat


@dataclass
class Prepared:
    """A validated exchange request: its kind, signed legs and parties."""

    kind: ExchangeKind
    legs: list[Leg]
    parties: list[Party]
    category: Category | None
    occurred_on: date
    inactive: list[str]


async def prepare_exchange(session: AsyncSession, tb: TimeBank, data: ExchangeCreate) -> Prepared:
    """Validate a request against the database (see :func:`validate`)."""
    return validate(data, await Lookup.load(session, tb, [data]))


def validate(data: ExchangeCreate, lookup: Lookup) -> Prepared:
    """Validate a request and resolve its parties (422 for anything malformed, 409
    ``duplicate`` for a used ``external_ref``). Party status is reported, not enforced."""
    tb = lookup.tb
    occurred_on = data.occurred_on or today(tb)
    if occurred_on > today(tb):
        raise InvalidInput("occurred_on", "is after today in this time bank's time zone")
    if occurred_on < EARLIEST_DATE:
        raise InvalidInput("occurred_on", f"is before {EARLIEST_DATE.isoformat()}")

    if data.is_group:
        assert data.providers is not None
        assert data.recipients is not None
        sides = [
            ("providers", [(leg.party, leg.minutes) for leg in data.providers], 1),
            ("recipients", [(leg.party, leg.minutes) for leg in data.recipients], -1),
        ]
    else:
        assert data.provider is not None
        assert data.recipient is not None
        assert data.minutes is not None
        sides = [
            ("provider", [(data.provider, data.minutes)], 1),
            ("recipient", [(data.recipient, data.minutes)], -1),
        ]

    legs: list[Leg] = []
    parties: list[Party] = []
    side_types: list[OwnerType] = []
    seen: set[uuid.UUID] = set()
    inactive: list[str] = []
    for name, entries, _ in sides:
        for i, (_ref, minutes) in enumerate(entries):
            if minutes > tb.max_exchange_minutes:
                raise InvalidInput(
                    f"{name}[{i}].minutes" if data.is_group else "minutes",
                    f"over this time bank's max_exchange_minutes ({tb.max_exchange_minutes})",
                )
    resolved = iter(
        [
            lookup.party(ref, f"{name}[{i}]" if data.is_group else name)
            for name, entries, _ in sides
            for i, (ref, _minutes) in enumerate(entries)
        ]
    )
    for name, entries, sign in sides:
        types = set()
        for i, (_ref, minutes) in enumerate(entries):
            label = f"{name}[{i}]" if data.is_group else name
            party = next(resolved)
            if party.account_id in seen:
                raise InvalidInput(label, "a party is given twice")
            seen.add(party.account_id)
            if not party.active:
                inactive.append(label)
            if data.is_group and party.owner_type is OwnerType.pool:
                raise InvalidInput(label, "the pool cannot take part in a group exchange")
            types.add(party.owner_type)
            parties.append(party)
            legs.append(Leg(party.account_id, sign * minutes))
        if len(types) != 1:
            raise InvalidInput(name, "all parties on one side must be of one type")
        side_types.append(types.pop())

    if data.is_group:
        credited = sum(leg.minutes for leg in legs if leg.minutes > 0)
        debited = -sum(leg.minutes for leg in legs if leg.minutes < 0)
        if credited != debited:
            raise InvalidInput(
                "recipients", f"credited total {credited} != debited total {debited}"
            )

    provider_type, recipient_type = side_types
    if recipient_type is OwnerType.pool:
        kind = ExchangeKind.pool_grant
    elif provider_type is OwnerType.pool:
        kind = ExchangeKind.pool_donation
    else:
        kind = SERVICE_KINDS[(provider_type, recipient_type)]
    category = lookup.category(data.category, kind not in POOL_KINDS)
    if data.external_ref is not None and data.external_ref in lookup.taken_refs:
        raise duplicate_ref(data.external_ref)
    return Prepared(kind, legs, parties, category, occurred_on, inactive)


def check_active(prepared: Prepared) -> None:
    if prepared.inactive and prepared.kind not in POOL_KINDS:
        # A pool grant or donation may still settle the balance of a member who has left.
        raise PartyInactive(
            f"{', '.join(prepared.inactive)} is not active (suspended, left or erased)"
        )


def draft(data: ExchangeCreate, prepared: Prepared) -> Draft:
    """What a validated request records."""
    legs = prepared.legs
    return Draft(
        prepared.kind,
        legs,
        prepared.occurred_on,
        prepared.category,
        data.description,
        data.external_ref,
        override_reason=data.override_reason if data.override_limits else None,
        enforce_limits=not data.override_limits,
        simple_parties=None if data.is_group else (legs[0].account_id, legs[1].account_id),
    )


def recorded_event(
    principal: Principal, tb: TimeBank, data: ExchangeCreate, posted: Posted
) -> dict[str, Any]:
    e = posted.exchange
    return audit.event(
        principal,
        "exchange.override" if data.override_limits else "exchange.record",
        timebank_id=tb.id,
        target_type="exchange",
        target_id=e.id,
        reason=data.override_reason if data.override_limits else None,
        details={"kind": e.kind.value, "accounts": [str(p.account_id) for p in posted.postings]},
    )


async def record_exchange(
    session: AsyncSession, principal: Principal, tb: TimeBank, data: ExchangeCreate
) -> Posted:
    """Record an exchange logged by a broker or admin (caller commits).

    validate → resolve parties → check status → lock accounts in id order and check limits →
    insert postings and exchange → update balances → audit.
    """
    principal.require(tb.id, *STAFF)
    prepared = await prepare_exchange(session, tb, data)
    check_active(prepared)
    posted = await post_draft(session, principal, tb, draft(data, prepared))
    await audit.record_many(session, [recorded_event(principal, tb, data, posted)])
    return posted


async def propose_exchange(
    session: AsyncSession, principal: Principal, tb: TimeBank, data: ExchangeCreate
) -> Posted:
    """A member (through a partner app) proposes a simple exchange in which they are a
    party. It is ``pending``: no postings, no balance moves, until it is confirmed."""
    principal.require(tb.id, Role.member)
    if data.is_group:
        raise Forbidden("A member key may propose the simple form only")
    if data.override_limits:
        raise Forbidden("A member key cannot override limits")
    prepared = await prepare_exchange(session, tb, data)
    own = [p for p in prepared.parties if p.owner_type is OwnerType.member]
    if not any(p.owner_id == principal.member_id for p in own):
        raise Forbidden("A member key may only propose exchanges in which the member is a party")
    check_active(prepared)
    provider, recipient = prepared.legs[0].account_id, prepared.legs[1].account_id
    exchange = Exchange(
        id=uuid7(),
        timebank_id=tb.id,
        status=ExchangeStatus.pending,
        kind=prepared.kind,
        minutes=prepared.legs[0].minutes,
        category_id=prepared.category.id if prepared.category else None,
        occurred_on=prepared.occurred_on,
        recorded_at=utcnow(),
        description=data.description,
        external_ref=data.external_ref,
        provider_account_id=provider,
        recipient_account_id=recipient,
        logged_by_key_id=principal.key_id,
        logged_by_role=principal.role.value,
        proposed_by=principal.member_id,
    )
    session.add(exchange)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise duplicate_ref(data.external_ref) from exc
    await audit.record(
        session,
        audit.event(
            principal,
            "exchange.propose",
            timebank_id=tb.id,
            target_type="exchange",
            target_id=exchange.id,
            details={"kind": prepared.kind.value, "accounts": [str(provider), str(recipient)]},
        ),
    )
    return Posted(exchange, [], prepared.category.slug if prepared.category else None)


async def reverse_exchange(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    exchange_id: uuid.UUID,
    reason: str,
) -> Posted:
    """Post the mirror image of a recorded exchange, once. Ignores limits and party status."""
    principal.require(tb.id, *STAFF)
    original = await _get_exchange(session, tb, exchange_id)
    if original.kind is ExchangeKind.reversal:
        raise NotReversible("A reversal cannot be reversed")
    if original.status is not ExchangeStatus.recorded:
        raise NotReversible(
            f"Only a recorded exchange can be reversed (this one is {original.status.value})"
        )
    if await _reversed_by(session, [original.id]):
        raise AlreadyReversed("This exchange was already reversed")
    rows = (
        await session.execute(
            select(Posting.account_id, Posting.minutes)
            .where(Posting.exchange_id == original.id)
            .order_by(Posting.id)
        )
    ).all()
    legs = [Leg(account_id, -minutes) for account_id, minutes in rows]
    posted = await post_exchange(
        session,
        principal,
        tb,
        kind=ExchangeKind.reversal,
        legs=legs,
        occurred_on=today(tb),
        description=f"Reversal of {original.id}",
        reverses=original.id,
        reason=reason,
        enforce_limits=False,
    )
    await audit.record(
        session,
        audit.event(
            principal,
            "exchange.reverse",
            timebank_id=tb.id,
            target_type="exchange",
            target_id=original.id,
            reason=reason,
            details={"reversal_id": str(posted.exchange.id)},
        ),
    )
    return posted


# --- reading ------------------------------------------------------------------------------


async def _get_exchange(session: AsyncSession, tb: TimeBank, exchange_id: uuid.UUID) -> Exchange:
    ex = await session.get(Exchange, exchange_id)
    if ex is None or ex.timebank_id != tb.id:
        raise NotFound("No such exchange in this time bank")
    return ex


async def _reversed_by(
    session: AsyncSession, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    ids = list(ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(Exchange.reverses, Exchange.id).where(Exchange.reverses.in_(ids))
    )
    return {orig: rev for orig, rev in rows.all() if orig is not None}


async def load_views(session: AsyncSession, exchanges: Sequence[Exchange]) -> list[ExchangeOut]:
    """Exchange views with postings, category slug and ``reversed_by``, in three queries."""
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
            postings[ex_id].append(PostingOut(account_id=account_id, minutes=minutes))
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
    rev = await _reversed_by(session, ids)
    return [
        view(
            Posted(
                e, postings[e.id], cats.get(e.category_id) if e.category_id else None, rev.get(e.id)
            )
        )
        for e in exchanges
    ]


def view(p: Posted) -> ExchangeOut:
    e = p.exchange
    return ExchangeOut(
        id=e.id,
        status=e.status.value,
        kind=e.kind.value,
        minutes=e.minutes,
        category=p.category,
        occurred_on=e.occurred_on,
        recorded_at=e.recorded_at,
        description=e.description,
        external_ref=e.external_ref,
        postings=p.postings,
        provider_account_id=e.provider_account_id,
        recipient_account_id=e.recipient_account_id,
        reverses=e.reverses,
        reversed_by=p.reversed_by,
        logged_by=LoggedBy(key_id=e.logged_by_key_id, role=e.logged_by_role),
        proposed_by=e.proposed_by,
        decided_by=e.decided_by,
        decided_at=e.decided_at,
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
    ex = await _get_exchange(session, tb, exchange_id)
    if principal.role is Role.member and principal.member_id not in await party_members(
        session, ex
    ):
        raise NotFound("No such exchange in this time bank")
    return (await load_views(session, [ex]))[0]


@dataclass
class ExchangeFilters:
    account_id: uuid.UUID | None = None
    category: str | None = None
    status: ExchangeStatus | None = None
    kind: ExchangeKind | None = None
    date_from: date | None = None
    date_to: date | None = None
    awaiting_member: uuid.UUID | None = None  # pending, proposed by someone else


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
    if filters.awaiting_member is not None:
        stmt = stmt.where(
            Exchange.status == ExchangeStatus.pending,
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
    if filters.status is not None:
        stmt = stmt.where(Exchange.status == filters.status)
    if filters.kind is not None:
        stmt = stmt.where(Exchange.kind == filters.kind)
    if filters.date_from is not None:
        stmt = stmt.where(Exchange.occurred_on >= filters.date_from)
    if filters.date_to is not None:
        stmt = stmt.where(Exchange.occurred_on <= filters.date_to)
    if after is not None:
        stmt = stmt.where(Exchange.id > after)
    rows = list((await session.execute(stmt.order_by(Exchange.id).limit(limit + 1))).scalars())
    return await load_views(session, rows)


# --- accounts -------------------------------------------------------------------------------


async def get_account(session: AsyncSession, tb: TimeBank, account_id: uuid.UUID) -> Account:
    acc = await session.get(Account, account_id)
    if acc is None or acc.timebank_id != tb.id:
        raise NotFound("No such account in this time bank")
    return acc


def account_view(acc: Account, tb: TimeBank) -> AccountOut:
    lo, hi = effective_limits(acc, tb)
    return AccountOut(
        id=acc.id,
        owner={"type": acc.owner_type.value, "id": str(acc.owner_id)},
        balance_minutes=acc.balance_minutes,
        min_balance_minutes=lo,
        max_balance_minutes=hi,
        custom_limits=acc.custom_limits,
    )


async def patch_account(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    account_id: uuid.UUID,
    patch: AccountPatch,
    fields: set[str],
) -> Account:
    """Set an account's own limits (broker, audited). A limit that the balance is already
    outside of is allowed: the account can then only move back towards its range."""
    principal.require(tb.id, *STAFF)
    acc = (
        await session.execute(select(Account).where(Account.id == account_id).with_for_update())
    ).scalar_one_or_none()
    if acc is None or acc.timebank_id != tb.id:
        raise NotFound("No such account in this time bank")
    if patch.use_defaults:
        acc.custom_limits = False
        acc.min_balance_minutes = acc.max_balance_minutes = None
    else:
        lo, hi = effective_limits(acc, tb)
        if "min_balance_minutes" in fields:
            lo = patch.min_balance_minutes
        if "max_balance_minutes" in fields:
            hi = patch.max_balance_minutes
        if lo is not None and hi is not None and lo > hi:
            raise InvalidInput("min_balance_minutes", "greater than max_balance_minutes")
        acc.custom_limits = True
        acc.min_balance_minutes, acc.max_balance_minutes = lo, hi
    await session.flush()
    await audit.record(
        session,
        audit.event(
            principal,
            "account.limits",
            timebank_id=tb.id,
            target_type="account",
            target_id=acc.id,
            details={"fields": sorted(fields)},
        ),
    )
    return acc


async def balance(
    session: AsyncSession, tb: TimeBank, owner_type: OwnerType, owner_id: uuid.UUID
) -> BalanceOut:
    """A member's or organisation's balance with its pending flows, in one query. A
    proposal older than the bank's ``pending_expiry_days`` counts as expired here whether or
    not the lazy expiry has written it yet, so a read never has to write."""
    cutoff = utcnow() - timedelta(days=tb.pending_expiry_days)

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
        raise NotFound(f"No such {owner_type.value} in this time bank")
    acc, pending_in, pending_out = row
    lo, hi = effective_limits(acc, tb)
    return BalanceOut(
        account_id=acc.id,
        balance_minutes=acc.balance_minutes,
        earned_minutes=acc.earned_minutes,
        spent_minutes=acc.spent_minutes,
        pending_in_minutes=int(pending_in),
        pending_out_minutes=int(pending_out),
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


async def statement(
    session: AsyncSession,
    tb: TimeBank,
    account_id: uuid.UUID,
    date_from: date | None,
    date_to: date | None,
    after: int | None,
    limit: int | None,
) -> tuple[int, int, list[dict[str, Any]], int | None]:
    """Entries in ledger order (posting id), filtered on ``occurred_on`` (both ends
    inclusive). Opening balance = Σ postings that occurred before ``from``; closing =
    opening + Σ entries in the period. ``limit`` None returns every entry (CSV)."""
    await get_account(session, tb, account_id)
    period = [Posting.account_id == account_id]
    if date_from is not None:
        period.append(Exchange.occurred_on >= date_from)
    if date_to is not None:
        period.append(Exchange.occurred_on <= date_to)
    opening = 0
    if date_from is not None:
        opening = int(
            (
                await session.execute(
                    select(func.coalesce(func.sum(Posting.minutes), 0))
                    .join(Exchange, Exchange.id == Posting.exchange_id)
                    .where(Posting.account_id == account_id, Exchange.occurred_on < date_from)
                )
            ).scalar_one()
        )
    in_period = int(
        (
            await session.execute(
                select(func.coalesce(func.sum(Posting.minutes), 0))
                .join(Exchange, Exchange.id == Posting.exchange_id)
                .where(*period)
            )
        ).scalar_one()
    )
    stmt = (
        select(Posting, Exchange, Category.slug)
        .join(Exchange, Exchange.id == Posting.exchange_id)
        .outerjoin(Category, Category.id == Exchange.category_id)
        .where(*period)
        .order_by(Posting.id)
    )
    if after is not None:
        stmt = stmt.where(Posting.id > after)
    if limit is not None:
        stmt = stmt.limit(limit + 1)
    rows = (await session.execute(stmt)).all()
    next_after = None
    if limit is not None and len(rows) > limit:
        rows = rows[:limit]
        next_after = rows[-1][0].id
    ex_ids = list({r[1].id for r in rows})
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
    names = await owner_names(session, [a for lst in others.values() for a, _ in lst])
    entries = []
    for posting, ex, cat in rows:
        opposite = [a for a, m in others[ex.id] if (m > 0) != (posting.minutes > 0)]
        entries.append(
            {
                "entry_id": posting.id,
                "exchange_id": ex.id,
                "kind": ex.kind.value,
                "occurred_on": ex.occurred_on,
                "recorded_at": ex.recorded_at,
                "minutes": posting.minutes,
                "balance_after_minutes": posting.balance_after_minutes,
                "counterparties": [
                    {"type": names[a][0], "id": names[a][1], "display_name": names[a][2]}
                    for a in opposite
                    if a in names
                ],
                "category": cat,
                "description": ex.description,
            }
        )
    return opening, opening + in_period, entries, next_after
