"""The posting step every write of the ledger shares: lock the accounts in id order, check
the limits on the locked balances, build the exchange and posting rows, insert them, save
the balances. Recording, batches, confirmations, reversals and starting grants all go
through here; none writes a posting or a balance another way.

Postings go in before their exchange rows: the database checks, when a recorded exchange
appears, that its postings are at least two and sum to zero. Posting ids follow the order
given, which is the ledger order, and ``balance_after_minutes`` with them.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal
from timebank.bodies import trusted
from timebank.db import copy_rows, sqlstate, table_of, utcnow, uuid7
from timebank.errors import AlreadyReversed, BalanceLimitExceeded, DomainError, Duplicate
from timebank.ledger.models import Account, Exchange, ExchangeKind, ExchangeStatus, Posting
from timebank.ledger.rules import effective_limits, limit_detail, refused
from timebank.ledger.schemas import PostingOut
from timebank.members.models import Member
from timebank.organisations.models import Organisation
from timebank.timebanks.models import Category, TimeBank


@dataclass
class Leg:
    account_id: uuid.UUID
    minutes: int  # signed: + credited, − debited


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

    @property
    def minutes(self) -> int:
        return sum(leg.minutes for leg in self.legs if leg.minutes > 0)


@dataclass(slots=True)
class NewExchange:
    """An exchange row just written, for the response: a plain record, not an ORM object
    (a batch makes a thousand, and the ORM's instrumentation would be most of its cost)."""

    id: uuid.UUID
    timebank_id: uuid.UUID
    status: ExchangeStatus
    kind: ExchangeKind
    minutes: int
    category_id: uuid.UUID | None
    occurred_on: date
    recorded_at: datetime
    description: str | None
    external_ref: str | None
    reverses: uuid.UUID | None
    provider_account_id: uuid.UUID | None
    recipient_account_id: uuid.UUID | None
    logged_by_key_id: uuid.UUID | None
    logged_by_role: str
    logged_by_user_id: uuid.UUID | None
    proposed_by: uuid.UUID | None
    decided_by: uuid.UUID | None
    decided_at: datetime | None
    override_reason: str | None
    reason: str | None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class Posted:
    exchange: Exchange | NewExchange
    postings: list[PostingOut] = field(default_factory=list)
    category: str | None = None
    reversed_by: uuid.UUID | None = None


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
    """The balances of locked accounts as a run of exchanges moves them, one after the other
    (the limit rule is :func:`timebank.ledger.rules.refused`). The accounts are locked, so
    what the book decides is what the database will hold; :meth:`save` writes the final
    balances with one UPDATE that is conditional on the balances the book started from."""

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
            if enforce_limits and refused(balance, delta, lo, hi):
                account = self.accounts[account_id]
                facts: dict[str, Any] = {
                    "account_id": str(account_id),
                    "party": {"type": account.owner_type.value, "id": str(account.owner_id)},
                    "balance_minutes": balance,
                    "change_minutes": delta,
                    "min_balance_minutes": lo,
                    "max_balance_minutes": hi,
                }
                raise BalanceLimitExceeded(limit_refusal(facts), **facts)
        for account_id, delta in deltas.items():
            self.balance[account_id] += delta
            self.earned[account_id] += max(delta, 0)
            self.spent[account_id] += max(-delta, 0)
        return {account_id: self.balance[account_id] for account_id in deltas}

    async def apply_named(
        self, session: AsyncSession, legs: Sequence[Leg], *, enforce_limits: bool
    ) -> dict[uuid.UUID, int]:
        """:meth:`apply`, a refusal naming its party (one more query, on a refusal only)."""
        try:
            return self.apply(legs, enforce_limits=enforce_limits)
        except BalanceLimitExceeded as exc:
            await name_parties(session, [exc])
            raise

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


def exchange_row(
    principal: Principal,
    tb: TimeBank,
    d: Draft,
    *,
    status: ExchangeStatus = ExchangeStatus.recorded,
    now: datetime | None = None,
    proposed_by: uuid.UUID | None = None,
    exchange_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """The ``exchanges`` row of a draft: recorded (with postings) or a pending proposal.
    (The demo generator gives its own ``exchange_id`` and ``now``: a history in the past.)"""
    at = now or utcnow()
    return {
        "id": exchange_id or uuid7(),
        "timebank_id": tb.id,
        "status": status,
        "kind": d.kind,
        "minutes": d.minutes,
        "category_id": d.category.id if d.category else None,
        "occurred_on": d.occurred_on,
        "recorded_at": at,
        "description": d.description,
        "external_ref": d.external_ref,
        "reverses": d.reverses,
        "provider_account_id": d.simple_parties[0] if d.simple_parties else None,
        "recipient_account_id": d.simple_parties[1] if d.simple_parties else None,
        "logged_by_key_id": principal.key_id,
        "logged_by_role": principal.role.value,
        "logged_by_user_id": principal.user_id,
        "override_reason": d.override_reason,
        "reason": d.reason,
        "proposed_by": proposed_by,
        "decided_by": None,
        "decided_at": None,
        "created_at": at,
        "updated_at": at,
    }


def posting_rows(
    exchange_id: uuid.UUID, legs: Sequence[Leg], after: dict[uuid.UUID, int]
) -> list[dict[str, Any]]:
    """The ``postings`` rows of one exchange, with each account's balance after it."""
    return [
        {
            "exchange_id": exchange_id,
            "account_id": leg.account_id,
            "minutes": leg.minutes,
            "balance_after_minutes": after[leg.account_id],
        }
        for leg in legs
    ]


def posted(row: dict[str, Any], d: Draft) -> Posted:
    """The response's view of a row just written."""
    return Posted(
        NewExchange(**row),
        [trusted(PostingOut, account_id=leg.account_id, minutes=leg.minutes) for leg in d.legs],
        d.category.slug if d.category else None,
    )


COPY_FROM = 50  # rows: from here on a batch's rows go in by COPY (PostgreSQL)


async def insert_exchanges(
    session: AsyncSession, postings: list[dict[str, Any]], exchanges: list[dict[str, Any]]
) -> None:
    """Insert postings, then their exchange rows: one statement each however many (a large
    batch by COPY on PostgreSQL; the rollup trigger runs once per statement either way)."""
    bulk = len(postings) >= COPY_FROM and session.get_bind().dialect.name == "postgresql"
    try:
        if bulk:
            await copy_rows(session, table_of(Posting), postings)
            await copy_rows(session, table_of(Exchange), exchanges)
            return
        if postings:
            await session.execute(insert(table_of(Posting)), postings)
        if exchanges:
            # RETURNING makes SQLAlchemy send the rows as multi-row INSERTs
            # ("insertmanyvalues") rather than one execution per row
            table = table_of(Exchange)
            await session.execute(insert(table).returning(table.c.id), exchanges)
    except Exception as exc:  # a concurrent writer took the external_ref or the reversal
        if sqlstate(exc) != "23505" and not isinstance(exc, IntegrityError):
            raise
        msg = str(getattr(exc, "orig", None) or exc).lower()
        if "external_ref" in msg:
            refs = [r["external_ref"] for r in exchanges if r["external_ref"]]
            raise duplicate_ref(refs[0] if len(refs) == 1 else None) from exc
        if "reverses" in msg:
            raise AlreadyReversed("This exchange was already reversed") from exc
        raise


def duplicate_ref(ref: str | None) -> Duplicate:
    if ref is None:
        return Duplicate("an external_ref was recorded meanwhile in this time bank")
    return Duplicate(f"external_ref '{ref}' was already recorded in this time bank")


def limit_refusal(facts: dict[str, Any], name: str | None = None) -> str:
    """The detail of a balance-limit refusal from its facts, naming the party if known."""
    party = facts["party"]
    who = "The community pool" if party["type"] == "pool" else f"{party['type']} {party['id']}"
    if name is not None and party["type"] != "pool":
        who = f"{name} ({who})"
    keys = ("balance_minutes", "change_minutes", "min_balance_minutes", "max_balance_minutes")
    return limit_detail(who, *(facts[k] for k in keys))


async def name_parties(session: AsyncSession, refusals: Sequence[DomainError]) -> None:
    """Put each balance-limit refusal's party name in its detail, with one query."""
    limits = [e for e in refusals if isinstance(e, BalanceLimitExceeded)]
    ids = {uuid.UUID(e.extra["party"]["id"]) for e in limits}
    if not ids:
        return
    names = dict(
        (await session.execute(select(Member.id, Member.display_name).where(Member.id.in_(ids))))
        .tuples()
        .all()
    )
    names |= dict(
        (
            await session.execute(
                select(Organisation.id, Organisation.name).where(Organisation.id.in_(ids))
            )
        )
        .tuples()
        .all()
    )
    for e in limits:
        e.detail = limit_refusal(e.extra, names.get(uuid.UUID(e.extra["party"]["id"])))


async def post(session: AsyncSession, principal: Principal, tb: TimeBank, d: Draft) -> Posted:
    """Post one exchange in the caller's transaction: lock its accounts in id order, check
    its limits (409 ``balance_limit_exceeded``), insert it and its postings, save the
    balances. The caller audits and commits."""
    book = Book(tb, await lock_accounts(session, (leg.account_id for leg in d.legs)))
    after = await book.apply_named(session, d.legs, enforce_limits=d.enforce_limits)
    row = exchange_row(principal, tb, d)
    await insert_exchanges(session, posting_rows(row["id"], d.legs, after), [row])
    await book.save(session)
    return posted(row, d)
