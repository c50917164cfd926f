"""Batch import of exchanges (paper time sheets): applied in order, each item in its own
savepoint; ``atomic`` records all or none."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

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


async def record_batch(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    items: list[dict[str, Any]],
    atomic: bool,
) -> BatchOut:
    principal.require(tb.id, *STAFF)
    results: list[BatchResult] = []
    failed = False
    for index, raw in enumerate(items):
        try:
            data = ExchangeCreate.model_validate(raw)
        except ValidationError as exc:
            results.append(BatchResult(index=index, status=422, error=_validation_error(exc)))
            failed = True
            continue
        try:
            async with session.begin_nested():
                posted = await ledger.record_exchange(session, principal, tb, data)
            results.append(BatchResult(index=index, status=201, exchange=ledger.view(posted)))
        except DomainError as exc:
            failed = True
            results.append(
                BatchResult(
                    index=index,
                    status=exc.status,
                    error=BatchError(
                        code=exc.code,
                        title=exc.title,
                        detail=exc.detail,
                        errors=exc.extra.get("errors"),
                    ),
                )
            )
    out = BatchOut(results=results)
    if atomic and failed:
        for r in out.results:
            if r.status == 201:
                r.status, r.exchange = 424, None
                r.error = BatchError(
                    code="batch_aborted",
                    title="Batch aborted",
                    detail="Not recorded: the batch is atomic and another item was refused",
                )
        raise BatchRejected(out)
    return out
