"""Batch import of exchanges (paper time sheets), applied in the given order as if recorded
one after the other — an item refused by validation, party status, a duplicate
``external_ref`` or a limit is skipped with its error, and the items after it see the
balances and references as they stand without it; ``atomic`` records all or none.

It is set-based, so a thousand lines cost about what one does: every item is validated
against one lookup of the parties, categories and references it names (three queries),
every account involved is locked once in id order, the limits are checked in memory on the
locked balances in item order (:class:`timebank.ledger.posting.Book`), and balances,
postings, exchanges and audit events are written with one statement each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import STAFF, Principal
from timebank.audit import service as audit
from timebank.bodies import as_strict_json
from timebank.errors import BatchAborted, DomainError, InvalidInput, field_error
from timebank.events.service import Change, emit
from timebank.idempotency import Claim
from timebank.ledger.changes import prepared_members
from timebank.ledger.posting import (
    Book,
    Draft,
    duplicate_ref,
    exchange_row,
    insert_exchanges,
    lock_accounts,
    name_parties,
    posted,
    posting_rows,
)
from timebank.ledger.reads import view
from timebank.ledger.record import recorded_change, recorded_event
from timebank.ledger.schemas import ExchangeCreate, ExchangeOut
from timebank.ledger.validate import Lookup, check_active, draft, validate
from timebank.timebanks.models import TimeBank


@dataclass
class Line:
    """One item's outcome: the exchange recorded, or the error that refused it."""

    index: int
    exchange: ExchangeOut | None = None
    error: DomainError | None = None


@dataclass
class BatchOutcome:
    lines: list[Line] = field(default_factory=list)

    @property
    def recorded(self) -> bool:
        return all(line.error is None for line in self.lines)


def _invalid(exc: ValidationError) -> InvalidInput:
    return InvalidInput.of(
        [
            field_error(".".join(str(p) for p in e["loc"]), e["msg"], ExchangeCreate)
            for e in exc.errors()
        ]
    )


_ITEMS = TypeAdapter(list[ExchangeCreate])


def _parse(lines: list[Line], items: list[dict[str, Any]]) -> dict[int, ExchangeCreate]:
    """Each item as ``ExchangeCreate.model_validate`` takes it: all at once when all are
    valid (one call into pydantic-core), else one by one, so each mistake is its item's."""
    try:
        return dict(enumerate(_ITEMS.validate_json(as_strict_json(items), strict=True)))
    except ValidationError:
        pass
    requests: dict[int, ExchangeCreate] = {}
    for line, raw in zip(lines, items, strict=True):
        try:
            requests[line.index] = ExchangeCreate.model_validate(raw)
        except ValidationError as exc:
            line.error = _invalid(exc)
    return requests


async def record_batch(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    items: list[dict[str, Any]],
    atomic: bool,
    claim: Claim | None = None,
    *,
    dry_run: bool = False,
) -> BatchOutcome:
    """Record a sheet of exchanges in order and commit; an atomic sheet with a refused item
    records nothing (rolled back, its Idempotency-Key not stored), but every item still
    gets its own verdict, limits included, so a broker sees every problem at once.
    ``dry_run``: the verdicts only (a sheet's preview), rolled back."""
    principal.require(tb.id, *STAFF)
    lines = [Line(i) for i in range(len(items))]
    requests = _parse(lines, items)

    # validate against one lookup
    lookup = await Lookup.load(session, tb, list(requests.values()))
    drafts: list[tuple[Line, ExchangeCreate, Draft]] = []
    members: dict[int, list[Any]] = {}
    for index, data in requests.items():
        try:
            prepared = validate(data, lookup)
            check_active(prepared)
        except DomainError as exc:
            lines[index].error = exc
            continue
        drafts.append((lines[index], data, draft(data, prepared)))
        members[index] = prepared_members(prepared)

    # lock every account once, in id order; check each item's limits in order
    book = Book(
        tb, await lock_accounts(session, (g.account_id for *_, d in drafts for g in d.legs))
    )
    taken: set[str] = set()  # references of items recorded earlier in this batch
    postings: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    changes: list[Change] = []
    for line, data, d in drafts:
        try:
            if d.external_ref is not None and d.external_ref in taken:
                raise duplicate_ref(d.external_ref)
            after = book.apply(d.legs, enforce_limits=d.enforce_limits)
        except DomainError as exc:
            line.error = exc
            continue
        if d.external_ref is not None:
            taken.add(d.external_ref)
        row = exchange_row(principal, tb, d)
        postings += posting_rows(row["id"], d.legs, after)
        rows.append(row)
        result = posted(row, d)
        line.exchange = view(result)
        events.append(recorded_event(principal, tb, data, result))
        changes.append(recorded_change(row["id"], members[line.index]))
    await name_parties(session, [line.error for line in lines if line.error is not None])

    outcome = BatchOutcome(lines)
    if dry_run:  # a preview: every verdict, nothing written, the locks released
        await session.rollback()
        return outcome
    if atomic and not outcome.recorded:
        for line in lines:
            if line.error is None:
                line.exchange, line.error = (
                    None,
                    BatchAborted("Not recorded: the batch is atomic and another item was refused"),
                )
        await session.rollback()  # nothing happened: nothing to store for a retry
        return outcome
    # insert exchanges and postings, update balances, audit, settle, commit
    await insert_exchanges(session, postings, rows)
    await book.save(session)
    await audit.record_many(session, events)
    if claim is not None:
        await claim.settle(session, outcome)
    await emit(session, tb.id, changes)
    await session.commit()
    return outcome
