"""Batch import of exchanges (paper time sheets), applied in the given order as if recorded
one after the other — an item refused by validation, party status, a duplicate
``external_ref`` or a limit is skipped with its error, and the items after it see the
balances as they stand without it; ``atomic`` records all or none.

It is set-based, so a thousand lines cost about what one does: every item is validated
against one lookup of the parties, categories and references it names (three queries),
every account involved is locked once in id order, the limits are checked in memory on the
locked balances in item order (:class:`timebank.ledger.service.Book`), and balances,
postings, exchanges and audit events are written with one statement each.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.audit import service as audit
from timebank.auth.principal import STAFF, Principal
from timebank.errors import DomainError, field_error
from timebank.ledger import service as ledger
from timebank.ledger.schemas import BatchError, BatchOut, BatchResult, ExchangeCreate
from timebank.timebanks.models import TimeBank


class BatchRejected(Exception):
    """An atomic batch with a refused item: nothing is recorded; the results say why."""

    def __init__(self, out: BatchOut) -> None:
        super().__init__("atomic batch rejected")
        self.out = out


def _validation_error(exc: ValidationError) -> BatchError:
    errors = [field_error(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
    return BatchError(
        code="validation_error",
        title="Validation error",
        detail="; ".join(f"{e['field']}: {e['message']}" for e in errors),
        errors=errors,
    )


def _refused(index: int, exc: DomainError) -> BatchResult:
    return BatchResult(
        index=index,
        status=exc.status,
        error=BatchError(
            code=exc.code, title=exc.title, detail=exc.detail, errors=exc.extra.get("errors")
        ),
    )


async def record_batch(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    items: list[dict[str, Any]],
    atomic: bool,
) -> BatchOut:
    principal.require(tb.id, *STAFF)
    results: dict[int, BatchResult] = {}
    requests: dict[int, ExchangeCreate] = {}
    for index, raw in enumerate(items):
        try:
            requests[index] = ExchangeCreate.model_validate(raw)
        except ValidationError as exc:
            results[index] = BatchResult(index=index, status=422, error=_validation_error(exc))

    lookup = await ledger.Lookup.load(session, tb, list(requests.values()))
    drafts: list[tuple[int, ExchangeCreate, ledger.Draft]] = []
    refs: set[str] = set()
    for index, data in requests.items():
        try:
            prepared = ledger.validate(data, lookup)
            ledger.check_active(prepared)
            if data.external_ref is not None and data.external_ref in refs:
                raise ledger.duplicate_ref(data.external_ref)  # twice in this batch
        except DomainError as exc:
            results[index] = _refused(index, exc)
            continue
        if data.external_ref is not None:
            refs.add(data.external_ref)
        drafts.append((index, data, ledger.draft(data, prepared)))

    aborted = BatchError(
        code="batch_aborted",
        title="Batch aborted",
        detail="Not recorded: the batch is atomic and another item was refused",
    )
    # An atomic batch with an item refused already records nothing, but its limits are
    # still checked, so the broker sees every problem on the sheet at once.
    outcomes = await ledger.post_many(
        session,
        principal,
        tb,
        [d for _, _, d in drafts],
        all_or_nothing=atomic,
        dry_run=atomic and bool(results),
    )
    events = []
    for (index, data, _), outcome in zip(drafts, outcomes, strict=True):
        if isinstance(outcome, DomainError):
            results[index] = _refused(index, outcome)
        else:
            results[index] = BatchResult(index=index, status=201, exchange=ledger.view(outcome))
            events.append(ledger.recorded_event(principal, tb, data, outcome))
    if atomic and len(events) < len(items):  # a limit refused one: nothing was written
        for r in results.values():
            if r.status == 201:
                r.status, r.exchange, r.error = 424, None, aborted
        raise BatchRejected(BatchOut(results=[results[i] for i in range(len(items))]))
    await audit.record_many(session, events)
    return BatchOut(results=[results[i] for i in range(len(items))])
